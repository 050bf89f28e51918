"""Hostile and malformed input, sent with a valid token to a secured server (no --dev).

What a facility system, and the residents whose records it holds, rely on:
- a search value is only ever a value: no quoting, wildcard, control character or JSON fragment
  widens a search, and whatever the value, the answer is a searchset Bundle (200) or an
  OperationOutcome (400), never a 5xx or a dropped connection;
- a conditional delete or a path id built from such a value touches nothing it does not name;
- strings are stored exactly as sent and found again by exactly that string;
- an oversized or malformed body is refused with a 4xx OperationOutcome and leaves nothing behind,
  and a transaction whose third entry fails stores none of its entries;
- after all of it the process is still up, the seeded records are unchanged and the audit chain
  verifies.

One server serves the whole module (`--max-body-bytes 1 MiB`, so the oversize cases are quick);
the tests run in file order and the last one stops it to run `huitong audit verify`.
"""
import json
import subprocess
import uuid

import pytest
import requests

from conftest import BINARY, Server

LIMIT = 1024 * 1024
FACILITY = "org-neg"

HOSTILE = {
    "sql-or": "' OR '1'='1",
    "sql-drop": "1; DROP TABLE resource; --",
    "sql-paren": '") OR 1=1 --',
    "sql-like": "%' --",
    "sql-union": "' UNION SELECT * FROM audit_event --",
    "backslash": "\\",
    "like-all": "%",
    "like-one": "_",
    "glob": "[a-z]*",
    "star": "*",
    "json-op": '{"$gt":""}',
    "json-break": '"},{"a":"',
    "nul": "\x00",
    "nul-smuggle": "Zhang\x00' OR '1'='1",
    "control": "\x01\x1f\x7f",
    "crlf": "\r\nX-Injected: 1",
    "pct00": "%00",
    "unicode-rlo": "张三\u202e",
    "traversal": "../../etc/passwd",
    "xss": "<script>alert(1)</script>",
    "long-100k": "x" * 100_000,
}

# ---------------------------------------------------------------------------------------------
# The server, a token, and the seeded records

class Api:
    """A secured server with a client token, and the records seeded into it (by name)."""

    def __init__(self, server, token):
        self.server = server
        self.base = server.base
        self.root = server.base.rsplit("/fhir", 1)[0]
        self.http = requests.Session()
        self.http.headers["Authorization"] = "Bearer " + token
        self.ids = {}        # "P1" -> id
        self.seeded = {}     # "P1" -> "Patient/<id>"
        self.content = {}    # "Patient/<id>" -> resource as read back after seeding

    def url(self, path=""):
        return f"{self.base}/{path}" if path else self.base

    def create(self, resource):
        r = self.http.post(self.url(resource["resourceType"]), json=resource)
        assert r.status_code == 201, r.text
        return r.json()

    def search(self, type_, params, method="GET", headers=None):
        if method == "GET":
            return self.http.get(self.url(type_), params=params, headers=headers, timeout=60)
        return self.http.post(self.url(f"{type_}/_search"), data=params, headers=headers, timeout=60)

    def keys_of(self, type_, params=None):
        """Every "Type/id" a search matches (one page of up to 1000, asserted complete)."""
        r = self.search(type_, dict(params or {}, _count="1000"))
        assert r.status_code == 200, r.text
        bundle = r.json()
        assert not any(link["relation"] == "next" for link in bundle.get("link", [])), "more than one page"
        return matches(bundle)

    def healthy(self):
        return requests.get(self.root + "/health", timeout=10).status_code == 200


def matches(bundle, mode="match"):
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e.get("search", {}).get("mode") == mode}


