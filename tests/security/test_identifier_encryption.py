"""Resident ID and phone numbers at rest (issue 6 §5), checked from outside: no file the server
writes holds them, exact search still finds them, the keyring survives restarts and rotation, a
store refuses a keyring it was not written with, and `huitong reindex` keeps search working."""
import base64
import os
import sqlite3
import subprocess

import requests

from conftest import BINARY, Server

ID = "11010519491231002X"
MOTHER = "110101196001010014"
PHONE = "13912345678"


def patient(resident_id=ID, phone=PHONE, mrn="A-1"):
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": "urn:oid:2.16.156.10011.1.3", "value": resident_id},
            {"system": "urn:huitong:mrn:a", "value": mrn},
        ],
        "name": [{"family": "郑", "given": ["秀英"]}],
        "gender": "female",
        "birthDate": "1949-12-31",
        "telecom": [{"system": "phone", "value": phone, "use": "mobile"}],
        "contact": [{
            "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
            "extension": [{
                "url": "https://huitong.health/fhir/StructureDefinition/contact-identifier",
                "valueIdentifier": {"system": "urn:oid:2.16.156.10011.1.3", "value": MOTHER},
            }],
        }],
    }


def files_holding(data, needles):
    """Every file under the data folder (database, WAL, spool; not the keyring) holding a needle."""
    hits = []
    for root, _, names in os.walk(data):
        if os.path.basename(root) == "keys":
            continue
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                content = f.read()
            hits += [(path, n) for n in needles if n.encode() in content]
    return hits


def found(server, query):
    r = requests.get(f"{server.base}/Patient?{query}")
    assert r.status_code == 200, r.text
    return [e["resource"]["id"] for e in r.json().get("entry", [])]


def test_no_file_holds_the_numbers_and_exact_search_finds_them(tmp_path):
    data = str(tmp_path / "store")
    os.makedirs(data)
    server = Server(data).start()
    try:
        r = requests.post(server.base + "/Patient", json=patient())
        assert r.status_code == 201, r.text
        pid = r.json()["id"]
        # The development administrator sees the numbers it sent.
        body = requests.get(f"{server.base}/Patient/{pid}").json()
        assert body["identifier"][0]["value"] == ID and body["telecom"][0]["value"] == PHONE
        assert body["contact"][0]["extension"][0]["valueIdentifier"]["value"] == MOTHER
        for query in [f"identifier=urn:oid:2.16.156.10011.1.3|{ID}", f"identifier={ID.lower()}", f"phone={PHONE}",
                      f"telecom=phone|{PHONE}"]:
            assert found(server, query) == [pid], query
        assert found(server, "phone=13912345679") == []
        assert requests.get(f"{server.base}/AuditEvent?_count=50").status_code == 200
    finally:
        server.stop()
    assert files_holding(data, [ID, PHONE, MOTHER, ID[:14]]) == []
    assert files_holding(data, ["urn:huitong:mrn:a"]), "the scan does see what is stored in clear"
    keyring = os.path.join(data, "keys", "identifier-keys")
    assert oct(os.stat(keyring).st_mode & 0o777) == "0o600"

    # Rotation: a second key encrypts from now on; the first still decrypts.
    with open(keyring, "a") as f:
        f.write("k2 " + base64.b64encode(os.urandom(32)).decode() + "\n")
    server = Server(data).start()
    try:
        assert found(server, f"identifier={ID}") == [pid]
        assert requests.get(f"{server.base}/Patient/{pid}").json()["telecom"][0]["value"] == PHONE
        second = "110101199001010036"
        r = requests.post(server.base + "/Patient", json=patient(second, "13700000000", "A-2"))
        assert r.status_code == 201, r.text
        newer = r.json()["id"]
    finally:
        server.stop()
    db = sqlite3.connect(os.path.join(data, "huitong.sqlite"))
    contents = dict(db.execute("SELECT r.id, h.content FROM resource r JOIN resource_history h ON h.hid = r.hid"
                               " WHERE r.type = 'Patient'").fetchall())
    db.close()
    as_text = lambda c: c.decode() if isinstance(c, bytes) else c
    assert '"k1:' in as_text(contents[pid]) and '"k2:' in as_text(contents[newer])

    # Reindex re-derives the blind codes from the decrypted content; search keeps working.
    out = subprocess.run([BINARY, "reindex", "--data", data], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    server = Server(data).start()
    try:
        assert found(server, f"identifier={ID}") == [pid]
        assert found(server, "phone=13700000000") == [newer]
    finally:
        server.stop()
    assert files_holding(data, [ID, PHONE, MOTHER, second]) == []


def test_a_store_refuses_a_keyring_it_was_not_written_with(tmp_path):
    data = str(tmp_path / "store")
    os.makedirs(data)
    server = Server(data).start()
    server.stop()
    other = tmp_path / "other-keys"
    other.write_text("k1 " + base64.b64encode(os.urandom(32)).decode() + "\n")
    out = subprocess.run([BINARY, "serve", "--dev", "--port", "0", "--data", data, "--identifier-keys", str(other)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "not the one this store was written with" in out.stderr + out.stdout
    # The same keyring given in the environment is accepted.
    env = dict(os.environ, HUITONG_IDENTIFIER_KEYRING=open(os.path.join(data, "keys", "identifier-keys")).read())
    out = subprocess.run([BINARY, "reindex", "--data", data], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
