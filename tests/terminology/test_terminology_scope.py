"""The terminology service as a regional platform's users rely on it, end to end through
`huitong terminology load` and the REST API:

* a code table kept in a spreadsheet (CSV with Chinese headers, a BOM and CRLF, as Excel writes
  it) loaded with a column mapping: hierarchy from the parent column, zh-CN and en designations,
  a definition and string properties; `$lookup` and `$subsumes` answer from it; loading it again
  changes nothing, a changed table updates it, and a table with a bad row loads nothing;
* a Bundle (collection) holding a CodeSystem, a ValueSet and a ConceptMap loaded at once;
* `ValueSet/$expand` (activeOnly, regex and `=` filters, compose.inactive, displayLanguage,
  paging), `ValueSet/$validate-code` (display checks), `ConceptMap/$translate` (group.unmapped);
* the terminology search modifiers (`:below`, `:above`, `:in`, `:not-in`) on token parameters
  other than `code` of Observation and Condition.

Every expected answer is computed here from the tables the test writes, never read back from
the server; every answer is valid R4 (`fhir.resources` 6.4.0)."""
import csv
import json
import os
import re
import subprocess

import pytest
import requests
from fhir.resources.bundle import Bundle
from fhir.resources.codesystem import CodeSystem
from fhir.resources.conceptmap import ConceptMap
from fhir.resources.operationoutcome import OperationOutcome
from fhir.resources.parameters import Parameters
from fhir.resources.valueset import ValueSet

from conftest import BINARY, Server

FHIR_JSON = {"Content-Type": "application/fhir+json"}
BASE = "https://huitong.example/fhir/"
VS_BASE = BASE + "ValueSet/"
LOINC = "http://loinc.org"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"

# ---------------------------------------------------------------------------------------------
# A regional disease classification kept as a spreadsheet (本地疾病分类): one row a concept.
# (code, 名称, 上级, 英文名, 类别, 状态, 说明)
# ---------------------------------------------------------------------------------------------
DISEASE = BASE + "CodeSystem/local-disease"
DISEASE_VERSION = "2024"
DISEASES = [
    ("CVD", "心血管疾病", "", "Cardiovascular disease", "chapter", "", ""),
    ("HTN", "高血压", "CVD", "Hypertension, all forms", "group", "active", "血压持续升高"),
    ("HTN.1", "原发性高血压", "HTN", "Essential hypertension", "leaf", "active", ""),
    ("HTN.2", "继发性高血压", "HTN", "Secondary hypertension", "leaf", "active", ""),
    ("HTN.9", "高血压（旧码）", "HTN", "Hypertension (legacy code)", "leaf", "retired", ""),
    ("IHD", "缺血性心脏病", "CVD", "Ischaemic heart disease", "group", "active", ""),
    ("IHD.1", "心绞痛", "IHD", "Angina pectoris", "leaf", "active", ""),
    ("IHD.2", "急性心肌梗死", "IHD", "Acute myocardial infarction", "leaf", "active", ""),
    ("END", "内分泌疾病", "", "Endocrine disease", "chapter", "", ""),
    ("DM", "糖尿病", "END", "Diabetes mellitus", "group", "active", ""),
    ("DM.1", "1型糖尿病", "DM", "Diabetes mellitus, type 1", "leaf", "active", ""),
    ("DM.2", "2型糖尿病", "DM", "Diabetes mellitus, type 2", "leaf", "active", "以胰岛素抵抗为主"),
    ("DM.X", "糖尿病（停用）", "DM", "", "leaf", "retired", ""),   # no English name
]
HEADER = ["编码", "上级", "名称", "英文名", "类别", "状态", "说明", "备注"]   # 备注: not mapped, ignored
COLUMNS = ["code=编码", "display=名称", "zh=名称", "en=英文名", "parent=上级",
           "property:category=类别", "property:status=状态", "definition=说明"]
D = {row[0]: row for row in DISEASES}
D_PARENT = {code: parent for code, _, parent, *_ in DISEASES if parent}
D_CHILDREN = {code: [c for c, p in D_PARENT.items() if p == code] for code in D}   # in table order
D_INACTIVE = {code for code, *rest in DISEASES if rest[4] == "retired"}


def d_ancestors(code):
    found = []
    while code in D_PARENT:
        code = D_PARENT[code]
        found.append(code)
    return found


def d_below(code):
    return {c for c in D if c == code or code in d_ancestors(c)}


def write_csv(path, rows, header=HEADER):
    """As a Chinese spreadsheet exports it: UTF-8 with a BOM, CRLF, quotes where a cell has a comma."""
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f, lineterminator="\r\n")
        w.writerow(header)
        for i, (code, zh, parent, en, category, status, definition) in enumerate(rows):
            w.writerow([code, parent, zh, en, category, status, definition, "核对" if i % 2 else ""])
            if i == 4:
                w.writerow([""] * len(header))   # an empty line in the middle of the sheet: skipped


def load(data, *args):
    return subprocess.run([BINARY, "terminology", "load", *args, "--data", data], capture_output=True, text=True)


def load_csv(data, path, url=DISEASE, version=DISEASE_VERSION, columns=COLUMNS):
    args = [path, "--url", url, "--version", version, "--name", "LocalDisease", "--title", "本地疾病分类"]
    for c in columns:
        args += ["--column", c]
    return load(data, *args)


def load_line(path, disposition, type_, canonical, size=None):
    """The line `huitong terminology load` prints for one resource."""
    sized = rf" \({size}\)" if size else ""
    return re.compile(rf"^{re.escape(path)}: {disposition} {type_} {re.escape(canonical)}{sized} in \d+\.\d s$", re.M)