SEED = {
    "PR1": {"resourceType": "Practitioner", "name": [{"family": "Doc", "given": ["Neg"]}]},
    "P1": {"resourceType": "Patient", "meta": {"profile": ["http://example.org/StructureDefinition/neg-patient"]},
           "identifier": [{"system": "urn:neg:mrn", "value": "MRN-1"}], "name": [{"family": "Zhang", "given": ["San"]}],
           "gender": "female", "birthDate": "1980-01-02", "generalPractitioner": [{"reference": "Practitioner/{PR1}"}]},
    "P2": {"resourceType": "Patient", "identifier": [{"system": "urn:neg:mrn", "value": "MRN-2"}],
           "name": [{"family": "Li", "given": ["Si"]}], "gender": "male", "birthDate": "1975-05-06"},
    "P3": {"resourceType": "Patient", "identifier": [{"system": "urn:neg:mrn", "value": "MRN-3"}],
           "name": [{"family": "Wang", "given": ["Wu"]}], "gender": "female", "birthDate": "1990-09-09"},
    "O1": {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/{P1}"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
           "effectiveDateTime": "2024-01-01",
           "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}},
    "O2": {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/{P2}"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Heart rate"},
           "effectiveDateTime": "2024-02-01",
           "valueQuantity": {"value": 88, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}},
    "O3": {"resourceType": "Observation", "status": "final", "subject": {"reference": "Patient/{P3}"},
           "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5", "display": "Body temperature"}]},
           "effectiveDateTime": "2024-03-01", "valueString": "fever"},
}


def fill(value, ids):
    """Replaces {P1}-style names with the seeded ids, in a string or a resource."""
    if isinstance(value, str):
        for name, id_ in ids.items():
            value = value.replace("{" + name + "}", id_)
        return value
    if isinstance(value, dict):
        return {k: fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    data = str(tmp_path_factory.mktemp("negative"))
    # The client is registered before the server starts: the embedded store belongs to one process.
    out = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "negative-inputs", "--facility", FACILITY,
                          "--scopes", "system/*.cruds"], check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    client_id, secret = fields["client_id"], fields["client_secret"].split()[0]
    server = Server(data)
    server.dev = False
    server.start_args = ["--max-body-bytes", str(LIMIT)]
    server.start()
    try:
        root = server.base.rsplit("/fhir", 1)[0]
        r = requests.post(root + "/auth/token", data={"grant_type": "client_credentials", "client_id": client_id,
                                                      "client_secret": secret})
        assert r.status_code == 200, r.text
        api = Api(server, r.json()["access_token"])
        api.client = (client_id, secret)
        for name, resource in SEED.items():
            created = api.create(fill(resource, api.ids))
            api.ids[name] = created["id"]
            api.seeded[name] = f"{created['resourceType']}/{created['id']}"
        for key in api.seeded.values():
            api.content[key] = api.http.get(api.url(key)).json()
        api.baseline = {t: api.keys_of(t) for t in ("Patient", "Observation", "Practitioner")}
        yield api
    finally:
        server.stop()


def seeded_keys(api, *names):
    return {api.seeded[n] for n in names}


def assert_answered(r):
    """200 searchset Bundle or 400 OperationOutcome; nothing else, and no header smuggled in."""
    assert r.status_code in (200, 400), f"{r.request.method} {r.url[:300]}: {r.status_code} {r.text[:400]}"
    assert "X-Injected" not in r.headers, "a value became a response header"
    body = r.json()
    if r.status_code == 400:
        assert body["resourceType"] == "OperationOutcome", r.text[:400]
        assert body["issue"] and all(i["severity"] in ("error", "fatal") and i["code"] for i in body["issue"]), r.text[:400]
    else:
        assert body["resourceType"] == "Bundle" and body["type"] == "searchset", r.text[:400]
    return body


def assert_outcome(r, *statuses):
    assert r.status_code in statuses, f"{r.request.method} {r.url[:200]}: {r.status_code} {r.text[:400]}"
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"], r.text[:400]
    return body


# ---------------------------------------------------------------------------------------------
# 1. Injection battery: every parameter type, modifiers, chains, _has and the result parameters

