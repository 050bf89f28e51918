"""The official HL7 FHIR test material in ../shared/conformance/ (a copy of part of FHIR/fhir-test-cases,
written by HL7, not by this project) run against a real `huitong serve`, on the embedded store and,
when HUITONG_TEST_POSTGRES_URL is set, on PostgreSQL:

1. r4/examples/: every official R4 example is stored and read back, and must come back as sent
   (apart from the meta the server sets); the three that cannot be stored are listed with a reason
   and must be refused with an OperationOutcome.
2. r4/patch/json-patch-tests.json: the JSON Patch cases that can be placed inside a FHIR resource
   are applied with PATCH and compared with the expected document or error.
3. validator/cases.json: each case's resource is POSTed; one the Java reference validator finds no
   error in must be accepted, one with a structural or narrative error must be refused, and the
   rest (terminology, profiles, signatures, invariants, bundle rules) is recorded, not asserted.
   The same cases go to `$validate` (no mode: the content only), which must judge them alike;
   Parameters, which R4 gives no REST endpoint, are judged by `$validate` alone.

`pytest tests/conformance/test_official_material.py -k classification -s` prints how every Java error
message of the validator cases is classified, so a reviewer can check the keyword lists below.
"""
import copy
import decimal
import json
import os
import re
import shutil
import tempfile

import pytest
import requests

from conftest import POSTGRES_URL, Server, fresh_postgres_database

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MATERIAL = os.path.normpath(os.path.join(ROOT, "..", "shared", "conformance"))
EXAMPLES = os.path.join(MATERIAL, "r4", "examples")
PATCH_TESTS = os.path.join(MATERIAL, "r4", "patch", "json-patch-tests.json")
VALIDATOR = os.path.join(MATERIAL, "validator")

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"}

if not os.path.isdir(MATERIAL):
    pytest.skip(f"the official test material is not at {MATERIAL}", allow_module_level=True)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fhir(request):
    """One development server per backend for the whole module (requests act as the dev administrator)."""
    if request.param == "postgres" and not POSTGRES_URL:
        pytest.skip("HUITONG_TEST_POSTGRES_URL is not set")
    data = tempfile.mkdtemp(prefix="huitong-py-")
    database = fresh_postgres_database("huitong_official") if request.param == "postgres" else None
    server = Server(data, database).start()
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


