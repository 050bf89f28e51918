"""A region on a real `huitong serve` (no --dev) with real tokens, for the adversarial tests:
two facilities (org-a, org-b), a clinician and an emergency clinician at org-b, a platform
operator, a CDC user, an administrator, and two residents who log in with password and TOTP.
Everything goes through the HTTP API or the `huitong` command, as an integrator would use them."""
import base64
import datetime
import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
import time
import urllib.parse

import requests

from conftest import BINARY, Server, fresh_postgres_database

ID_SYSTEM = "urn:oid:2.16.156.10011.1.3"  # the resident ID number (docs/identifiers.md)
ICD10 = "http://hl7.org/fhir/sid/icd-10"


def resident_id(birth, sequence):
    """A valid 18-digit resident ID (GB 11643 check digit)."""
    body = "510104" + birth.replace("-", "") + f"{sequence:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def totp(uri, at=None):
    """The current RFC 6238 code of an otpauth:// URI (SHA1, 30 s, 6 digits)."""
    secret = urllib.parse.parse_qs(urllib.parse.urlparse(uri).query)["secret"][0]
    key = base64.b32decode(secret + "=" * (-len(secret) % 8))
    counter = int((at or time.time()) // 30)
    mac = hmac.new(key, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = mac[-1] & 0x0F
    value = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


class Caller:
    """Someone with credentials: a client (secret) or a person (session with refresh token)."""

    def __init__(self, region, name, client=None, secret=None):
        self.region, self.name, self.client, self.secret = region, name, client, secret
        self.refresh = None
        self.token = None
        self.expires = 0

    def headers(self, extra=None):
        if time.time() > self.expires - 30:
            if self.client:
                r = requests.post(self.region.url + "/auth/token", data={
                    "grant_type": "client_credentials", "client_id": self.client, "client_secret": self.secret})
            else:
                r = requests.post(self.region.url + "/auth/token", data={"grant_type": "refresh_token", "refresh_token": self.refresh})
            assert r.status_code == 200, f"{self.name}: {r.status_code} {r.text}"
            self.token, self.expires = r.json()["access_token"], time.time() + r.json()["expires_in"]
        h = {"Authorization": "Bearer " + self.token, "Content-Type": "application/fhir+json"}
        h.update(extra or {})
        return h

    def request(self, method, path, body=None, headers=None, **kw):
        data = json.dumps(body, ensure_ascii=False).encode() if body is not None and not isinstance(body, (bytes, str)) else body
        return requests.request(method, self.region.base + "/" + path.lstrip("/"), data=data, headers=self.headers(headers), **kw)

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def put(self, path, body, **kw):
        return self.request("PUT", path, body, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def created(self, type_, body, **kw):
        """POSTs a resource that must be created; returns its id."""
        r = self.post(type_, body, **kw)
        assert r.status_code == 201, f"{self.name} POST {type_}: {r.status_code} {r.text}"
        return r.json()["id"]


def ids(bundle_response):
    return [e["resource"]["id"] for e in bundle_response.json().get("entry", []) if "resource" in e
            and e["resource"].get("resourceType") != "OperationOutcome"]


def normalised(response, *secrets):
    """A response's status and body with ids, versions and times blanked, and the given values
    (the ids a test put into its two queries) replaced by one placeholder: what must be byte-identical
    between a hidden match and no match."""
    text = response.text
    for s in secrets:
        text = text.replace(s, "<X>")
    text = re.sub(r'"id":"[^"]*"', '"id":"<id>"', text)
    text = re.sub(r'"(lastUpdated|versionId)":"[^"]*"', r'"\1":"<t>"', text)
    text = re.sub(r'(Condition|Observation|Consent|Patient)/[0-9a-f-]{36}', r'\1/<id>', text)
    text = re.sub(r'_snapshot=\d+', '_snapshot=<n>', text)
    return response.status_code, text


def condition(subject, code, system=ICD10, text=None):
    c = {"resourceType": "Condition", "subject": subject,
         "code": {"coding": [{"system": system, "code": code}]} if code else {"text": text}}
    if code and text:
        c["code"]["text"] = text
    return c


def patient(family, given, rid, birth="1980-05-05", gender="male"):
    # Phone and address as a registration desk records them: with the ID number they make two
    # registrations of one resident a certain match for the master index.
    return {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], "gender": gender, "birthDate": birth,
            "identifier": [{"system": ID_SYSTEM, "value": rid}], "telecom": [{"system": "phone", "value": "139" + rid[-8:-1]}],
            "address": [{"line": [f"人民南路 {int(rid[-4:-1]) % 200 + 1}号"], "city": "成都", "postalCode": "610041"}]}


class Region:
    """The server, its callers and the seeded records. `backend` is "sqlite" or "postgres"."""

    def __init__(self, tmp, backend):
        self.tmp = tmp
        self.backend = backend
        self.database = fresh_postgres_database("huitong_probe") if backend == "postgres" else None
        self.server = Server(tmp, self.database)
        self.server.dev = False
        # Short connection limits, so that the transport tests do not wait long. (HUITONG_PROBE_BASELINE:
        # run the suite against a build from before these flags existed, to see what it finds there.)
        if not os.environ.get("HUITONG_PROBE_BASELINE"):
            self.server.start_args += ["--header-timeout", "2", "--idle-timeout", "6"]
        self.server.start_args += ["--auth-rate-limit", "0"]
        self.base = self.server.base
        self.url = self.base[: -len("/fhir")]
        self.records = {}

    def cli(self, *args):
        store = ["--database", self.database] if self.database else ["--data", self.tmp]
        out = subprocess.run([BINARY, *args, *store], check=True, capture_output=True, text=True).stdout
        return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)

    def client(self, name, role, scopes, facility=None):
        args = ["client", "create", "--name", name, "--role", role, "--scopes", scopes] + (["--facility", facility] if facility else [])
        out = self.cli(*args)
        return Caller(self, name, client=out["client_id"], secret=out["client_secret"].split()[0])

    def user(self, username, role, scopes, patient=None, facility=None):
        args = ["user", "create", "--username", username, "--role", role, "--scopes", scopes]
        args += (["--patient", patient] if patient else []) + (["--facility", facility] if facility else [])
        return self.cli(*args)

    def login(self, name, account):
        # Each TOTP code works once: wait for a fresh step if this one was just used.
        for _ in range(10):
            r = requests.post(self.url + "/auth/login", data={"username": name, "password": account["password"].split()[0],
                                                             "totp": totp(account["totp"].split()[0])})
            if r.status_code == 200:
                break
            time.sleep(5)
        assert r.status_code == 200, r.text
        caller = Caller(self, name)
        caller.refresh = r.json()["refresh_token"]
        caller.token, caller.expires = r.json()["access_token"], time.time() + r.json()["expires_in"]
        return caller

    def person_of(self, patient_id):
        r = self.admin.get(f"Person?link=Patient/{patient_id}")
        return r.json()["entry"][0]["resource"]["id"]

    def start(self):
        self.admin = self.client("平台管理员", "administrator", "system/*.cruds")
        self.a = self.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
        self.b = self.client("乡镇卫生院 HIS", "facility-system", "system/*.cruds", "org-b")
        self.b_clinician = self.client("乡镇卫生院 医生", "clinician", "user/*.cruds", "org-b")
        self.b_emergency = self.client("乡镇卫生院 急诊", "emergency-clinician", "user/*.rs", "org-b")
        self.operator = self.client("平台运维", "operator", "system/*.rs")
        self.cdc = self.client("县疾控", "cdc-staff", "user/*.rs", "cdc-county")
        self.server.start()
        self.seed()
        # Residents log in as people; their accounts name their master Persons.
        self.server.stop()
        accounts = {
            "resident1": self.user("resident1", "resident", "patient/*.rs patient/Consent.cu", patient=f"Person/{self.records['person1']}"),
            "resident2": self.user("resident2", "resident", "patient/*.rs patient/Consent.cu", patient=f"Person/{self.records['person2']}"),
        }
        self.server.start()
        self.resident1 = self.login("resident1", accounts["resident1"])
        self.resident2 = self.login("resident2", accounts["resident2"])
        return self

    def seed(self):
        r = self.records
        # Resident 1: registered at A (with an HIV diagnosis there) and at B; B does not treat them now.
        r["rid1"], r["rid2"], r["rid3"], r["rid4"], r["rid5"] = (resident_id("1980-05-05", 11), resident_id("1985-03-03", 21),
                                                                  resident_id("1990-07-07", 31), resident_id("1975-01-09", 41),
                                                                  resident_id("1970-02-02", 51))
        r["p1"] = self.a.created("Patient", patient("张", "伟", r["rid1"]))
        r["hiv1"] = self.a.created("Condition", condition({"reference": f"Patient/{r['p1']}"}, "B20.1"))
        r["asthma1"] = self.a.created("Condition", condition({"reference": f"Patient/{r['p1']}"}, "J45.9"))
        r["pb1"] = self.b.created("Patient", patient("张", "伟", r["rid1"]))
        # Resident 2 at A (no HIV).
        r["p2"] = self.a.created("Patient", patient("李", "娜", r["rid2"], "1985-03-03", "female"))
        # Resident 3 registered at A and B, no HIV anywhere (the control of the _has oracle).
        r["p3"] = self.a.created("Patient", patient("王", "芳", r["rid3"], "1990-07-07", "female"))
        r["asthma3"] = self.a.created("Condition", condition({"reference": f"Patient/{r['p3']}"}, "J45.9"))
        r["pb3"] = self.b.created("Patient", patient("王", "芳", r["rid3"], "1990-07-07", "female"))
        # Resident 4 only at A (B knows nothing of them).
        r["p4"] = self.a.created("Patient", patient("赵", "敏", r["rid4"], "1975-01-09", "female"))
        # Resident 5 at A; B treats them now (an open encounter B recorded).
        r["p5"] = self.a.created("Patient", patient("孙", "悦", r["rid5"], "1970-02-02", "female"))
        r["enc5"] = self.b.created("Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                                 "subject": {"reference": f"Patient/{r['p5']}"}})
        for n in ("1", "2", "3"):
            r["person" + n] = self.person_of(r["p" + n])
        assert r["person1"] == self.person_of(r["pb1"]), "resident 1's two registrations are one master Person"

    def stop(self):
        self.server.stop()