class P:
    """A search parameter under test: `legit` must find exactly `finds` (proof the parameter really
    filters); a hostile value (after `prefix`) must find none of the seeded records, except for
    kind "not" (finds all of them: none has that gender) and kind "control" (a result parameter
    next to the filter `base`, which must not widen what `base` finds)."""

    def __init__(self, type_, name, legit, finds, prefix="", kind="filter", base=None, includes=()):
        self.type, self.name, self.legit, self.finds = type_, name, legit, finds
        self.prefix, self.kind, self.base, self.includes = prefix, kind, base or {}, includes

    @property
    def id(self):
        return f"{self.type}?{self.name}" + (f"={self.prefix}…" if self.prefix else "")


PARAMETERS = [
    # string
    P("Patient", "name", "zhang", {"P1"}),
    P("Patient", "family", "Li", {"P2"}),
    P("Patient", "name:exact", "Wang", {"P3"}),
    P("Patient", "name:contains", "han", {"P1"}),
    P("Patient", "family:missing", "false", {"P1", "P2", "P3"}),
    P("Observation", "value-string", "fev", {"O3"}),
    # token
    P("Patient", "identifier", "urn:neg:mrn|MRN-2", {"P2"}),
    P("Patient", "gender", "male", {"P2"}),
    P("Patient", "gender:not", "male", {"P1", "P3"}, kind="not"),
    P("Observation", "code", "http://loinc.org|8867-4", {"O1", "O2"}),
    P("Observation", "code:text", "heart", {"O1", "O2"}),
    P("Patient", "_id", "{P1}", {"P1"}),
    # date
    P("Patient", "birthdate", "1975-05-06", {"P2"}),
    P("Patient", "birthdate", "ge1985-01-01", {"P3"}, prefix="ge"),
    P("Observation", "date", "lt2024-01-15", {"O1"}, prefix="lt"),
    P("Patient", "_lastUpdated", "gt2000-01-01", {"P1", "P2", "P3"}, prefix="gt"),
    # reference, chains, _has
    P("Patient", "general-practitioner", "Practitioner/{PR1}", {"P1"}),
    P("Observation", "subject", "Patient/{P2}", {"O2"}),
    P("Observation", "subject:Patient.name", "wang", {"O3"}),
    P("Observation", "patient.identifier", "urn:neg:mrn|MRN-1", {"O1"}),
    P("Patient", "_has:Observation:subject:code", "http://loinc.org|8310-5", {"P3"}),
    # quantity (there is no parameter of type number on the platform's resource types)
    P("Observation", "value-quantity", "72|http://unitsofmeasure.org|/min", {"O1"}),
    P("Observation", "value-quantity", "gt80", {"O2"}, prefix="gt"),
    P("Observation", "value-quantity", "ap72", {"O1"}, prefix="ap"),
    # uri
    P("Patient", "_profile", "http://example.org/StructureDefinition/neg-patient", {"P1"}),
    P("Patient", "_source", f"urn:huitong:facility:{FACILITY}", {"P1", "P2", "P3"}),
    # result parameters, next to a filter that finds Zhang (or Zhang's heart rate)
    P("Patient", "_sort", "-birthdate", {"P1"}, kind="control", base={"family": "Zhang"}),
    P("Patient", "_count", "5", {"P1"}, kind="control", base={"family": "Zhang"}),
    P("Patient", "_offset", "0", {"P1"}, kind="control", base={"family": "Zhang"}),
    P("Patient", "_total", "accurate", {"P1"}, kind="control", base={"family": "Zhang"}),
    P("Patient", "_elements", "name", {"P1"}, kind="control", base={"family": "Zhang"}),
    P("Patient", "_summary", "true", {"P1"}, kind="control", base={"family": "Zhang"}),
    P("Observation", "_include", "Observation:subject", {"O1"}, kind="control", base={"subject": "Patient/{P1}"},
      includes={"P1"}),
    P("Patient", "_revinclude", "Observation:subject", {"P1"}, kind="control", base={"family": "Zhang"}, includes={"O1"}),
]


def battery():
    for p in PARAMETERS:
        for value in HOSTILE:
            # A 100 KB value only fits in a form body; the URL case is test_an_overlong_search_url_...
            for method in ("GET", "POST") if value != "long-100k" else ("POST",):
                yield pytest.param(p, value, method, id=f"{p.id}-{value}-{method}")


