"""`huitong audit verify` on a real store: intact after real traffic; after an audit row is
edited or deleted directly in the SQLite file, it fails and names the first broken event."""
import base64
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import time

import requests

from conftest import BINARY, Server


def verify(data):
    return subprocess.run([BINARY, "audit", "verify", "--data", data], capture_output=True, text=True)


def tampered_copy(data, tmp_path, name, statement, *params):
    copy = str(tmp_path / name)
    shutil.copytree(data, copy)
    db = sqlite3.connect(os.path.join(copy, "huitong.sqlite"))
    db.execute(statement, params)
    db.commit()
    db.close()
    return copy


def test_verify_detects_edited_and_deleted_audit_events(tmp_path):
    data = str(tmp_path / "store")
    os.makedirs(data)
    server = Server(data).start()
    try:
        r = requests.post(server.base + "/Patient", json={"resourceType": "Patient", "name": [{"family": "李", "given": ["娜"]}]})
        assert r.status_code == 201
        pid = r.json()["id"]
        for _ in range(3):
            assert requests.get(f"{server.base}/Patient/{pid}").status_code == 200
        assert requests.get(f"{server.base}/Patient?family=李").status_code == 200
    finally:
        server.stop()

    ok = verify(data)
    assert ok.returncode == 0, ok.stderr
    assert "audit chain intact: 5 events" in ok.stdout, ok.stdout

    # A reader's access rewritten to look like someone else's: the content no longer fits its hash.
    edited = tampered_copy(data, tmp_path, "edited",
                           "UPDATE audit_event SET content = CAST(replace(CAST(content AS TEXT), 'development', 'someone-else') AS BLOB) WHERE seq = 3")
    r = verify(edited)
    assert r.returncode == 1
    assert "BROKEN at AuditEvent/3" in r.stderr and "changed" in r.stderr, r.stderr

    # An event removed from the middle, and one from the end.
    middle = tampered_copy(data, tmp_path, "middle", "DELETE FROM audit_event WHERE seq = 2")
    r = verify(middle)
    assert r.returncode == 1 and "BROKEN at AuditEvent/2" in r.stderr and "removed" in r.stderr, r.stderr
    tail = tampered_copy(data, tmp_path, "tail", "DELETE FROM audit_event WHERE seq = 5")
    r = verify(tail)
    assert r.returncode == 1 and "BROKEN at AuditEvent/5" in r.stderr, r.stderr

    # A stored hash overwritten: it no longer fits its event.
    rehashed = tampered_copy(data, tmp_path, "rehashed", "UPDATE audit_event SET hash = ? WHERE seq = 4", "0" * 64)
    r = verify(rehashed)
    assert r.returncode == 1 and "BROKEN at AuditEvent/4" in r.stderr, r.stderr


def test_archive_keeps_180_days_then_exports_prunes_and_verifies_across_the_archive(tmp_path):
    data = str(tmp_path / "store")
    os.makedirs(data)
    server = Server(data).start()
    try:
        r = requests.post(server.base + "/Patient", json={"resourceType": "Patient", "name": [{"family": "周", "given": ["杰"]}]})
        pid = r.json()["id"]
        for _ in range(4):
            assert requests.get(f"{server.base}/Patient/{pid}").status_code == 200
    finally:
        server.stop()
    folder = str(tmp_path / "archive")
    today = datetime.date.today()

    # Within the retention period: refused, nothing touched.
    recent = subprocess.run([BINARY, "audit", "archive", "--data", data, "--before", today.isoformat(), "--to", folder],
                            capture_output=True, text=True)
    assert recent.returncode != 0 and "retention" in recent.stderr, recent.stderr
    short = subprocess.run([BINARY, "audit", "archive", "--data", data, "--before", "2020-01-01", "--to", folder,
                            "--retention-days", "30"], capture_output=True, text=True)
    assert short.returncode != 0 and "at least 180" in short.stderr, short.stderr

    # The first three events are made a year old (`recorded` is not hashed; the chain is unchanged).
    db = sqlite3.connect(os.path.join(data, "huitong.sqlite"))
    year_ago = int((time.time() - 365 * 86400) * 1_000_000)
    db.execute("UPDATE audit_event SET recorded = ? WHERE seq <= 3", (year_ago,))
    db.commit()
    db.close()
    cutoff = (today - datetime.timedelta(days=200)).isoformat()
    r = subprocess.run([BINARY, "audit", "archive", "--data", data, "--before", cutoff, "--to", folder], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "archived AuditEvent/1…3 (3 events)" in r.stdout, r.stdout
    files = sorted(os.listdir(folder))
    assert files == ["audit-000000000001-000000000003.ndjson"]
    lines = [json.loads(line) for line in open(os.path.join(folder, files[0]), encoding="utf-8")]
    assert lines[0]["first"] == 1 and lines[0]["last"] == 3 and lines[-1]["end"] == 3
    assert [line["event"]["resourceType"] for line in lines[1:-1]] == ["AuditEvent"] * 3
    db = sqlite3.connect(os.path.join(data, "huitong.sqlite"))
    assert db.execute("SELECT MIN(seq) FROM audit_event").fetchone()[0] == 4
    db.close()

    ok = subprocess.run([BINARY, "audit", "verify", "--data", data, "--archive", folder], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "archives intact: 3 events" in ok.stdout and "events 1…3 archived" in ok.stdout, ok.stdout
    # The archive edited: named.
    path = os.path.join(folder, files[0])
    text = open(path, encoding="utf-8").read().splitlines()
    record = json.loads(text[2])
    record["content"] = base64.b64encode(base64.b64decode(record["content"]).replace(b"development", b"someone-else")).decode()
    text[2] = json.dumps(record)
    open(path, "w", encoding="utf-8").write("\n".join(text) + "\n")
    bad = subprocess.run([BINARY, "audit", "verify", "--data", data, "--archive", folder], capture_output=True, text=True)
    assert bad.returncode == 1 and "AuditEvent/2 was changed" in bad.stderr, bad.stderr