# ---------------------------------------------------------------------------------------------
# A laboratory item catalogue (检验项目) as a FHIR CodeSystem with nested panels, a ValueSet and a
# ConceptMap to LOINC, delivered together in one Bundle (type collection).
# (code, panel, zh display, en designation, properties)
# ---------------------------------------------------------------------------------------------
LAB = BASE + "CodeSystem/lab-items"
LAB_ITEMS = [
    ("CHEM", None, "生化检验", "Clinical chemistry", {}),
    ("GLU", "CHEM", "葡萄糖", "Glucose", {"specimen": "serum"}),
    ("GLU-OLD", "CHEM", "葡萄糖（旧方法）", "Glucose (old method)", {"specimen": "serum", "status": "retired"}),
    ("ALT", "CHEM", "丙氨酸氨基转移酶", "Alanine aminotransferase", {"specimen": "serum"}),
    ("K", "CHEM", "钾", "Potassium", {"specimen": "serum", "inactive": True}),
    ("NA", "CHEM", "钠", "Sodium", {"specimen": "serum", "status": "deprecated"}),
    ("HEME", None, "血液学检验", "Hematology", {}),
    ("HGB", "HEME", "血红蛋白", "Hemoglobin", {"specimen": "blood"}),
    ("WBC", "HEME", "白细胞计数", "White blood cell count", {"specimen": "blood", "status": "active"}),
    ("PLT", "HEME", "血小板计数", "Platelet count", {"specimen": "blood", "inactive": False}),
    ("ESR", "HEME", "红细胞沉降率", "Erythrocyte sedimentation rate", {"specimen": "blood", "status": "retired"}),
    ("UA", None, "尿液检验", "Urinalysis", {}),
    ("UPRO", "UA", "尿蛋白", "Urine protein", {"specimen": "urine"}),
    ("UGLU", "UA", "尿葡萄糖", "Urine glucose", {"specimen": "urine", "status": "experimental"}),
]
L = {item[0]: item for item in LAB_ITEMS}
# R4 concept properties: `inactive` true, or `status` retired (deprecated / experimental are still active).
L_INACTIVE = {code for code, _, _, _, props in LAB_ITEMS if props.get("inactive") is True or props.get("status") == "retired"}


def l_below(code):
    return {c for c, panel, *_ in LAB_ITEMS if c == code or panel == code}


def lab_codesystem():
    def concept(code, _panel, zh, en, props):
        c = {"code": code, "display": zh, "designation": [{"language": "zh-CN", "value": zh}, {"language": "en", "value": en}]}
        properties = []
        for name, v in props.items():
            properties.append({"code": name, "valueBoolean": v} if isinstance(v, bool) else {"code": name, "valueCode": v})
        if properties:
            c["property"] = properties
        children = [concept(*item) for item in LAB_ITEMS if item[1] == code]
        if children:
            c["concept"] = children
        return c
    return {"resourceType": "CodeSystem", "id": "lab-items", "url": LAB, "version": "3", "name": "LabItems", "title": "检验项目",
            "status": "active", "content": "complete", "hierarchyMeaning": "is-a", "caseSensitive": True,
            "property": [{"code": "specimen", "type": "code"},
                         {"code": "status", "uri": "http://hl7.org/fhir/concept-properties#status", "type": "code"},
                         {"code": "inactive", "uri": "http://hl7.org/fhir/concept-properties#inactive", "type": "boolean"}],
            "concept": [concept(*item) for item in LAB_ITEMS if item[1] is None]}


LAB_ALL = VS_BASE + "lab-all"
LAB_MAP = BASE + "ConceptMap/lab-to-loinc"
# source code → (LOINC code, display, equivalence); UPRO is said to have no LOINC counterpart.
LAB_TO_LOINC = {
    "GLU": ("2345-7", "Glucose [Mass/volume] in Serum or Plasma", "equivalent"),
    "HGB": ("718-7", "Hemoglobin [Mass/volume] in Blood", "equal"),
    "WBC": ("6690-2", "Leukocytes [#/volume] in Blood by Automated count", "equivalent"),
    "K": ("2823-3", "Potassium [Moles/volume] in Serum or Plasma", "equivalent"),
}
UNKNOWN = ("LA4489-6", "Unknown")   # the map's fixed target of codes it does not map


def lab_bundle():
    vs = {"resourceType": "ValueSet", "id": "lab-all", "url": LAB_ALL, "version": "3", "name": "LabAll", "status": "active",
          "compose": {"include": [{"system": LAB}]}}
    elements = [{"code": code, "display": L[code][2], "target": [{"code": t, "display": d, "equivalence": e}]}
                for code, (t, d, e) in LAB_TO_LOINC.items()]
    elements.append({"code": "UPRO", "display": "尿蛋白",
                     "target": [{"equivalence": "unmatched", "comment": "No LOINC code for the local semi-quantitative method"}]})
    cm = {"resourceType": "ConceptMap", "id": "lab-to-loinc", "url": LAB_MAP, "version": "3", "name": "LabToLoinc", "status": "active",
          "sourceUri": LAB_ALL, "group": [{"source": LAB, "target": LOINC, "element": elements,
                                           "unmapped": {"mode": "fixed", "code": UNKNOWN[0], "display": UNKNOWN[1]}}]}
    return {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": LAB, "resource": lab_codesystem()},
        {"fullUrl": LAB_ALL, "resource": vs},
        {"fullUrl": LAB_MAP, "resource": cm}]}


