"""`huitong import` loads patient transaction Bundles made by a generator that is not ours
(tietai-synthea), including types outside the platform's core list (Claim, EOB, Device...)."""
import json
import os
import subprocess

import pytest
import requests

from conftest import BINARY, POSTGRES_URL, Server, fresh_postgres_database

SYNTHEA = os.environ.get("SYNTHEA_BIN")


@pytest.mark.skipif(not SYNTHEA, reason="set SYNTHEA_BIN to a tietai-synthea 'synthea' executable (.ci/run does)")
def test_import_generated_patients(data_dir, tmp_path):
    out = tmp_path / "synthea"
    subprocess.run([SYNTHEA, "-p", "20", "-s", "1", "-o", str(out)], check=True, capture_output=True)
    files = [os.path.join(dp, f) for dp, _, fs in os.walk(out) for f in fs if f.endswith(".json")]
    assert len(files) >= 20
    expected = {}
    for f in files:
        for e in json.load(open(f))["entry"]:
            t = e["resource"]["resourceType"]
            expected[t] = expected.get(t, 0) + 1
    assert {"Claim", "ExplanationOfBenefit", "Patient"} <= set(expected)

    result = subprocess.run([BINARY, "import", str(out), "--data", data_dir], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "0 failed" in result.stdout

    server = Server(data_dir).start()
    try:
        for resource_type, count in expected.items():
            stored = requests.get(f"{server.base}/{resource_type}", params={"_summary": "count"}).json()["total"]
            assert stored == count, resource_type
        sample = requests.get(f"{server.base}/Observation", params={"_count": 5}).json()["entry"]
    finally:
        server.stop()

    # The county moves up: the same data exported into PostgreSQL serves the same answers.
    if not POSTGRES_URL:
        return
    database = fresh_postgres_database("huitong_export")
    migrated = subprocess.run([BINARY, "migrate", "--database", database], capture_output=True, text=True)
    assert migrated.returncode == 0 and "is at version" in migrated.stdout, migrated.stdout + migrated.stderr
    exported = subprocess.run([BINARY, "export", "--data", data_dir, "--to", database], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "counts per type match" in exported.stdout
    # The audit trail moves with the data and verifies there as it did in the embedded store.
    before = subprocess.run([BINARY, "audit", "verify", "--data", data_dir], capture_output=True, text=True)
    after = subprocess.run([BINARY, "audit", "verify", "--database", database], capture_output=True, text=True)
    assert before.returncode == 0 and after.returncode == 0, before.stderr + after.stderr
    assert before.stdout.split(" in ")[0] == after.stdout.split(" in ")[0], (before.stdout, after.stdout)
    assert before.stdout.split(", head ")[1] == after.stdout.split(", head ")[1]
    (tmp_path / "pg").mkdir()
    on_postgres = Server(str(tmp_path / "pg"), database)
    # The data keeps its identifier keyring (a store refuses another one).
    on_postgres.start_args += ["--identifier-keys", os.path.join(data_dir, "keys", "identifier-keys")]
    on_postgres.start()
    try:
        for resource_type, count in expected.items():
            stored = requests.get(f"{on_postgres.base}/{resource_type}", params={"_summary": "count"}).json()["total"]
            assert stored == count, resource_type
        for entry in sample:
            r = requests.get(entry["fullUrl"].replace(f"127.0.0.1:{server.port}", f"127.0.0.1:{on_postgres.port}"))
            assert r.status_code == 200 and r.json() == entry["resource"]
    finally:
        on_postgres.stop()


def test_import_reports_failed_files_and_loads_the_rest(data_dir, tmp_path):
    good = tmp_path / "good.ndjson"
    good.write_text("\n".join(json.dumps({"resourceType": "Patient", "id": f"p{i}", "gender": "male"}) for i in range(3)) + "\n")
    bad = tmp_path / "bad.json"
    bad.write_text('{"resourceType":"Patient","birthDate":"1990-13-45"}')
    result = subprocess.run([BINARY, "import", str(tmp_path), "--data", data_dir], capture_output=True, text=True)
    assert result.returncode != 0
    assert "bad.json" in result.stderr and "Patient.birthDate" in result.stderr
    server = Server(data_dir).start()
    try:
        for i in range(3):
            assert requests.get(f"{server.base}/Patient/p{i}").status_code == 200
    finally:
        server.stop()