def outcome_diagnostics(response):
    """The first issue's diagnostics of an OperationOutcome response, or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" and body.get("issue"):
        issue = body["issue"][0]
        return issue.get("diagnostics") or issue.get("details", {}).get("text") or issue.get("code", "")
    return json.dumps(body)[:200]


def assert_refused(response, what):
    """A 4xx answer whose body is an OperationOutcome."""
    assert 400 <= response.status_code < 500, \
        f"{what}: expected a 4xx refusal, got {response.status_code} {outcome_diagnostics(response)}"
    body = response.json()
    assert body.get("resourceType") == "OperationOutcome", f"{what}: the refusal is not an OperationOutcome: {body}"


def first_difference(sent, got, path=""):
    """The first JSON path at which two parsed documents differ, with both values; None when equal."""
    if isinstance(sent, dict) and isinstance(got, dict):
        for key in list(sent) + [k for k in got if k not in sent]:
            if key not in got:
                return f"{path}/{key}: dropped by the server (sent {json.dumps(sent[key], default=str)[:120]})"
            if key not in sent:
                return f"{path}/{key}: added by the server ({json.dumps(got[key], default=str)[:120]})"
            found = first_difference(sent[key], got[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(sent, list) and isinstance(got, list):
        for i, (a, b) in enumerate(zip(sent, got)):
            found = first_difference(a, b, f"{path}/{i}")
            if found:
                return found
        if len(sent) != len(got):
            return f"{path}: {len(sent)} items sent, {len(got)} returned"
        return None
    # Numbers are parsed as Decimal, so 1.0 == 1 here: number formatting is checked separately.
    if sent == got and (type(sent) is bool) == (type(got) is bool):
        return None
    return f"{path or '/'}: sent {json.dumps(sent, default=str)[:120]}, got {json.dumps(got, default=str)[:120]}"


# ---------------------------------------------------------------------------------------------
# 1. r4/examples/: store every official example and read it back.
# ---------------------------------------------------------------------------------------------

# The examples the server must refuse (4xx OperationOutcome, nothing stored), each with its reason.
EXAMPLE_EXCEPTIONS = {
    "auditevent-example.json":
        "server-only: AuditEvents are written by the server's own hash-chained audit trail (ADR 010), "
        "so clients may not create them",
    "parameters-example.json":
        "no REST endpoint: R4 says of Parameters 'there is no RESTful endpoint associated with this resource'; "
        "it is the input and output of operations (issue 26 asks that /fhir/Parameters refuse it)",
    "bundle-questionnaire.json":
        "invalid: despite its name this is a Questionnaire, and 49 of its nested items lack the required "
        "Questionnaire.item.linkId (1..1); the independent R4 model (fhir.resources) refuses it too",
}

EXAMPLE_FILES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".json"))

# Meta elements the server sets on every write; they are not compared.
SERVER_META = ("versionId", "lastUpdated", "source")


class NumberText(str):
    """A JSON number kept as its text, to see whether the server rewrote it."""


def number_texts(raw):
    """{path: text} of every number in a JSON document, as written."""
    found = {}

    def walk(value, path):
        if isinstance(value, NumberText):
            found[path] = str(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{path}/{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{path}/{i}")

    walk(json.loads(raw, parse_float=NumberText, parse_int=NumberText), "")
    return found


def without_server_meta(resource):
    resource = copy.deepcopy(resource)
    meta = resource.get("meta")
    if isinstance(meta, dict):
        for key in SERVER_META:
            meta.pop(key, None)
        if not meta:
            del resource["meta"]
    return resource


def store_example(base, raw, resource):
    """PUT the example at its id (POST when it has none); returns the response and the id it lives at."""
    kind, rid = resource["resourceType"], resource.get("id")
    if rid:
        return requests.put(f"{base}/{kind}/{rid}", data=raw, headers=FHIR_JSON), rid
    response = requests.post(f"{base}/{kind}", data=raw, headers=FHIR_JSON)
    return response, (response.json().get("id") if response.status_code == 201 else None)


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_round_trip(fhir, name):
    raw = open(os.path.join(EXAMPLES, name), "rb").read()
    resource = json.loads(raw, parse_float=decimal.Decimal)
    kind = resource["resourceType"]
    stored, rid = store_example(fhir.base, raw, resource)

    if name in EXAMPLE_EXCEPTIONS:
        assert_refused(stored, f"{name} ({EXAMPLE_EXCEPTIONS[name]})")
        if rid:
            assert requests.get(f"{fhir.base}/{kind}/{rid}", headers=FHIR_JSON).status_code in (403, 404, 410)
        return

    assert stored.status_code in (200, 201), \
        f"{name}: official example refused with {stored.status_code}: {outcome_diagnostics(stored)}"
    read = requests.get(f"{fhir.base}/{kind}/{rid}", headers=FHIR_JSON)
    assert read.status_code == 200, f"{name}: read back gave {read.status_code}: {outcome_diagnostics(read)}"

    sent = without_server_meta(resource)
    sent.setdefault("id", rid)
    got = without_server_meta(json.loads(read.content, parse_float=decimal.Decimal))
    difference = first_difference(sent, got)
    assert difference is None, f"{name}: read back differs at {difference}"

    # Same values; now the text of every number: R4 says a decimal's precision is significant
    # (0.010 is not 0.01), so 1.0 must not come back as 1.
    sent_numbers, got_numbers = number_texts(raw), number_texts(read.content)
    rewritten = {p: (t, got_numbers.get(p)) for p, t in sent_numbers.items()
                 if not p.startswith("/meta/") and got_numbers.get(p) != t}
    assert not rewritten, f"{name}: number formatting changed (path: sent, got): {rewritten}"


def test_invalid_example_is_invalid_for_the_independent_model():
    """The reason given for refusing bundle-questionnaire.json holds outside this server too."""
    from fhir.resources import construct_fhir_element
    from pydantic import ValidationError
    resource = json.load(open(os.path.join(EXAMPLES, "bundle-questionnaire.json")))
    with pytest.raises(ValidationError, match="linkId"):
        construct_fhir_element(resource["resourceType"], resource)


# ---------------------------------------------------------------------------------------------
# 2. r4/patch/json-patch-tests.json: JSON Patch cases placed inside a FHIR resource.
# ---------------------------------------------------------------------------------------------
#
# The cases patch free-form documents ({"foo": "bar"}); a FHIR server only holds resources, whose
# member names are fixed. A case is placed in a host resource by renaming member names only: the
# document's structure, member order, array positions, values and the patch operations are kept
# exactly; within a case the same name always becomes the same element name (two names may become
# the same element name only where they never share an object, as "bar" and "b" in 4.1). A case is
# skipped, with its reason, when its document or expected result cannot be FHIR JSON at all.

LOCATION = {"resourceType": "Location"}  # no required elements: the document can be its top level
OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "JSON Patch test"}}

# comment of the case -> (host resource, where the document goes: "" = the host's top level,
# "/element" = the value of that element, renaming of member names)
PATCH_MAPPINGS = {
    "4.1. add with missing object": (OBSERVATION, "/valueRange", {"q": "low", "bar": "value", "a": "high", "b": "value"}),
    "A.1.  Adding an Object Member": (LOCATION, "", {"foo": "name", "baz": "description"}),
    "A.2.  Adding an Array Element": (LOCATION, "", {"foo": "alias"}),
    "A.3.  Removing an Object Member": (LOCATION, "", {"foo": "name", "baz": "description"}),
    "A.4.  Removing an Array Element": (LOCATION, "", {"foo": "alias"}),
    "A.5.  Replacing a Value": (LOCATION, "", {"foo": "name", "baz": "description"}),
    "A.6.  Moving a Value": (LOCATION, "", {"foo": "address", "bar": "city", "waldo": "district",
                                           "qux": "operationalStatus", "corge": "display", "thud": "code"}),
    "A.7.  Moving an Array Element": (LOCATION, "", {"foo": "alias"}),
    "A.9.  Testing a Value: Error": (LOCATION, "", {"baz": "description"}),
    "A.11.  Ignoring Unrecognized Elements": (LOCATION, "", {"foo": "name", "baz": "description"}),
    "A.12.  Adding to a Non-existent Target": (LOCATION, "", {"foo": "name", "baz": "address", "bat": "city"}),
    # The member names of A.14/A.15 are "/" and "~1"; A.15 is about comparing a string with a number,
    # which survives renaming ("/~01" still names the second member).
    "A.15. Comparing Strings and Numbers": (LOCATION, "/position", {"/": "longitude", "~1": "latitude"}),
}

PATCH_SKIPS = {
    "A.8.  Testing a Value: Success":
        'the document\'s array ["a", 2, "c"] mixes strings and a number; every FHIR array holds one type',
    "A.10.  Adding a nested Member Object":
        'the expected result holds an empty object ("grandchild": {}), which FHIR JSON does not allow',
    "A.14. ~ Escape Ordering":
        "it tests ~0/~1 escaping in member names; FHIR element names never contain '~' or '/'",
    "A.16. Adding an Array Value":
        "the expected result nests an array inside an array, which FHIR JSON cannot hold",
}


def renamed(value, names):
    """The document with member names renamed (values, order and arrays unchanged)."""
    if isinstance(value, dict):
        return {names.get(k, k): renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [renamed(v, names) for v in value]
    return value


def renamed_pointer(pointer, names, at):
    """A JSON Pointer into the document, renamed and moved to where the document sits in the host."""
    tokens = [t.replace("~1", "/").replace("~0", "~") for t in pointer.split("/")[1:]]
    return at + "".join("/" + names.get(t, t).replace("~", "~0").replace("/", "~1") for t in tokens)


def renamed_operation(op, names, at):
    op = dict(op)  # members other than op/path/from/value (A.11's "xyz") are kept as they are
    for key in ("path", "from"):
        if key in op:
            op[key] = renamed_pointer(op[key], names, at)
    if "value" in op:
        op["value"] = renamed(op["value"], names)
    return op


def placed(host, at, document):
    resource = copy.deepcopy(host)
    if at:
        resource[at.lstrip("/")] = document
    else:
        assert not set(resource) & set(document)
        resource.update(document)
    return resource


def patch_id(case):
    return re.sub(r"[^A-Za-z0-9.]+", "-", case["comment"]).strip("-")


PATCH_CASES = json.load(open(PATCH_TESTS))
assert {c["comment"] for c in PATCH_CASES} == set(PATCH_MAPPINGS) | set(PATCH_SKIPS), "a patch case is neither mapped nor skipped"


@pytest.mark.parametrize("case", [
    pytest.param(c, id=patch_id(c), marks=[pytest.mark.skip(reason=PATCH_SKIPS[c["comment"]])] if c["comment"] in PATCH_SKIPS else [])
    for c in PATCH_CASES])
def test_json_patch(fhir, case):
    host, at, names = PATCH_MAPPINGS[case["comment"]]
    kind = host["resourceType"]
    created = requests.post(f"{fhir.base}/{kind}", json=placed(host, at, renamed(case["doc"], names)), headers=FHIR_JSON)
    assert created.status_code == 201, f"the document as a {kind} was refused: {outcome_diagnostics(created)}"
    rid = created.json()["id"]
    before = requests.get(f"{fhir.base}/{kind}/{rid}", headers=FHIR_JSON).json()

    operations = [renamed_operation(op, names, at) for op in case["patch"]]
    patched = requests.patch(f"{fhir.base}/{kind}/{rid}", data=json.dumps(operations), headers=JSON_PATCH)
    after = requests.get(f"{fhir.base}/{kind}/{rid}", headers=FHIR_JSON).json()

    if "error" in case:
        print(f"expected error '{case['error']}'; server answered {patched.status_code} {outcome_diagnostics(patched)}")
        assert_refused(patched, f"patch {operations} ({case['error']})")
        assert after == before, "a refused patch changed the resource"
        return
    assert patched.status_code == 200, f"patch {operations} gave {patched.status_code}: {outcome_diagnostics(patched)}"
    expected = placed(host, at, renamed(case["expected"], names))
    expected["id"] = rid
    difference = first_difference(expected, without_server_meta(after))
    assert difference is None, f"patch {operations}: stored result differs at {difference}"
    assert after["meta"]["versionId"] != before["meta"]["versionId"]


# ---------------------------------------------------------------------------------------------
# 3. validator/cases.json: what the Java reference validator finds, against what the server takes.
# ---------------------------------------------------------------------------------------------

# A Java error message is put in the first category, in this order, that one of its keywords
# (case-insensitive) occurs in; a message matching none is "rule" (invariants stated in prose,
# bundle and reference rules, search parameter consistency, attachment sizes, ...).
ERROR_KEYWORDS = [
    # The JSON is not the shape R4 defines: syntax, unknown or mistyped properties, cardinality of the
    # base definition (see BASE_CARDINALITY), primitive formats, ids, extensions where none may be.
    ("structural", ["error parsing json", "unrecognized property", "must be a json array", "must be an object",
                    "the json array for", "array cannot be empty", "the property 'value' is invalid",
                    "not a valid base64 value", "illegal base64 character", "not a valid date format",
                    "must have a timezone", "invalid resource id", "longer than permitted maximum length",
                    "extensions are not allowed on resource.id", "extension.url is required"]),
    # The narrative's XHTML breaks the rules of R4 narrative (elements, entities).
    ("narrative", ["xhtml", "txt-1"]),
    # Checks the Java validator only made because the case switched an option on.
    ("policy", ["example urls", "experimental content", "hl7 is publishing", "security reasons",
                "markdown contains"]),
    ("signature", ["signature"]),
    # A code missing or not in the value set of a required binding of R4 (terminologies.html#required):
    # the server knows these value sets (FHIRModel's R4 binding table), so it must refuse the code.
    ("binding", ["a code is required from"]),
    # Terminology: codes, displays, value sets and code systems (and errors inside those resources).
    ("terminology", ["value set", "valueset", "codesystem", "code system", "unknown code", "display name",
                     "coding.system", "filter", "no code provided", "invalid ecl"]),
    # Profiles, StructureDefinition resources, and extensions whose definitions could not be looked up.
    ("profile", ["@ structuredefinition", "profile", "snapshot", "slice", "magic loinc", "minimum required",
                 "could not be found so is not allowed", "is not allowed to be used at this point",
                 "definition allows for the types", "extension url must not contain a version"]),
    # A FHIRPath invariant of the base specification ("Constraint failed: per-1: ...").
    ("invariant", ["constraint failed"]),
]
# "X: minimum required = 1 ... (from http://hl7.org/fhir/StructureDefinition/Observation|4.0.1)" is
# structural when the definition is a base type (capitalised name); from a profile (".../bp") it is "profile"
# (checked before the keyword lists, so "minimum required" under "profile" only sees profiles).
BASE_CARDINALITY = re.compile(r"minimum required = \d+, but only found \d+ \(from http://hl7\.org/fhir/StructureDefinition/[A-Z]")

# A case must be refused when one of its errors is in one of these categories. The others may be
# accepted or refused: the result is recorded, not asserted. "invariant" and "rule" are left out on
# purpose (the server does not evaluate FHIRPath invariants or bundle rules on write); add them here
# to hold the server to those too.
MUST_REFUSE = {"structural", "narrative", "binding"}


def classify(message):
    if BASE_CARDINALITY.search(message):
        return "structural"
    lowered = message.lower()
    for category, keywords in ERROR_KEYWORDS:
        if any(k in lowered for k in keywords):
            return category
    return "rule"


def relaxed(options):
    """Options under which the Java validator skipped checks it makes by default."""
    reasons = []
    if options.get("validateContains") == "IGNORE":
        reasons.append("validateContains=IGNORE (contained resources not checked)")
    if "advisor" in options:
        reasons.append(f"advisor {options['advisor']} (filters messages)")
    return reasons


def expectation(case):
    """("accept" | "refuse" | "record", why)."""
    if case["javaErrorCount"] is None:
        return "record", "the Java outcome is missing from the manifest"
    if relaxed(case["options"]):
        return "record", "Java ran with " + "; ".join(relaxed(case["options"]))
    if case["javaErrorCount"] == 0:
        return "accept", "no Java errors"
    categories = sorted({classify(e) for e in case["javaErrors"]})
    if set(categories) & MUST_REFUSE:
        return "refuse", "Java errors: " + ", ".join(categories)
    return "record", "only " + ", ".join(categories) + " errors"


def case_id(case):
    options = "".join(f"+{k}={v}" for k, v in sorted(case["options"].items()))
    return case["file"] + options


VALIDATOR_CASES = json.load(open(os.path.join(VALIDATOR, "cases.json")))["cases"]


def classification_table():
    """Every validator case with its expectation and each Java error's category, for a reviewer."""
    lines = []
    for case in VALIDATOR_CASES:
        verdict, why = expectation(case)
        lines.append(f"{case_id(case)}: {verdict} ({why})")
        for message in case["javaErrors"]:
            lines.append(f"    [{classify(message)}] {message[:160]}")
    return "\n".join(lines)


