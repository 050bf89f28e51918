"""`huitong audit verify` on a real store: intact after real traffic; after an audit row is
edited or deleted directly in the SQLite file, it fails and names the first broken event."""
import os
import shutil
import sqlite3
import subprocess

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
