"""The national tables the platform ships load with `huitong terminology load --national`, in
Chinese and English; loading them again writes nothing."""
import subprocess

import requests
from fhir.resources.codesystem import CodeSystem

from conftest import BINARY

BASE = "https://huitong.health/fhir/CodeSystem/"


def display(server, system, code, language):
    r = requests.get(f"{server.base}/CodeSystem/$lookup", params={"system": BASE + system, "code": code, "displayLanguage": language})
    assert r.status_code == 200, r.text
    return next(p["valueString"] for p in r.json()["parameter"] if p["name"] == "display")


def test_national_tables_are_shipped(data_dir):
    from conftest import Server
    loaded = subprocess.run([BINARY, "terminology", "load", "--national", "--data", data_dir], capture_output=True, text=True)
    assert loaded.returncode == 0 and loaded.stdout.count("national: created CodeSystem") == 4, loaded.stdout + loaded.stderr
    server = Server(data_dir).start()
    assert display(server, "gbt-2261.1", "1", "zh-CN") == "男"
    assert display(server, "gbt-2261.1", "2", "en") == "Female"
    assert display(server, "gbt-2261.2", "20", "zh-CN") == "已婚"
    assert display(server, "gbt-3304", "01", "zh-CN") == "汉族"
    assert display(server, "cv02-01-101", "01", "zh-CN") == "居民身份证"
    ethnicities = requests.get(f"{server.base}/CodeSystem/gbt-3304").json()
    CodeSystem.parse_obj(ethnicities)
    assert len(ethnicities["concept"]) == 58   # 56 nationalities, 97 other, 98 of foreign origin
    versions = {cs: requests.get(f"{server.base}/CodeSystem/{cs}").json()["meta"]["versionId"] for cs in ["gbt-2261.1", "gbt-3304"]}
    server.stop()
    again = subprocess.run([BINARY, "terminology", "load", "--national", "--data", data_dir], capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.count("national: unchanged CodeSystem") == 4, again.stdout + again.stderr
    server.start()
    try:
        assert {cs: requests.get(f"{server.base}/CodeSystem/{cs}").json()["meta"]["versionId"] for cs in versions} == versions
    finally:
        server.stop()