@pytest.mark.parametrize("p", [pytest.param(p, id=p.id) for p in PARAMETERS])
def test_each_battery_parameter_really_filters(api, p):
    params = dict(fill(p.base, api.ids), **{p.name: fill(p.legit, api.ids)})
    for method in ("GET", "POST"):
        r = api.search(p.type, params, method)
        assert r.status_code == 200, r.text[:400]
        bundle = r.json()
        assert matches(bundle) & set(api.seeded.values()) == seeded_keys(api, *p.finds), f"{method} {params}"
        if p.includes:
            assert matches(bundle, "include") == seeded_keys(api, *p.includes)


@pytest.mark.parametrize("p,value,method", list(battery()))
def test_a_hostile_search_value_is_only_a_value(api, p, value, method):
    params = dict(fill(p.base, api.ids), **{p.name: p.prefix + HOSTILE[value]})
    bundle = assert_answered(api.search(p.type, params, method))
    if "entry" not in bundle:
        return
    found = matches(bundle) & set(api.seeded.values())
    of_type = {k for k in api.seeded.values() if k.startswith(p.type + "/")}
    if p.kind == "filter":
        assert not found, f"a hostile value matched seeded records {sorted(found)}"
    elif p.kind == "not":
        assert found == of_type, "gender:not=<a value no one has> must find every seeded Patient"
    else:
        assert found <= seeded_keys(api, *p.finds), f"{p.name} widened {p.base} to {sorted(found)}"
        assert matches(bundle, "include") <= seeded_keys(api, *p.includes)
    assert all(e["resource"]["resourceType"] in (p.type, "OperationOutcome") or e["search"]["mode"] == "include"
               for e in bundle["entry"])


def test_unsupported_special_parameters_are_refused_when_strict(api):
    """_filter, _text, _content are not supported: with `Prefer: handling=strict` a 400; without it
    they are ignored and said so in an OperationOutcome entry (FHIR's lenient handling)."""
    for name in ("_filter", "_text", "_content"):
        for value in ("sql-or", "json-op", "nul"):
            params = {name: HOSTILE[value], "family": "Zhang"}
            strict = api.search("Patient", params, headers={"Prefer": "handling=strict"})
            assert_outcome(strict, 400)
            if value == "nul":
                # A NUL is refused in any parameter's value, known or not.
                assert_outcome(api.search("Patient", params), 400)
                continue
            lenient = assert_answered(api.search("Patient", params))
            assert matches(lenient) & set(api.seeded.values()) == seeded_keys(api, "P1")
            assert any(e["search"]["mode"] == "outcome" and e["resource"]["resourceType"] == "OperationOutcome"
                       for e in lenient["entry"]), "the ignored parameter is not reported"


def test_an_overlong_search_url_is_refused_and_the_server_carries_on(api):
    """A 100 KB query string: the HTTP layer refuses it (it answers, it does not hang up)."""
    r = api.http.get(api.url("Patient"), params={"name": HOSTILE["long-100k"]}, timeout=30)
    assert 400 <= r.status_code < 500, r.status_code
    assert api.healthy()


HOSTILE_IDS = ["' OR '1'='1", "../../etc/passwd", "%00", "*", "张三", "x" * 100, "{P1}' OR '1'='1", "{P1}%00", "{P1}/../{P2}"]


@pytest.mark.parametrize("raw", HOSTILE_IDS)
def test_a_hostile_path_id_reaches_no_record(api, raw):
    hostile = fill(raw, api.ids)
    path = api.url("Patient/" + requests.utils.quote(hostile, safe="%"))
    assert api.http.get(path).status_code in (400, 404)
    assert_outcome(api.http.put(path, json={"resourceType": "Patient", "id": hostile, "gender": "other"}), 400, 404, 405)
    r = api.http.delete(path)
    assert r.status_code in (200, 204, 400, 404), r.text
    for name in ("P1", "P2"):
        assert api.http.get(api.url(api.seeded[name])).json() == api.content[api.seeded[name]]


