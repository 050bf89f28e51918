"""Required bindings of R4 (terminologies.html#required), checked against the official R4 package.

The validator's table (Sources/FHIRModel/Definitions/R4Bindings.swift) must be exactly what the
official hl7.fhir.r4.core 4.0.1 definitions give (r4_package.py computes it), and the server must
refuse a code outside each bound value set and take every code inside it.
"""
import json
import os
import re

import pytest
import requests

from r4_package import advisory_bindings, package, required_bindings

HERE = os.path.dirname(os.path.abspath(__file__))
SWIFT_TABLE = os.path.join(HERE, "..", "..", "Sources", "FHIRModel", "Definitions", "R4Bindings.swift")
FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@pytest.fixture(scope="module")
def official():
    return required_bindings(package())


def embedded(name="r4RequiredBindingsText"):
    """{path: (value set, [(system or None, code)])}, with the strength first for the advisory table."""
    text = open(SWIFT_TABLE, encoding="utf-8").read()
    body = text.split(f'let {name} = #"""\n', 1)[1].split('\n"""#', 1)[0]
    advisory = name != "r4RequiredBindingsText"
    table = {}
    for line in body.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        path, *words = line.split(" ")
        strength = words.pop(0) if advisory else "required"
        value_set = words.pop(0)
        codes, system = [], None
        for w in words:
            if w.startswith("=") and ":" in w:
                system = w[1:]
            else:
                codes.append((system, w))
        table[path] = (value_set, codes, strength)
    return table


def same_table(ours, official):
    assert set(ours) == set(official), {
        "missing": sorted(set(official) - set(ours))[:20], "extra": sorted(set(ours) - set(official))[:20]}
    for path, (value_set, kind, codes, strength) in official.items():
        expected = [(s if kind == "concept" else None, c) for s, c in codes]
        assert ours[path] == (value_set, expected, strength), path


def test_embedded_table_is_the_official_one(official):
    ours = embedded()
    same_table(ours, official)
    # The well-known ones, as a reader of the spec knows them.
    assert [c for _, c in ours["Encounter.status"][1]] == [
        "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown"]
    assert ("http://terminology.hl7.org/CodeSystem/condition-clinical", "remission") in ours["Condition.clinicalStatus"][1]
    assert len(ours) > 300


def test_embedded_advisory_table_is_the_official_one():
    ours = embedded("r4AdvisoryBindingsText")
    same_table(ours, advisory_bindings(package()))
    assert ours["Observation.category"][2] == "preferred" and ours["Patient.maritalStatus"][2] == "extensible"


def test_schema_knows_every_bound_element():
    """Each table path names an element of the structure tables (else its binding would never apply)."""
    structure = open(os.path.join(os.path.dirname(SWIFT_TABLE), "R4Structure.swift"), encoding="utf-8").read()
    elements, current = set(), None
    for line in structure.splitlines():
        if line.startswith("@"):
            current = line[1:].split(" ")[0]
        elif current and len(line.split(" ")) == 3:
            elements.add(current + "." + line.split(" ")[0])
    unknown = [p for p in list(embedded()) + list(embedded("r4AdvisoryBindingsText")) if p not in elements]
    assert unknown == []


# A resource per kind of bound element: (type, JSON with the bound value as {}, the bound path's location).
SHAPES = [
    ("Encounter.status", {"resourceType": "Encounter", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
     "status", "Encounter.status"),
    ("Observation.status", {"resourceType": "Observation", "code": {"text": "x"}}, "status", "Observation.status"),
    ("Patient.gender", {"resourceType": "Patient"}, "gender", "Patient.gender"),
    ("ContactPoint.system", {"resourceType": "Patient"}, "telecom", "Patient.telecom[0].system"),
    ("Task.status", {"resourceType": "Task", "intent": "order"}, "status", "Task.status"),
]


def place(resource, member, code):
    r = json.loads(json.dumps(resource))
    r[member] = [{"system": code, "value": "1"}] if member == "telecom" else code
    return r


@pytest.mark.parametrize("path,resource,member,location", SHAPES, ids=[s[0] for s in SHAPES])
def test_every_code_of_a_bound_value_set_is_taken_and_others_refused(shared_server, official, path, resource, member, location):
    base = shared_server.base
    codes = [c for _, c in official[path][2]]
    for code in codes:
        r = requests.post(f"{base}/{resource['resourceType']}", json=place(resource, member, code), headers=FHIR_JSON)
        assert r.status_code == 201, f"{path} = {code}: {r.status_code} {r.text[:300]}"
    for wrong in ("completed-x", codes[0].upper() if codes[0].upper() != codes[0] else codes[0] + "x", " " + codes[0]):
        r = requests.post(f"{base}/{resource['resourceType']}", json=place(resource, member, wrong), headers=FHIR_JSON)
        assert r.status_code == 400, f"{path} = {wrong!r} was taken"
        issues = r.json()["issue"]
        assert any(location in i.get("expression", []) for i in issues), issues


def test_codeable_concept_binding(shared_server, official):
    base_url = shared_server.base
    system, codes = "http://terminology.hl7.org/CodeSystem/condition-clinical", [c for _, c in official["Condition.clinicalStatus"][2]]
    base = {"resourceType": "Condition", "subject": {"reference": "Patient/x"}}
    for code in codes:
        ok = dict(base, clinicalStatus={"coding": [{"system": "http://his.example/s", "code": "1"}, {"system": system, "code": code}]})
        assert requests.post(f"{base_url}/Condition", json=ok, headers=FHIR_JSON).status_code == 201, code
    for status, where in [({"coding": [{"system": system, "code": "cured"}]}, "Condition.clinicalStatus.coding[0].code"),
                          ({"coding": [{"system": "http://his.example/s", "code": "1"}]}, "Condition.clinicalStatus"),
                          ({"text": "active"}, "Condition.clinicalStatus")]:
        r = requests.post(f"{base_url}/Condition", json=dict(base, clinicalStatus=status), headers=FHIR_JSON)
        assert r.status_code == 400, status
        assert any(where in i.get("expression", []) for i in r.json()["issue"]), r.text
    # $validate reports the same, and stores nothing.
    r = requests.post(f"{base_url}/Condition/$validate", json=dict(base, clinicalStatus={"text": "active"}), headers=FHIR_JSON)
    assert r.status_code == 200
    assert [i for i in r.json()["issue"] if i["severity"] == "error"], r.text


def test_validate_warns_of_extensible_and_preferred_bindings_and_writes_ignore_them(shared_server):
    base = shared_server.base
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "血红蛋白"},
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "lab"}]}]}
    r = requests.post(f"{base}/Observation/$validate", json=observation, headers=FHIR_JSON)
    assert r.status_code == 200
    issues = r.json()["issue"]
    assert [i["severity"] for i in issues] == ["warning"], issues
    assert issues[0]["expression"] == ["Observation.category[0].coding[0].code"]
    assert "preferred" in issues[0]["diagnostics"] and "laboratory" in issues[0]["diagnostics"]
    r = requests.post(f"{base}/Observation/$validate?mode=create", json=observation, headers=FHIR_JSON)
    assert [i["severity"] for i in r.json()["issue"]] == ["warning", "information"], r.text
    assert requests.post(f"{base}/Observation", json=observation, headers=FHIR_JSON).status_code == 201