# ---------------------------------------------------------------------------------------------
# One platform for the module: everything loaded with the CLI before the server starts.
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("tx"))
    runs = {}
    table = os.path.join(data, "本地疾病分类.csv")
    write_csv(table, DISEASES)
    runs["csv"] = (table, load_csv(data, table))
    runs["csv again"] = (table, load_csv(data, table))

    # Bad tables: each must be refused whole.
    no_code = os.path.join(data, "no-code.csv")
    rows = list(DISEASES)
    rows[3] = ("", "继发性高血压", "HTN", "Secondary hypertension", "leaf", "active", "")   # a row without its code
    write_csv(no_code, rows)
    runs["no code"] = (no_code, load_csv(data, no_code, url=BASE + "CodeSystem/no-code"))
    twice = os.path.join(data, "twice.csv")
    rows = [(c, zh + "（改）", p, en, cat, st, df) for c, zh, p, en, cat, st, df in DISEASES]   # every display changed…
    rows.append(("IHD.1", "心绞痛", "IHD", "Angina", "leaf", "active", ""))                   # …and a code twice
    write_csv(twice, rows)
    runs["twice"] = (twice, load_csv(data, twice))
    wrong_header = os.path.join(data, "wrong-header.csv")
    write_csv(wrong_header, DISEASES)
    runs["wrong header"] = (wrong_header, load_csv(data, wrong_header, url=BASE + "CodeSystem/wrong-header",
                                                   columns=[c if not c.startswith("parent=") else "parent=父级" for c in COLUMNS]))

    dangling = os.path.join(data, "dangling-parent.csv")
    write_csv(dangling, DISEASES + [("DM.3", "妊娠糖尿病", "DN", "Gestational diabetes", "leaf", "active", "")])   # DN: a typo of DM
    runs["dangling parent"] = (dangling, load_csv(data, dangling, url=BASE + "CodeSystem/dangling-parent"))
    cycle = os.path.join(data, "cycle.csv")
    write_csv(cycle, DISEASES + [("X1", "甲", "X2", "X one", "leaf", "active", ""), ("X2", "乙", "X1", "X two", "leaf", "active", "")])
    runs["cycle"] = (cycle, load_csv(data, cycle, url=BASE + "CodeSystem/cycle"))

    bundle = os.path.join(data, "lab.json")
    with open(bundle, "w", encoding="utf-8") as f:
        json.dump(lab_bundle(), f, ensure_ascii=False)
    runs["bundle"] = (bundle, load(data, bundle))
    runs["bundle again"] = (bundle, load(data, bundle))
    for name in ["csv", "csv again", "bundle", "bundle again"]:
        assert runs[name][1].returncode == 0, (name, runs[name][1].stdout, runs[name][1].stderr)

    server = Server(data).start()
    server.runs = runs
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------
# Helpers (as in test_icd10.py)
# ---------------------------------------------------------------------------------------------
def operation(server, path, **params):
    r = requests.get(f"{server.base}/{path}", params=params)
    assert r.status_code == 200, (r.url, r.text)
    Parameters.parse_obj(r.json())
    return r.json()


def parts(parameters, name):
    return [p for p in parameters.get("parameter", []) if p["name"] == name]


def value(parameters, name):
    p = parts(parameters, name)[0]
    return next(v for k, v in p.items() if k.startswith("value"))


def part_values(p):
    return {q["name"]: next(v for k, v in q.items() if k.startswith("value")) for q in p["part"]}


def properties(parameters):
    found = {}
    for p in parts(parameters, "property"):
        members = part_values(p)
        found.setdefault(members["code"], []).append(members["value"])
    return found


def put(server, type_, body):
    r = requests.put(f"{server.base}/{type_}/{body['id']}", json=body, headers=FHIR_JSON)
    assert r.status_code in (200, 201), r.text
    return r.json()


def put_value_set(server, vid, compose):
    put(server, "ValueSet", {"resourceType": "ValueSet", "id": vid, "url": VS_BASE + vid, "status": "active", "compose": compose})
    return VS_BASE + vid


def expansion(server, url, **params):
    r = requests.get(f"{server.base}/ValueSet/$expand", params={"url": url, **params})
    assert r.status_code == 200, (r.url, r.text)
    ValueSet.parse_obj(r.json())
    return r.json()["expansion"]


def codes_of(exp):
    return [c["code"] for c in exp.get("contains", [])]