CONDITIONAL_DELETE_VALUES = ["sql-or", "sql-drop", "sql-paren", "sql-like", "sql-union", "like-all", "like-one", "star",
                             "json-op", "nul", "crlf", "traversal"]
CONDITIONAL_DELETE_PARAMETERS = [("Patient", "name"), ("Patient", "name:exact"), ("Patient", "name:contains"),
                                 ("Patient", "identifier"), ("Patient", "_id"), ("Patient", "gender"),
                                 ("Observation", "subject:Patient.name"), ("Observation", "code")]


def conditional_deletes():
    for type_, name in CONDITIONAL_DELETE_PARAMETERS:
        for value in CONDITIONAL_DELETE_VALUES:
            yield pytest.param(type_, name, value, id=f"{type_}?{name}-{value}")


@pytest.mark.parametrize("type_,name,value", list(conditional_deletes()))
def test_a_conditional_delete_with_a_hostile_value_deletes_nothing(api, type_, name, value):
    r = api.http.delete(api.url(type_), params={name: HOSTILE[value]})
    # 412 would say the value matched several records; 200/204 with nothing deleted is right.
    assert r.status_code in (200, 204, 400, 404), f"DELETE {r.url[:200]}: {r.status_code} {r.text[:300]}"
    assert api.keys_of(type_) == api.baseline[type_]


def test_the_battery_changed_nothing(api):
    for type_, keys in api.baseline.items():
        assert api.keys_of(type_) == keys, type_
    for key, content in api.content.items():
        assert api.http.get(api.url(key)).json() == content, key
    assert api.healthy()


@pytest.mark.parametrize("count_query", [{"_summary": "count"}, {"_count": "0"}])
def test_a_count_counts_what_the_reader_can_see(api, count_query):
    visible = api.keys_of("Patient", {"family": "Zhang"})
    r = api.search("Patient", dict(count_query, family="Zhang"))
    assert r.status_code == 200
    bundle = r.json()
    assert bundle.get("total", len(visible)) == len(visible), f"total {bundle.get('total')}, {len(visible)} visible"


# ---------------------------------------------------------------------------------------------
# 2. Hostile strings in a written resource: stored verbatim, found by exactly that string

def search_escaped(value):
    """FHIR search escaping of `\\ , | $` inside a value."""
    return "".join("\\" + c if c in "\\,|$" else c for c in value)


# The longest search parameter value accepted (bytes), SearchQueryParser.maxValueBytes.
SEARCH_VALUE_LIMIT = 4096

STORED_VERBATIM = [v for v in HOSTILE if v not in ("nul", "nul-smuggle", "control")]


@pytest.mark.parametrize("value", STORED_VERBATIM)
def test_a_hostile_string_is_stored_verbatim_and_found_by_itself(api, value):
    text = HOSTILE[value]
    system = "urn:neg:hostile:" + value
    created = api.create({"resourceType": "Patient", "identifier": [{"system": system, "value": text}],
                          "name": [{"family": text, "given": ["Hostile"]}]})
    key = "Patient/" + created["id"]
    read = api.http.get(api.url(key))
    assert read.status_code == 200
    back = read.json()
    assert back["id"] == created["id"]
    assert back["identifier"][0]["value"] == text and back["name"][0]["family"] == text
    assert text.encode("utf-8") in read.content or json.dumps(text)[1:-1].encode() in read.content
    if len(text.encode()) > SEARCH_VALUE_LIMIT:
        # Stored, but longer than any search value the server accepts: a clear 400, not a scan.
        r = api.search("Patient", {"identifier": f"{system}|{search_escaped(text)}"}, "POST")
        assert_outcome(r, 400)
        assert r.json()["issue"][0]["code"] == "too-long"
        return
    for method in ("GET", "POST"):
        by_identifier = assert_answered(api.search("Patient", {"identifier": f"{system}|{search_escaped(text)}"}, method))
        assert matches(by_identifier) == {key}, f"{method} identifier"
        by_name = assert_answered(api.search("Patient", {"name:exact": search_escaped(text), "_count": "1000"}, method))
        assert key in matches(by_name) and not matches(by_name) & set(api.seeded.values()), f"{method} name:exact"


