"""No acknowledged write is lost: 1,000 creates acknowledged one by one, then the server is
killed with SIGKILL (no chance to flush anything) and restarted; every resource must read back.
Runs on the embedded store and, when HUITONG_TEST_POSTGRES_URL is set, on PostgreSQL."""
import pytest
import requests

from conftest import POSTGRES_URL, Server, fresh_postgres_database


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_acknowledged_writes_survive_kill9(data_dir, backend):
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip("HUITONG_TEST_POSTGRES_URL is not set")
    database = fresh_postgres_database("huitong_kill9") if backend == "postgres" else None
    server = Server(data_dir, database).start()
    session = requests.Session()
    acknowledged = []
    try:
        for i in range(1000):
            r = session.post(f"{server.base}/Observation", json={
                "resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "valueQuantity": {"value": 60 + i % 40, "unit": "/min"}},
                headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
            assert r.status_code == 201, r.text
            acknowledged.append(r.headers["Location"].split("/fhir/")[1].split("/_history")[0])
        updated = session.put(f"{server.base}/{acknowledged[0]}", json={
            "resourceType": "Observation", "id": acknowledged[0].split("/")[1], "status": "amended",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}},
            headers={"Content-Type": "application/fhir+json"})
        assert updated.status_code == 200
    finally:
        server.kill9()

    restarted = Server(data_dir, database)
    restarted.port = server.port
    restarted.base = server.base
    restarted.start()
    try:
        missing = [ref for ref in acknowledged if session.get(f"{restarted.base}/{ref}").status_code != 200]
        assert missing == []
        first = session.get(f"{restarted.base}/{acknowledged[0]}").json()
        assert first["status"] == "amended" and first["meta"]["versionId"] == "2"
    finally:
        restarted.stop()


def test_large_binaries_survive_kill9(data_dir):
    """Versions of 100 KB or more are kept in files beside the database (ADR 025): acknowledged
    ones read back byte for byte after a SIGKILL, including a version replaced just before it."""
    import base64
    import os
    server = Server(data_dir).start()
    session = requests.Session()
    sent = {}
    try:
        for i in range(20):
            data = os.urandom(150_000 + i * 1000)
            r = session.put(f"{server.base}/Binary/doc{i}", json={"resourceType": "Binary", "id": f"doc{i}", "contentType": "application/pdf",
                                                                  "data": base64.b64encode(data).decode()},
                            headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
            assert r.status_code == 201, r.text
            sent[f"doc{i}"] = data
        replaced = os.urandom(300_000)
        r = session.put(f"{server.base}/Binary/doc0", json={"resourceType": "Binary", "id": "doc0", "contentType": "application/pdf",
                                                           "data": base64.b64encode(replaced).decode()},
                        headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
        assert r.status_code == 200, r.text
    finally:
        server.kill9()
    assert os.path.isdir(os.path.join(data_dir, "huitong.sqlite-content")), os.listdir(data_dir)

    restarted = Server(data_dir)
    restarted.port = server.port
    restarted.base = server.base
    restarted.start()
    try:
        for id, data in sent.items():
            body = session.get(f"{restarted.base}/Binary/{id}", headers={"Accept": "application/fhir+json"}).json()
            assert base64.b64decode(body["data"]) == (replaced if id == "doc0" else data), id
        first = session.get(f"{restarted.base}/Binary/doc0/_history/1", headers={"Accept": "application/fhir+json"}).json()
        assert base64.b64decode(first["data"]) == sent["doc0"]
    finally:
        restarted.stop()


def test_acknowledged_reads_stay_audited_after_kill9(data_dir):
    """A read's audit event is durable before its response: reads acknowledged just before a
    SIGKILL (their events still in the spool, not yet in the chain) are in the chain after restart."""
    import subprocess
    from conftest import BINARY
    server = Server(data_dir).start()
    # What the first start wrote itself (the shipped national code tables, each write audited).
    server.stop()
    before = subprocess.run([BINARY, "audit", "verify", "--data", data_dir], capture_output=True, text=True)
    started = int(before.stdout.split("audit chain intact: ")[1].split(" events")[0])
    server.start()
    session = requests.Session()
    r = session.post(f"{server.base}/Patient", json={"resourceType": "Patient", "gender": "male"})
    assert r.status_code == 201
    pid = r.json()["id"]
    for _ in range(300):
        assert session.get(f"{server.base}/Patient/{pid}").status_code == 200
    server.kill9()
    server.start()  # moves what the spool holds into the chain
    server.stop()
    verified = subprocess.run([BINARY, "audit", "verify", "--data", data_dir], capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    assert f"audit chain intact: {started + 301} events" in verified.stdout, verified.stdout