def test_validator_error_classification():
    print("\n" + classification_table())
    # Anchors for the keyword lists: one known message per category.
    assert classify("Invalid element name in the XHTML ('script') @ Patient.text.div") == "narrative"
    assert classify("Extensions are not allowed on Resource.id ('http://x') @ Patient.id") == "structural"
    assert classify("Observation.code: minimum required = 1, but only found 0 (from http://hl7.org/fhir/StructureDefinition/Observation|4.0.1) @ Observation") == "structural"
    assert classify("Observation.subject: minimum required = 1, but only found 0 (from http://hl7.org/fhir/StructureDefinition/bp|4.0.1) @ Observation") == "profile"
    assert classify("Unknown code 'x' in the CodeSystem 'http://snomed.info/sct' @ Observation.code") == "terminology"
    assert classify("No code provided, and a code is required from the value set @ AllergyIntolerance.category[0]") == "binding"
    assert classify("The signature did not verify against the provided certificate @ Bundle") == "signature"
    assert classify("Constraint failed: per-1: 'If present, start SHALL have a lower value than end' @ Encounter.period") == "invariant"
    assert classify("The fullUrl must be an absolute URL (not 'Patient/1') @ Bundle.entry[0]") == "rule"


def resource_type_of(raw):
    """The resourceType of a file that may not parse as JSON."""
    found = re.search(rb'"resourceType"\s*:\s*"([A-Za-z]+)"', raw)
    return found.group(1).decode() if found else None