@pytest.mark.parametrize("value", ["nul", "nul-smuggle", "control"])
def test_a_control_character_in_a_string_is_refused(api, value):
    """FHIR strings allow no control characters but tab, CR and LF."""
    system = "urn:neg:control:" + value
    r = api.http.post(api.url("Patient"), json={"resourceType": "Patient", "identifier": [{"system": system, "value": "c"}],
                                                "name": [{"family": HOSTILE[value]}]})
    assert_outcome(r, 400)
    assert api.keys_of("Patient", {"identifier": system + "|c"}) == set()


# ---------------------------------------------------------------------------------------------
# 3. Oversized and malformed bodies, transactions, the token endpoint

def marked_patient(marker, **extra):
    return {"resourceType": "Patient", "name": [{"family": marker}], **extra}


def stored(api, marker):
    return api.keys_of("Patient", {"name:exact": marker})


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_stored(api):
    marker = "Oversize" + uuid.uuid4().hex[:8]
    big = json.dumps(marked_patient(marker, text={"status": "generated", "div": "<div>" + "x" * LIMIT + "</div>"})).encode()
    fhir = {"Content-Type": "application/fhir+json"}

    def chunks():
        for i in range(0, len(big), 64 * 1024):
            yield big[i:i + 64 * 1024]

    cases = {
        "create": lambda: api.http.post(api.url("Patient"), data=big, headers=fhir),
        "create, chunked": lambda: api.http.post(api.url("Patient"), data=chunks(), headers=fhir),
        "update": lambda: api.http.put(api.url(api.seeded["P2"]), data=json.dumps(
            dict(api.content[api.seeded["P2"]], text={"status": "generated", "div": "<div>" + "x" * LIMIT + "</div>"})),
            headers=fhir),
        "transaction": lambda: api.http.post(api.url(), json={"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": marked_patient(marker), "request": {"method": "POST", "url": "Patient"}},
            {"resource": json.loads(big), "request": {"method": "POST", "url": "Patient"}}]}),
        "_search form": lambda: api.http.post(api.url("Patient/_search"), data={"name": "y" * (LIMIT + 1)}),
    }
    for name, send in cases.items():
        body = assert_outcome(send(), 413)
        assert body["issue"][0]["code"] == "too-costly", name
    assert stored(api, marker) == set()
    assert api.http.get(api.url(api.seeded["P2"])).json() == api.content[api.seeded["P2"]]
    assert api.healthy()


def nested(depth, open_, close):
    return open_ * depth + b"1" + close * depth


