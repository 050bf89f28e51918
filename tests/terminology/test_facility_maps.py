"""Facility code maps (四统一): each facility registers a ConceptMap from its local lab codes to the
regional standard (LOINC here). A result the facility then sends with a local code — over REST,
in a transaction, or as a batch entry — is stored with the standard Coding added beside the
original (which is kept as sent; a concept that already has the standard code gets nothing), so
that a search by the standard code finds it. Another facility's local codes are not translated by
this facility's map. `$translate` answers forward and reverse; `$unmapped-codes` lists a
facility's local codes its map lacks, with counts, to the facility and to operators only.
Runs a real server without --dev, with facility clients' tokens."""
import subprocess

import pytest
import requests
from fhir.resources.conceptmap import ConceptMap
from fhir.resources.observation import Observation
from fhir.resources.parameters import Parameters

from conftest import BINARY, Server

LOINC = "http://loinc.org"
LOCAL_A = "urn:huitong:local:org-a:lab"
LOCAL_B = "urn:huitong:local:org-b:lab"


def client(data, name, facility=None, role=None, scopes="system/*.cruds"):
    args = [BINARY, "client", "create", "--data", data, "--name", name, "--scopes", scopes]
    if facility:
        args += ["--facility", facility]
    if role:
        args += ["--role", role]
    out = subprocess.run(args, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    cid = next(l.split(": ", 1)[1] for l in lines if l.startswith("client_id: "))
    secret = next(l.split(": ", 1)[1].split()[0] for l in lines if l.startswith("client_secret: "))
    return cid, secret


class Facility:
    def __init__(self, server, cid, secret):
        r = requests.post(server.base.rsplit("/fhir", 1)[0] + "/auth/token",
                          data={"grant_type": "client_credentials", "client_id": cid, "client_secret": secret})
        assert r.status_code == 200, r.text
        self.base = server.base
        self.headers = {"Authorization": "Bearer " + r.json()["access_token"], "Content-Type": "application/fhir+json"}

    def get(self, path, **params):
        return requests.get(f"{self.base}/{path}", params=params, headers=self.headers)

    def post(self, path, body):
        return requests.post(f"{self.base}/{path}" if path else self.base, json=body, headers=self.headers)

    def put(self, path, body):
        return requests.put(f"{self.base}/{path}", json=body, headers=self.headers)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("maps"))
    ids = {"a": client(data, "LIS A", "org-a"), "b": client(data, "LIS B", "org-b"),
           "operator": client(data, "ops", role="operator", scopes="system/ConceptMap.rs")}
    server = Server(data)
    server.dev = False
    server.start()
    callers = {k: Facility(server, *v) for k, v in ids.items()}
    concept_map = {
        "resourceType": "ConceptMap", "id": "org-a-lab", "url": "https://org-a.example/fhir/ConceptMap/lab", "status": "active",
        "group": [{"source": LOCAL_A, "target": LOINC, "element": [
            {"code": "GLU", "display": "血糖", "target": [{"code": "2345-7", "display": "Glucose [Mass/volume] in Serum or Plasma",
                                                         "equivalence": "equivalent"}]},
            {"code": "HB", "display": "血红蛋白", "target": [{"code": "718-7", "equivalence": "equal"}]},
            {"code": "CHEM7", "display": "生化七项", "target": [{"code": "24321-2", "equivalence": "narrower"}]},
        ]}]}
    r = callers["a"].put("ConceptMap/org-a-lab", concept_map)
    assert r.status_code in (200, 201), r.text
    ConceptMap.parse_obj(r.json())   # as stored, with the server's meta
    callers["a"].put("Patient/pa", {"resourceType": "Patient", "id": "pa", "name": [{"family": "王"}]}).raise_for_status()
    callers["b"].put("Patient/pb", {"resourceType": "Patient", "id": "pb", "name": [{"family": "李"}]}).raise_for_status()
    yield callers
    server.stop()


def observation(system, code, patient="pa", extra=()):
    return {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patient}"},
            "code": {"coding": [{"system": system, "code": code, "userSelected": True}, *extra], "text": code}}


def codings(resource):
    return [(c["system"], c["code"]) for c in resource["code"]["coding"]]


def test_a_mapped_local_code_gets_the_standard_coding_beside_it(region):
    a = region["a"]
    r = a.post("Observation", observation(LOCAL_A, "GLU"))
    assert r.status_code == 201, r.text
    stored = a.get("Observation/" + r.json()["id"]).json()
    Observation.parse_obj(stored)
    assert codings(stored) == [(LOCAL_A, "GLU"), (LOINC, "2345-7")]
    assert stored["code"]["coding"][0]["userSelected"] is True, "the original is kept as sent"
    added = stored["code"]["coding"][1]
    assert "userSelected" not in added and added["display"].startswith("Glucose")
    assert added["extension"][0]["valueCanonical"] == "https://org-a.example/fhir/ConceptMap/lab"
    found = a.get("Observation", code=f"{LOINC}|2345-7").json()
    assert r.json()["id"] in [e["resource"]["id"] for e in found.get("entry", [])]