@pytest.mark.parametrize("case", [pytest.param(c, id=case_id(c)) for c in VALIDATOR_CASES])
def test_validator_case(fhir, case):
    raw = open(os.path.join(VALIDATOR, case["file"]), "rb").read()
    verdict, why = expectation(case)
    try:
        resource = json.loads(raw)
        parses = True
    except ValueError:
        resource, parses = None, False
    if parses and not (isinstance(resource, dict) and resource.get("resourceType")):
        pytest.skip("not a JSON resource")
    kind = resource["resourceType"] if parses else resource_type_of(raw)
    response = requests.post(f"{fhir.base}/{kind}", data=raw, headers=FHIR_JSON)
    if kind == "Parameters":
        assert response.status_code == 404, f"Parameters has no REST endpoint: {response.status_code}"
        pytest.skip("Parameters are judged by $validate (test_validator_case_by_validate)")
    answer = f"{response.status_code} {outcome_diagnostics(response)}" if response.status_code >= 400 else str(response.status_code)
    print(f"{case_id(case)}: {verdict} ({why}); server answered {answer}")

    if not parses:
        assert response.status_code == 400, \
            f"malformed JSON: expected 400, got {response.status_code} {outcome_diagnostics(response)}"
    elif verdict == "accept":
        assert 200 <= response.status_code < 300, \
            f"valid for the Java validator but refused with {response.status_code}: {outcome_diagnostics(response)}"
    elif verdict == "refuse":
        assert_refused(response, f"{why}; first Java error: {case['javaErrors'][0][:200]}")
    # "record": either answer is allowed; the line printed above is the record.