MALFORMED = {
    "truncated": b'{"resourceType":"Patient","name":[{"family":"%s',
    "invalid utf-8": b'{"resourceType":"Patient","name":[{"family":"%s\xff\xfe\xc3\x28"}]}',
    "100,000 nested arrays": b'{"resourceType":"Patient","name":[{"family":"%s"}],"extension":' + nested(100_000, b"[", b"]") + b"}",
    "50,000 nested objects": b'{"resourceType":"Patient","name":[{"family":"%s"}],"x":' + nested(50_000, b'{"a":', b"}") + b"}",
    "integer of 10,000 digits": b'{"resourceType":"Patient","name":[{"family":"%s"}],"multipleBirthInteger":' + b"9" * 10_000 + b"}",
    "duplicate key": b'{"resourceType":"Patient","name":[{"family":"%s"}],"gender":"male","gender":"female"}',
    "duplicate resourceType": b'{"resourceType":"Patient","resourceType":"Observation","name":[{"family":"%s"}]}',
    "raw NUL in a string": b'{"resourceType":"Patient","name":[{"family":"%s\x00"}]}',
    "trailing garbage": b'{"resourceType":"Patient","name":[{"family":"%s"}]} {"resourceType":"Patient"}',
    "top-level array": b'[{"resourceType":"Patient","name":[{"family":"%s"}]}]',
    "another type than the URL": b'{"resourceType":"Practitioner","name":[{"family":"%s"}]}',
    "unknown element": b'{"resourceType":"Patient","name":[{"family":"%s"}],"$where":"1==1"}',
    "empty": b"",
    "null": b"null",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_body_is_refused_and_nothing_stored(api, name):
    marker = "Malformed" + uuid.uuid4().hex[:8]
    body = MALFORMED[name].replace(b"%s", marker.encode())
    r = api.http.post(api.url("Patient"), data=body, headers={"Content-Type": "application/fhir+json"}, timeout=30)
    assert_outcome(r, 400, 422)
    assert stored(api, marker) == set()
    if name == "another type than the URL":
        assert api.keys_of("Practitioner") == api.baseline["Practitioner"]
    assert api.healthy()


@pytest.mark.parametrize("content_type,body", [
    ("application/fhir+xml", b'{"resourceType":"Patient","name":[{"family":"%s"}]}'),
    ("application/xml", b'<Patient xmlns="http://hl7.org/fhir"><name><family value="%s"/></name></Patient>'),
    ("text/xml; charset=utf-8", b'<Patient xmlns="http://hl7.org/fhir"><name><family value="%s"/></name></Patient>'),
    ("application/x-www-form-urlencoded", b"resourceType=Patient&family=%s"),
    ("text/plain", b"Patient %s"),
    # JSON itself, but as a browser sends it cross-site without a preflight (CSRF): refused too.
    ("text/plain", b'{"resourceType":"Patient","name":[{"family":"%s"}]}'),
    ("application/x-www-form-urlencoded", b'{"resourceType":"Patient","name":[{"family":"%s"}]}'),
])
def test_a_body_in_another_format_is_refused(api, content_type, body):
    marker = "Format" + uuid.uuid4().hex[:8]
    r = api.http.post(api.url("Patient"), data=body.replace(b"%s", marker.encode()), headers={"Content-Type": content_type})
    assert_outcome(r, 400, 415)
    assert stored(api, marker) == set()


def test_a_decimal_of_10000_digits_is_kept_exactly_or_refused(api):
    """R4 puts no bound on a decimal's digits: stored, it must come back digit for digit."""
    digits = "9" * 10_000
    body = ('{"resourceType":"Observation","status":"final","code":{"text":"neg-huge-decimal"},'
            '"subject":{"reference":"Patient/%s"},"valueQuantity":{"value":%s}}' % (api.ids["P3"], digits)).encode()
    r = api.http.post(api.url("Observation"), data=body, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code in (201, 400), r.text[:300]
    if r.status_code == 400:
        assert_outcome(r, 400)
        return
    location = r.headers["Location"].split("/fhir/", 1)[1].split("/_history")[0]
    try:
        read = api.http.get(api.url(location))
        assert read.status_code == 200
        assert b'"value":' + digits.encode() + b"}" in read.content.replace(b" ", b"")
        found = api.search("Observation", {"value-quantity": "gt1e300", "subject": "Patient/" + api.ids["P3"]})
        assert found.status_code == 200 and location.encode() in found.content
    finally:
        assert api.http.delete(api.url(location)).status_code in (200, 204)


def transaction(*entries):
    return {"resourceType": "Bundle", "type": "transaction", "entry": list(entries)}


def post_entry(resource):
    return {"resource": resource, "request": {"method": "POST", "url": resource["resourceType"]}}


# The third entry of a transaction, and how the server must refuse the whole transaction for it.
THIRD_ENTRIES = {
    "invalid resource": ((400,), lambda api: post_entry({"resourceType": "Patient", "gender": 12345})),
    "unknown element": ((400,), lambda api: post_entry({"resourceType": "Patient", "name": [{"family": "X"}], "nonsense": True})),
    "version conflict": ((409, 412), lambda api: {"resource": dict(api.content[api.seeded["P1"]], gender="other"),
                                                  "request": {"method": "PUT", "url": api.seeded["P1"], "ifMatch": 'W/"999"'}}),
    "dangling urn:uuid": ((400, 404), lambda api: post_entry({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "urn:uuid:00000000-0000-4000-8000-000000000000"}})),
    # Matches nothing (had the value leaked into SQL it would match everything: 412), so the
    # invalid resource is written, and refused.
    "hostile conditional create": ((400,), lambda api: {
        "resource": {"resourceType": "Patient", "gender": 12},
        "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:neg:nobody|' OR '1'='1"}}),
}