def test_every_channel_and_only_asserting_mappings(region):
    a = region["a"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(LOCAL_A, "HB"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation(LOCAL_A, "CHEM7"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation(LOCAL_A, "GLU", extra=[{"system": LOINC, "code": "2345-7"}]), "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = a.post("", bundle)
    assert r.status_code == 200, r.text
    ids = [e["response"]["location"].split("/")[1] for e in r.json()["entry"]]
    stored = [a.get("Observation/" + i).json() for i in ids]
    assert codings(stored[0]) == [(LOCAL_A, "HB"), (LOINC, "718-7")]
    assert codings(stored[1]) == [(LOCAL_A, "CHEM7")], "a narrower mapping does not say the record is of the standard code"
    assert codings(stored[2]) == [(LOCAL_A, "GLU"), (LOINC, "2345-7")], "already coded: nothing added twice"
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": observation(LOCAL_A, "HB"), "request": {"method": "POST", "url": "Observation"}}]}
    r = a.post("", batch)
    assert r.json()["entry"][0]["response"]["status"].startswith("201")
    bid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    assert codings(a.get("Observation/" + bid).json()) == [(LOCAL_A, "HB"), (LOINC, "718-7")]


def test_another_facilitys_codes_are_not_translated_by_this_map(region):
    b = region["b"]
    # org-b uses org-a's local system by mistake: org-a's map is not org-b's.
    r = b.post("Observation", observation(LOCAL_A, "GLU", patient="pb"))
    assert r.status_code == 201, r.text
    assert codings(b.get("Observation/" + r.json()["id"]).json()) == [(LOCAL_A, "GLU")]


def test_translate_forward_and_reverse(region):
    a = region["a"]
    r = a.get("ConceptMap/$translate", system=LOCAL_A, code="GLU", targetsystem=LOINC)
    assert r.status_code == 200, r.text
    Parameters.parse_obj(r.json())
    params = r.json()["parameter"]
    assert params[0] == {"name": "result", "valueBoolean": True}
    match = {p["name"]: p for p in next(p for p in params if p["name"] == "match")["part"]}
    assert match["equivalence"]["valueCode"] == "equivalent" and match["concept"]["valueCoding"]["code"] == "2345-7"
    back = a.get("ConceptMap/$translate", system=LOINC, code="718-7", reverse="true").json()
    Parameters.parse_obj(back)
    back = back["parameter"]
    match = {p["name"]: p for p in next(p for p in back if p["name"] == "match")["part"]}
    assert match["concept"]["valueCoding"] == {"system": LOCAL_A, "code": "HB", "display": "血红蛋白"}
    none = a.get("ConceptMap/$translate", system=LOCAL_A, code="NOPE").json()
    Parameters.parse_obj(none)
    none = none["parameter"]
    assert none[0] == {"name": "result", "valueBoolean": False} and none[1]["name"] == "message"


def test_unmapped_local_codes_are_listed_with_counts(region):
    a = region["a"]
    for code, n in (("K", 3), ("NA", 1)):
        for _ in range(n):
            assert a.post("Observation", observation(LOCAL_A, code)).status_code == 201
    # A map whose unmapped codes are "provided" (the same code in another system) answers
    # $translate for every code, but ingest adds nothing for them: they stay listed.
    provided = {"resourceType": "ConceptMap", "id": "org-a-provided", "url": "https://org-a.example/fhir/ConceptMap/provided",
                "status": "active", "group": [{"source": LOCAL_A, "target": "https://org-a.example/fhir/CodeSystem/lab-v2",
                                               "element": [{"code": "OLD", "target": [{"code": "NEW", "equivalence": "equivalent"}]}],
                                               "unmapped": {"mode": "provided"}}]}
    assert a.put("ConceptMap/org-a-provided", provided).status_code in (200, 201)
    r = a.get("ConceptMap/$unmapped-codes")
    assert r.status_code == 200, r.text
    Parameters.parse_obj(r.json())
    listed = [{q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]} for p in r.json()["parameter"]]
    # CHEM7 is in the map (narrower): mapped, if not to a standard code the record is of.
    assert listed == [{"system": LOCAL_A, "code": "K", "records": 3}, {"system": LOCAL_A, "code": "NA", "records": 1}]
    operator = region["operator"].get("ConceptMap/$unmapped-codes", facility="org-a")
    assert operator.status_code == 200 and len(operator.json()["parameter"]) == 2
    assert region["b"].get("ConceptMap/$unmapped-codes", facility="org-a").status_code == 403


def test_code_systems_are_registered_by_administrators_not_facilities(region):
    cs = {"resourceType": "CodeSystem", "id": "not-mine", "url": "http://hl7.org/fhir/sid/icd-10", "version": "zzz",
          "status": "active", "content": "complete", "concept": [{"code": "I10", "display": "spoof"}]}
    r = region["a"].put("CodeSystem/not-mine", cs)
    assert r.status_code == 403 and "administrators" in r.text, r.text
    assert region["a"].get("CodeSystem/not-mine").status_code == 404