def search_ids(server, type_, **params):
    ids, url, params = set(), f"{server.base}/{type_}", {**params, "_count": 100}
    while url:
        r = requests.get(url, params=params)
        assert r.status_code == 200, (r.url, r.text)
        Bundle.parse_obj(r.json())
        params = None
        ids |= {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode", "match") == "match"}
        url = next((l["url"] for l in r.json().get("link", []) if l["relation"] == "next"), None)
    return ids


def stored(server, type_, url):
    r = requests.get(f"{server.base}/{type_}", params={"url": url})
    assert r.status_code == 200, r.text
    Bundle.parse_obj(r.json())
    return [e["resource"] for e in r.json().get("entry", [])]


def history_size(server, type_, rid):
    r = requests.get(f"{server.base}/{type_}/{rid}/_history")
    assert r.status_code == 200, r.text
    Bundle.parse_obj(r.json())
    return len(r.json().get("entry", []))


# ---------------------------------------------------------------------------------------------
# 1. The CSV table
# ---------------------------------------------------------------------------------------------
def test_csv_table_loads_with_its_column_mapping(platform):
    table, run = platform.runs["csv"]
    assert load_line(table, "created", "CodeSystem", f"{DISEASE}|{DISEASE_VERSION}", len(DISEASES)).search(run.stdout), run.stdout
    [cs] = stored(platform, "CodeSystem", DISEASE)
    CodeSystem.parse_obj(cs)
    assert (cs["version"], cs["name"], cs["title"], cs["status"], cs["content"]) == (DISEASE_VERSION, "LocalDisease", "本地疾病分类", "active", "complete")
    assert cs["hierarchyMeaning"] == "is-a" and cs["count"] == len(DISEASES)
    assert [c["code"] for c in cs["concept"]] == [row[0] for row in DISEASES], "the empty line is skipped, the order kept"
    assert {p["code"]: p["type"] for p in cs["property"]} == {"parent": "code", "category": "string", "status": "string"}
    htn = next(c for c in cs["concept"] if c["code"] == "HTN")
    assert htn["designation"][1] == {"language": "en", "value": "Hypertension, all forms"}, "a quoted cell keeps its comma"


def test_lookup_gives_display_designations_properties_and_hierarchy(platform):
    for code, zh, parent, en, category, status, definition in DISEASES:
        answer = operation(platform, "CodeSystem/$lookup", system=DISEASE, code=code)
        assert value(answer, "name") == "LocalDisease" and value(answer, "version") == DISEASE_VERSION
        assert value(answer, "display") == zh, code
        if definition:
            assert value(answer, "definition") == definition
        else:
            assert not parts(answer, "definition"), code
        designations = [(d.get("language"), d["value"]) for d in map(part_values, parts(answer, "designation"))]
        assert designations == [("zh-CN", zh)] + ([("en", en)] if en else []), code
        props = properties(answer)
        assert props.get("parent", []) == ([parent] if parent else []), code
        assert props.get("child", []) == D_CHILDREN[code], code
        assert props["category"] == [category], code
        assert props.get("status", []) == ([status] if status else []), code
        assert props.get("inactive", [False]) == [code in D_INACTIVE], code
        english = operation(platform, "CodeSystem/$lookup", system=DISEASE, code=code, displayLanguage="en")
        assert value(english, "display") == (en or zh), code
    only = operation(platform, "CodeSystem/$lookup", system=DISEASE, code="DM", property="child")
    assert properties(only) == {"child": ["DM.1", "DM.2", "DM.X"]}
    missing = requests.get(f"{platform.base}/CodeSystem/$lookup", params={"system": DISEASE, "code": "HTN.3"})
    assert missing.status_code == 404
    OperationOutcome.parse_obj(missing.json())


def test_subsumes_follows_the_parent_column(platform):
    for a in D:
        for b in D:
            expected = ("equivalent" if a == b else "subsumes" if a in d_ancestors(b)
                        else "subsumed-by" if b in d_ancestors(a) else "not-subsumed")
            answer = operation(platform, "CodeSystem/$subsumes", system=DISEASE, codeA=a, codeB=b)
            assert value(answer, "outcome") == expected, (a, b)


def test_loading_the_same_csv_again_changes_nothing(platform):
    table, run = platform.runs["csv again"]
    assert load_line(table, "unchanged", "CodeSystem", f"{DISEASE}|{DISEASE_VERSION}", len(DISEASES)).search(run.stdout), run.stdout
    [cs] = stored(platform, "CodeSystem", DISEASE)
    assert cs["meta"]["versionId"] == "1"
    assert history_size(platform, "CodeSystem", cs["id"]) == 1


def test_a_changed_csv_updates_the_code_system_and_an_unchanged_one_does_not(data_dir):
    table = os.path.join(data_dir, "disease.csv")
    write_csv(table, DISEASES)
    assert load_csv(data_dir, table).returncode == 0
    again = load_csv(data_dir, table)
    assert again.returncode == 0 and load_line(table, "unchanged", "CodeSystem", f"{DISEASE}|{DISEASE_VERSION}", len(DISEASES)).search(again.stdout)
    renamed = [("IHD.1", "稳定型心绞痛", *D["IHD.1"][2:])] + [row for row in DISEASES if row[0] != "IHD.1"]
    renamed.append(("IHD.3", "陈旧性心肌梗死", "IHD", "Old myocardial infarction", "leaf", "active", ""))
    write_csv(table, renamed)
    changed = load_csv(data_dir, table)
    assert changed.returncode == 0, changed.stderr
    assert load_line(table, "updated", "CodeSystem", f"{DISEASE}|{DISEASE_VERSION}", len(DISEASES) + 1).search(changed.stdout), changed.stdout
    server = Server(data_dir).start()
    try:
        [cs] = stored(server, "CodeSystem", DISEASE)
        CodeSystem.parse_obj(cs)
        assert cs["meta"]["versionId"] == "2", "created, left alone once, updated once"
        assert history_size(server, "CodeSystem", cs["id"]) == 2
        assert value(operation(server, "CodeSystem/$lookup", system=DISEASE, code="IHD.1"), "display") == "稳定型心绞痛"
        assert properties(operation(server, "CodeSystem/$lookup", system=DISEASE, code="IHD"))["child"] == ["IHD.1", "IHD.2", "IHD.3"]
        assert value(operation(server, "CodeSystem/$subsumes", system=DISEASE, codeA="CVD", codeB="IHD.3"), "outcome") == "subsumes"
    finally:
        server.stop()


def test_a_csv_with_a_bad_row_loads_nothing(platform):
    table, run = platform.runs["no code"]
    assert run.returncode != 0 and "created" not in run.stdout
    assert "CSV line 5 has no code" in run.stderr, run.stderr   # header = line 1; the 4th concept row
    assert stored(platform, "CodeSystem", BASE + "CodeSystem/no-code") == []

    table, run = platform.runs["twice"]
    assert run.returncode != 0 and "updated" not in run.stdout
    assert "code 'IHD.1' comes twice" in run.stderr, run.stderr
    [cs] = stored(platform, "CodeSystem", DISEASE)
    assert cs["meta"]["versionId"] == "1", "the good table loaded before is left as it was"
    assert value(operation(platform, "CodeSystem/$lookup", system=DISEASE, code="HTN"), "display") == "高血压"

    table, run = platform.runs["wrong header"]
    assert run.returncode != 0 and "no column '父级'" in run.stderr, run.stderr
    assert stored(platform, "CodeSystem", BASE + "CodeSystem/wrong-header") == []


def test_a_csv_whose_parent_is_not_in_the_table_loads_nothing(platform):
    # The parent column becomes the `parent` property, declared of type code; R4 PropertyType code: "The property value
    # is a code that identifies a concept defined in the code system". DN is none: the table is wrong, as with an empty code.
    table, run = platform.runs["dangling parent"]
    assert stored(platform, "CodeSystem", BASE + "CodeSystem/dangling-parent") == []
    assert run.returncode != 0 and "DN" in run.stderr, run.stdout + run.stderr


def test_a_csv_whose_hierarchy_has_a_cycle_loads_nothing(platform):
    table, run = platform.runs["cycle"]
    assert stored(platform, "CodeSystem", BASE + "CodeSystem/cycle") == []
    assert run.returncode != 0 and "own ancestor" in run.stderr, run.stdout + run.stderr


# ---------------------------------------------------------------------------------------------
# 2. A Bundle of a CodeSystem, a ValueSet and a ConceptMap
# ---------------------------------------------------------------------------------------------
def test_a_bundle_loads_its_three_resources(platform):
    path, run = platform.runs["bundle"]
    assert load_line(path, "created", "CodeSystem", f"{LAB}|3", len(LAB_ITEMS)).search(run.stdout), run.stdout
    assert load_line(path, "created", "ValueSet", f"{LAB_ALL}|3").search(run.stdout), run.stdout
    assert load_line(path, "created", "ConceptMap", f"{LAB_MAP}|3", len(LAB_TO_LOINC) + 1).search(run.stdout), run.stdout
    path, again = platform.runs["bundle again"]
    assert again.stdout.count(": unchanged ") == 3, again.stdout
    expected = lab_bundle()
    for entry, parse in zip(expected["entry"], [CodeSystem, ValueSet, ConceptMap]):
        resource = entry["resource"]
        r = requests.get(f"{platform.base}/{resource['resourceType']}/{resource['id']}")
        assert r.status_code == 200, r.text
        parse.parse_obj(r.json())
        got = {k: v for k, v in r.json().items() if k != "meta"}
        assert got == resource, resource["resourceType"]
        assert r.json()["meta"]["versionId"] == "1"
    # and usable: the nested concepts are a hierarchy, the value set expands, the map translates
    assert value(operation(platform, "CodeSystem/$subsumes", system=LAB, codeA="HEME", codeB="PLT"), "outcome") == "subsumes"
    assert properties(operation(platform, "CodeSystem/$lookup", system=LAB, code="GLU"))["parent"] == ["CHEM"]
    assert set(codes_of(expansion(platform, LAB_ALL))) == set(L)
    glu = operation(platform, "ConceptMap/$translate", url=LAB_MAP, system=LAB, code="GLU")
    assert value(glu, "result") is True


# ---------------------------------------------------------------------------------------------
# 3. $expand
# ---------------------------------------------------------------------------------------------
def test_expand_marks_inactive_concepts_and_active_only_leaves_them_out(platform):
    full = expansion(platform, LAB_ALL)
    assert full["total"] == len(LAB_ITEMS) and set(codes_of(full)) == set(L)
    assert {c["code"] for c in full["contains"] if c.get("inactive")} == L_INACTIVE == {"GLU-OLD", "K", "ESR"}
    active = expansion(platform, LAB_ALL, activeOnly="true")
    assert active["total"] == len(L) - len(L_INACTIVE)
    assert set(codes_of(active)) == set(L) - L_INACTIVE, "deprecated, experimental and inactive=false stay"
    # the CSV's status column (a string property) marks inactivity too
    url = put_value_set(platform, "disease-cvd", {"include": [{"system": DISEASE, "filter": [
        {"property": "concept", "op": "is-a", "value": "CVD"}]}]})
    assert set(codes_of(expansion(platform, url))) == d_below("CVD")
    assert set(codes_of(expansion(platform, url, activeOnly="true"))) == d_below("CVD") - D_INACTIVE


def test_compose_inactive_false_leaves_inactive_codes_out(platform):
    # R4 ValueSet.compose.inactive: "if inactive = false, the inactive codes will not be included in the expansion".
    url = put_value_set(platform, "lab-active", {"inactive": False, "include": [{"system": LAB}]})
    assert set(codes_of(expansion(platform, url))) == set(L) - L_INACTIVE
    k = operation(platform, "ValueSet/$validate-code", url=url, system=LAB, code="K")
    assert value(k, "result") is False


def test_regex_filter_on_code(platform):
    pattern = r"U[A-Z]+|GLU.*"
    url = put_value_set(platform, "lab-regex", {"include": [{"system": LAB, "filter": [{"property": "code", "op": "regex", "value": pattern}]}]})
    expected = {c for c in L if re.fullmatch(pattern, c)}
    assert expected == {"UA", "UPRO", "UGLU", "GLU", "GLU-OLD"}
    exp = expansion(platform, url)
    assert exp["total"] == len(expected) and set(codes_of(exp)) == expected
    pattern = r"[A-Z]+\.[0-9]"
    url = put_value_set(platform, "disease-numbered", {"include": [{"system": DISEASE, "filter": [
        {"property": "code", "op": "regex", "value": pattern}]}]})
    assert set(codes_of(expansion(platform, url))) == {c for c in D if re.fullmatch(pattern, c)}


def test_regex_filter_on_a_property(platform):
    # R4 filter-operator regex: "The specified property of the code matches the regex specified in the provided value."
    url = put_value_set(platform, "lab-regex-specimen", {"include": [{"system": LAB, "filter": [
        {"property": "specimen", "op": "regex", "value": "ser.*|ur.*"}]}]})
    expected = {c for c, _, _, _, props in LAB_ITEMS if re.fullmatch("ser.*|ur.*", props.get("specimen", ""))}
    assert set(codes_of(expansion(platform, url))) == expected


def test_equals_filter_on_a_property(platform):
    url = put_value_set(platform, "lab-serum", {"include": [{"system": LAB, "filter": [{"property": "specimen", "op": "=", "value": "serum"}]}]})
    serum = {c for c, _, _, _, props in LAB_ITEMS if props.get("specimen") == "serum"}
    assert serum == {"GLU", "GLU-OLD", "ALT", "K", "NA"}
    exp = expansion(platform, url)
    assert exp["total"] == len(serum) and set(codes_of(exp)) == serum
    assert set(codes_of(expansion(platform, url, activeOnly="true"))) == serum - L_INACTIVE
    # filters of one include are all applied; a property of the CSV (a string) filters as well
    url = put_value_set(platform, "lab-retired-chemistry", {"include": [{"system": LAB, "filter": [
        {"property": "concept", "op": "is-a", "value": "CHEM"}, {"property": "status", "op": "=", "value": "retired"}]}]})
    assert set(codes_of(expansion(platform, url))) == {c for c in l_below("CHEM") if L[c][4].get("status") == "retired"} == {"GLU-OLD"}
    url = put_value_set(platform, "disease-groups", {"include": [{"system": DISEASE, "filter": [
        {"property": "category", "op": "=", "value": "group"}]}]})
    assert set(codes_of(expansion(platform, url))) == {c for c, *rest in DISEASES if rest[3] == "group"} == {"HTN", "IHD", "DM"}


def test_display_language_gives_the_designation(platform):
    english = expansion(platform, LAB_ALL, displayLanguage="en")
    assert {c["code"]: c["display"] for c in english["contains"]} == {c: L[c][3] for c in L}
    chinese = expansion(platform, LAB_ALL, displayLanguage="zh-CN")
    assert {c["code"]: c["display"] for c in chinese["contains"]} == {c: L[c][2] for c in L}
    url = put_value_set(platform, "disease-all", {"include": [{"system": DISEASE}]})
    english = expansion(platform, url, displayLanguage="en")
    assert {c["code"]: c["display"] for c in english["contains"]} == {c: D[c][3] or D[c][1] for c in D}, "no en: the display"
    # the text filter and the language together: 心 in the Chinese names, shown in English
    found = expansion(platform, url, filter="心", displayLanguage="en")
    assert {c["code"]: c["display"] for c in found.get("contains", [])} == {c: D[c][3] for c in D if "心" in D[c][1]}


def test_expand_pages_through_the_active_codes(platform):
    everything = codes_of(expansion(platform, LAB_ALL, activeOnly="true"))
    pages = []
    for offset in range(0, len(everything), 4):
        page = expansion(platform, LAB_ALL, activeOnly="true", offset=offset, count=4)
        assert page["total"] == len(L) - len(L_INACTIVE) and page["offset"] == offset
        pages += codes_of(page)
    assert pages == everything and set(pages) == set(L) - L_INACTIVE


# ---------------------------------------------------------------------------------------------
# 4. ValueSet/$validate-code
# ---------------------------------------------------------------------------------------------
def test_validate_code_checks_the_display(platform):
    def check(**params):
        return operation(platform, "ValueSet/$validate-code", url=LAB_ALL, system=LAB, **params)

    right = check(code="GLU", display="葡萄糖")
    assert value(right, "result") is True
    assert value(check(code="GLU", display="Glucose"), "result") is True, "a designation is a valid display"
    # R4: result is "True if the concept details supplied are valid"; a wrong display is not valid.
    wrong = check(code="GLU", display="钾")
    assert value(wrong, "result") is False
    assert "钾" in value(wrong, "message")
    assert value(wrong, "display") == "葡萄糖", "the display to use instead"
    assert value(check(code="GLU"), "result") is True
    assert value(check(code="LDL"), "result") is False
    serum = put_value_set(platform, "lab-serum-only", {"include": [{"system": LAB, "filter": [
        {"property": "specimen", "op": "=", "value": "serum"}]}]})
    outside = operation(platform, "ValueSet/$validate-code", url=serum, system=LAB, code="HGB", display="血红蛋白")
    assert value(outside, "result") is False, "a right display does not put a code in the value set"
    coding = requests.post(f"{platform.base}/ValueSet/$validate-code", headers=FHIR_JSON, json={
        "resourceType": "Parameters", "parameter": [{"name": "url", "valueUri": serum},
                                                    {"name": "coding", "valueCoding": {"system": LAB, "code": "ALT", "display": "Alanine aminotransferase"}}]})
    assert coding.status_code == 200, coding.text
    Parameters.parse_obj(coding.json())
    assert value(coding.json(), "result") is True


# ---------------------------------------------------------------------------------------------
# 5. ConceptMap/$translate with group.unmapped
# ---------------------------------------------------------------------------------------------
def matches(answer):
    return [part_values(p) for p in parts(answer, "match")]


def asserting(match):
    """R4 $translate: result is true only if a match has an equivalence other than unmatched / disjoint."""
    return match["equivalence"] not in ("unmatched", "disjoint") and "code" in match["concept"]


def test_translate_mapped_and_unmatched_codes(platform):
    for code, (target, display, equivalence) in LAB_TO_LOINC.items():
        answer = operation(platform, "ConceptMap/$translate", url=LAB_MAP, system=LAB, code=code)
        assert value(answer, "result") is True
        assert matches(answer) == [{"equivalence": equivalence, "concept": {"system": LOINC, "code": target, "display": display},
                                    "source": LAB_MAP}], code
    # UPRO is mapped as unmatched: no translation, and the unmapped rule does not apply to it
    upro = operation(platform, "ConceptMap/$translate", url=LAB_MAP, system=LAB, code="UPRO")
    assert value(upro, "result") is False and parts(upro, "message")
    assert not any(asserting(m) for m in matches(upro))
    assert all(m["concept"].get("code") != UNKNOWN[0] for m in matches(upro))
    back = operation(platform, "ConceptMap/$translate", url=LAB_MAP, system=LOINC, code="718-7", reverse="true")
    assert value(back, "result") is True
    assert [m["concept"] for m in matches(back)] == [{"system": LAB, "code": "HGB", "display": "血红蛋白"}]
    elsewhere = operation(platform, "ConceptMap/$translate", url=LAB_MAP, system=LAB, code="GLU", targetsystem="http://snomed.info/sct")
    assert value(elsewhere, "result") is False and not any(asserting(m) for m in matches(elsewhere))


def test_translate_unmapped_fixed(platform):
    # group.unmapped mode fixed: a code the group does not map gets the fixed code.
    for code in sorted(set(L) - set(LAB_TO_LOINC) - {"UPRO"}):
        answer = operation(platform, "ConceptMap/$translate", url=LAB_MAP, system=LAB, code=code)
        assert value(answer, "result") is True, code
        [m] = matches(answer)
        assert m["concept"] == {"system": LOINC, "code": UNKNOWN[0], "display": UNKNOWN[1]} and asserting(m), code


REGIONAL = BASE + "CodeSystem/regional-lab"


@pytest.fixture(scope="module")
def more_maps(platform):
    provided = {"resourceType": "ConceptMap", "id": "lab-to-regional", "url": BASE + "ConceptMap/lab-to-regional", "status": "active",
                "group": [{"source": LAB, "target": REGIONAL,
                           "element": [{"code": "GLU", "target": [{"code": "R-GLU", "equivalence": "equivalent"}]}],
                           "unmapped": {"mode": "provided"}}]}
    other = {"resourceType": "ConceptMap", "id": "lab-to-loinc-hematology", "url": BASE + "ConceptMap/lab-to-loinc-hematology",
             "status": "active",
             "group": [{"source": LAB, "target": LOINC,
                        "element": [{"code": "PLT", "target": [{"code": "777-3", "equivalence": "equivalent"}]}],
                        "unmapped": {"mode": "other-map", "url": LAB_MAP}}]}
    for cm in (provided, other):
        ConceptMap.parse_obj(cm)
        put(platform, "ConceptMap", cm)
    return {"provided": provided["url"], "other-map": other["url"]}


def test_translate_a_code_the_map_has(platform, more_maps):
    answer = operation(platform, "ConceptMap/$translate", url=more_maps["provided"], system=LAB, code="GLU")
    assert [m["concept"] for m in matches(answer)] == [{"system": REGIONAL, "code": "R-GLU"}]
    answer = operation(platform, "ConceptMap/$translate", url=more_maps["other-map"], system=LAB, code="PLT")
    assert [m["concept"] for m in matches(answer)] == [{"system": LOINC, "code": "777-3"}]


def test_translate_unmapped_provided(platform, more_maps):
    # R4 ConceptMap.group.unmapped.mode provided: "Use the code as provided in the $translate request".
    answer = operation(platform, "ConceptMap/$translate", url=more_maps["provided"], system=LAB, code="NA")
    assert value(answer, "result") is True
    [m] = matches(answer)
    assert m["concept"]["system"] == REGIONAL and m["concept"]["code"] == "NA" and asserting(m)


def test_translate_unmapped_other_map(platform, more_maps):
    # R4 ConceptMap.group.unmapped.mode other-map: "Use the map identified by the canonical URL in the url element".
    answer = operation(platform, "ConceptMap/$translate", url=more_maps["other-map"], system=LAB, code="GLU")
    assert value(answer, "result") is True
    assert [m["concept"]["code"] for m in matches(answer) if asserting(m)] == [LAB_TO_LOINC["GLU"][0]]


def test_other_maps_that_name_each_other_end(platform):
    """Two maps whose unmapped codes go to each other: a code neither has is not found (no endless
    hops), and a code one has is answered once, with or without naming the map."""
    source = BASE + "CodeSystem/ring-source"
    target = BASE + "CodeSystem/ring-target"
    ring = {}
    for name, other, mapped in (("ring-a", "ring-b", "A1"), ("ring-b", "ring-a", "B1")):
        cm = {"resourceType": "ConceptMap", "id": name, "url": BASE + "ConceptMap/" + name, "status": "active",
              "group": [{"source": source, "target": target,
                         "element": [{"code": mapped, "target": [{"code": "T-" + mapped, "equivalence": "equivalent"}]}],
                         "unmapped": {"mode": "other-map", "url": BASE + "ConceptMap/" + other}}]}
        ConceptMap.parse_obj(cm)
        put(platform, "ConceptMap", cm)
        ring[name] = cm["url"]
    answer = operation(platform, "ConceptMap/$translate", url=ring["ring-a"], system=source, code="NONE")
    assert value(answer, "result") is False and matches(answer) == []
    answer = operation(platform, "ConceptMap/$translate", url=ring["ring-a"], system=source, code="B1")
    assert value(answer, "result") is True
    assert [(m["concept"]["code"], m["source"]) for m in matches(answer)] == [("T-B1", ring["ring-b"])]
    # Without a map named, both maps apply: ring-b answers B1 itself and through ring-a, once.
    answer = operation(platform, "ConceptMap/$translate", system=source, code="B1")
    assert [(m["concept"]["code"], m["source"]) for m in matches(answer)] == [("T-B1", ring["ring-b"])]


# ---------------------------------------------------------------------------------------------
# 6. Terminology search modifiers on other token parameters
# ---------------------------------------------------------------------------------------------
ENCOUNTER_REASONS = {"e-htn1": "HTN.1", "e-htn": "HTN", "e-ihd2": "IHD.2", "e-dm2": "DM.2", "e-cvd": "CVD", "e-htn9": "HTN.9"}
OBSERVED_PROBLEMS = {"o-ihd1": "IHD.1", "o-ihd2": "IHD.2", "o-ihd": "IHD", "o-dm1": "DM.1", "o-htn2": "HTN.2"}
ORDERED_ITEMS = {"s-glu": "GLU", "s-k": "K", "s-hgb": "HGB", "s-upro": "UPRO", "s-chem": "CHEM"}
LOCAL_KIND = BASE + "CodeSystem/condition-kind"
CONDITION_CATEGORIES = {
    "c-ed": [(CONDITION_CATEGORY, "encounter-diagnosis")],
    "c-pl": [(CONDITION_CATEGORY, "problem-list-item")],
    "c-chronic": [(LOCAL_KIND, "chronic")],
    "c-ed-chronic": [(CONDITION_CATEGORY, "encounter-diagnosis"), (LOCAL_KIND, "chronic")],
    "c-acute": [(LOCAL_KIND, "acute")],
}


@pytest.fixture(scope="module")
def records(platform):
    patient = {"reference": "Patient/tx-p"}
    entries = [{"resource": {"resourceType": "Patient", "id": "tx-p", "name": [{"family": "张", "given": ["伟"]}]}}]
    ambulatory = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    for eid, code in ENCOUNTER_REASONS.items():
        entries.append({"resource": {"resourceType": "Encounter", "id": eid, "status": "finished", "class": ambulatory, "subject": patient,
                                     "reasonCode": [{"coding": [{"system": DISEASE, "code": code, "display": D[code][1]}]}]}})
    # the same code in another system is not under the local classification's HTN
    entries.append({"resource": {"resourceType": "Encounter", "id": "e-foreign", "status": "finished", "class": ambulatory, "subject": patient,
                                 "reasonCode": [{"coding": [{"system": "http://example.org/other-codes", "code": "HTN.1"}]}]}})
    entries.append({"resource": {"resourceType": "Encounter", "id": "e-none", "status": "finished", "class": ambulatory, "subject": patient}})
    for oid, code in OBSERVED_PROBLEMS.items():
        entries.append({"resource": {"resourceType": "Observation", "id": oid, "status": "final", "subject": patient,
                                     "code": {"coding": [{"system": LOINC, "code": "11450-4", "display": "Problem list - Reported"}]},
                                     "valueCodeableConcept": {"coding": [{"system": DISEASE, "code": code}]}}})
    for sid, code in ORDERED_ITEMS.items():
        entries.append({"resource": {"resourceType": "ServiceRequest", "id": sid, "status": "active", "intent": "order", "subject": patient,
                                     "code": {"coding": [{"system": LAB, "code": code, "display": L[code][2]}]}}})
    for cid, categories in CONDITION_CATEGORIES.items():
        entries.append({"resource": {"resourceType": "Condition", "id": cid, "subject": patient,
                                     "category": [{"coding": [{"system": s, "code": c}]} for s, c in categories],
                                     "code": {"coding": [{"system": DISEASE, "code": "DM.2"}]}}})
    for e in entries:
        e["request"] = {"method": "PUT", "url": f"{e['resource']['resourceType']}/{e['resource']['id']}"}
    r = requests.post(platform.base, json={"resourceType": "Bundle", "type": "transaction", "entry": entries}, headers=FHIR_JSON)
    assert r.status_code == 200, r.text[:3000]
    Bundle.parse_obj(r.json())
    return True


def test_encounter_reason_code_below_and_above(platform, records):
    def having(codes):
        return {eid for eid, code in ENCOUNTER_REASONS.items() if code in codes}

    for root in ["CVD", "HTN", "IHD", "END", "HTN.1"]:
        assert search_ids(platform, "Encounter", **{"reason-code:below": f"{DISEASE}|{root}"}) == having(d_below(root)), root
    for leaf in ["HTN.1", "IHD.2", "HTN"]:
        above = {leaf, *d_ancestors(leaf)}
        assert search_ids(platform, "Encounter", **{"reason-code:above": f"{DISEASE}|{leaf}"}) == having(above), leaf
    assert search_ids(platform, "Encounter", **{"reason-code": f"{DISEASE}|HTN"}) == {"e-htn"}, "no subsumption without a modifier"


def test_encounter_reason_code_in_an_active_value_set(platform, records):
    url = put_value_set(platform, "hypertension-active", {"include": [{"system": DISEASE, "filter": [
        {"property": "concept", "op": "is-a", "value": "HTN"}, {"property": "status", "op": "=", "value": "active"}]}]})
    members = {c for c in d_below("HTN") if D[c][5] == "active"}
    assert members == {"HTN", "HTN.1", "HTN.2"}
    assert search_ids(platform, "Encounter", **{"reason-code:in": url}) == {e for e, c in ENCOUNTER_REASONS.items() if c in members}


def test_observation_value_concept_below_and_above(platform, records):
    def having(codes):
        return {oid for oid, code in OBSERVED_PROBLEMS.items() if code in codes}

    for root in ["IHD", "CVD", "END", "HTN"]:
        assert search_ids(platform, "Observation", **{"value-concept:below": f"{DISEASE}|{root}"}) == having(d_below(root)), root
    assert search_ids(platform, "Observation", **{"value-concept:above": f"{DISEASE}|IHD.2"}) == having({"IHD.2", "IHD", "CVD"})


def test_service_request_code_below_a_nested_panel(platform, records):
    for panel in ["CHEM", "HEME", "UA"]:
        expected = {sid for sid, code in ORDERED_ITEMS.items() if code in l_below(panel)}
        assert search_ids(platform, "ServiceRequest", **{"code:below": f"{LAB}|{panel}"}) == expected, panel
    assert search_ids(platform, "ServiceRequest", **{"code:in": LAB_ALL}) == set(ORDERED_ITEMS)
    assert search_ids(platform, "ServiceRequest", **{"code:below": f"{LAB}|GLU"}) == {"s-glu"}


def test_condition_category_in_and_not_in(platform, records):
    # codes of systems the platform does not store stand as the value set enumerates them
    url = put_value_set(platform, "lasting-or-diagnosed", {"include": [
        {"system": CONDITION_CATEGORY, "concept": [{"code": "encounter-diagnosis"}]},
        {"system": LOCAL_KIND, "concept": [{"code": "chronic"}]}]})
    members = {(CONDITION_CATEGORY, "encounter-diagnosis"), (LOCAL_KIND, "chronic")}
    inside = {cid for cid, cats in CONDITION_CATEGORIES.items() if any(c in members for c in cats)}
    assert inside == {"c-ed", "c-chronic", "c-ed-chronic"}
    assert search_ids(platform, "Condition", **{"category:in": url}) == inside
    assert search_ids(platform, "Condition", **{"category:not-in": url}) == set(CONDITION_CATEGORIES) - inside