@pytest.mark.parametrize("third", list(THIRD_ENTRIES))
def test_a_transaction_whose_third_entry_fails_stores_nothing(api, third):
    marker = "Tx" + uuid.uuid4().hex[:8]
    ok = [post_entry(marked_patient(marker + str(i))) for i in (1, 2, 4)]
    statuses, entry = THIRD_ENTRIES[third]
    r = api.http.post(api.url(), json=transaction(ok[0], ok[1], entry(api), ok[2]))
    assert_outcome(r, *statuses)
    assert api.keys_of("Patient", {"family": marker}) == set()
    assert api.http.get(api.url(api.seeded["P1"])).json() == api.content[api.seeded["P1"]]


def test_the_token_endpoint_refuses_oversized_and_hostile_forms(api):
    endpoint = api.root + "/auth/token"
    client_id, secret = api.client
    for size in (65 * 1024, 2 * LIMIT):
        r = requests.post(endpoint, data={"grant_type": "client_credentials", "client_id": client_id,
                                          "client_secret": secret, "padding": "p" * size})
        assert 400 <= r.status_code < 500, f"{size}: {r.status_code} {r.text[:200]}"
        assert "access_token" not in r.text
    hostile_forms = [
        {"grant_type": "client_credentials", "client_id": HOSTILE["sql-or"], "client_secret": HOSTILE["sql-or"]},
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": HOSTILE["sql-or"]},
        {"grant_type": "client_credentials", "client_id": client_id + "\x00", "client_secret": secret},
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret + "\x00' OR '1'='1"},
        {"grant_type": HOSTILE["json-op"], "client_id": client_id, "client_secret": secret},
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, "scope": HOSTILE["sql-union"]},
    ]
    for form in hostile_forms:
        r = requests.post(endpoint, data=form)
        assert r.status_code in (400, 401), f"{form}: {r.status_code} {r.text[:200]}"
        assert "access_token" not in r.text, form
    raw = [b"grant_type=client_credentials&client_id=%zz&client_secret=%", b"\xff\xfe=\x00&&&==", b"=" * 1000]
    for body in raw:
        r = requests.post(endpoint, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code in (400, 401), f"{body[:40]}: {r.status_code} {r.text[:200]}"
    assert api.healthy()


def test_conditional_delete_with_a_nul_in_the_value_deletes_nothing(api):
    marker = "Victim" + uuid.uuid4().hex[:8]
    victim = "Patient/" + api.create(marked_patient(marker))["id"]
    r = api.http.delete(api.url("Patient"), params={"name:contains": marker + "\x00' OR '1'='1"})
    assert r.status_code in (200, 204, 400, 404), r.text
    assert api.http.get(api.url(victim)).status_code == 200, f"{victim} was deleted ({r.status_code})"


# ---------------------------------------------------------------------------------------------
# 4. Still up, seeded data intact, and the audit chain verifies

def test_the_server_survived_and_the_audit_chain_verifies(api):
    assert api.server.process.poll() is None, "the server process exited"
    assert api.healthy()
    for name in SEED:
        key = api.seeded[name]
        assert api.http.get(api.url(key)).json() == api.content[key], key
    api.server.stop()
    assert api.server.process.returncode is not None
    r = subprocess.run([BINARY, "audit", "verify", "--data", api.server.data_dir], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "audit chain intact" in r.stdout