def validate_errors(response):
    """The error and fatal issues of a `$validate` answer (which must be a 200 OperationOutcome)."""
    assert response.status_code == 200, f"$validate answered {response.status_code} {outcome_diagnostics(response)}"
    body = response.json()
    assert body.get("resourceType") == "OperationOutcome", body
    return [i.get("diagnostics", "") for i in body.get("issue", []) if i.get("severity") in ("error", "fatal")]


@pytest.mark.parametrize("case", [pytest.param(c, id=case_id(c)) for c in VALIDATOR_CASES])
def test_validator_case_by_validate(fhir, case):
    """`$validate` judges the validator cases as a create does: nothing the Java validator finds valid
    has an error, and every structural or narrative error is found. Nothing is stored."""
    raw = open(os.path.join(VALIDATOR, case["file"]), "rb").read()
    verdict, why = expectation(case)
    try:
        resource = json.loads(raw)
    except ValueError:
        pytest.skip("malformed JSON: the request itself is refused (400), as for a create")
    if not (isinstance(resource, dict) and resource.get("resourceType")):
        pytest.skip("not a JSON resource")
    kind = resource["resourceType"]
    before = requests.get(f"{fhir.base}/{kind}?_summary=count", headers=FHIR_JSON).json().get("total") if kind != "Parameters" else None
    errors = validate_errors(requests.post(f"{fhir.base}/{kind}/$validate", data=raw, headers=FHIR_JSON))
    print(f"{case_id(case)}: {verdict} ({why}); $validate errors: {errors[:2]}")
    if verdict == "accept":
        assert errors == [], f"valid for the Java validator but $validate found: {errors[:3]}"
    elif verdict == "refuse":
        assert errors, f"{why}; $validate found nothing; first Java error: {case['javaErrors'][0][:200]}"
    if before is not None:
        after = requests.get(f"{fhir.base}/{kind}?_summary=count", headers=FHIR_JSON).json().get("total")
        assert after == before, "$validate stored nothing"


def test_validate_is_listed_in_the_capability_statement(fhir):
    statement = requests.get(f"{fhir.base}/metadata", headers=FHIR_JSON).json()
    resources = {r["type"]: r for r in statement["rest"][0]["resource"]}
    assert "Parameters" not in resources, "R4 gives Parameters no REST endpoint"
    for kind in ("Patient", "Observation", "Bundle"):
        names = [o["name"] for o in resources[kind].get("operation", [])]
        assert "validate" in names, kind
    assert [i["code"] for i in resources["AuditEvent"]["interaction"]] == ["read", "search-type"]
