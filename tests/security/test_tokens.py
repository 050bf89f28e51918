"""A facility system authenticates the way SMART Backend Services clients do — a client
assertion signed with its own key (private_key_jwt) — and uses the token with a FHIR client
library. Without a token, every FHIR endpoint answers 401 with a WWW-Authenticate challenge."""
import json
import os
import subprocess
import time
import uuid

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec
from fhirpy import SyncFHIRClient
from jwt.algorithms import ECAlgorithm

from conftest import BINARY, Server

SCOPES = "system/Patient.cruds system/Observation.rs"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A server without --dev, and a client registered with its public key (before the server starts:
    the embedded store belongs to one process at a time)."""
    data = str(tmp_path_factory.mktemp("secured"))
    key = ec.generate_private_key(ec.SECP256R1())
    public = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    public.update({"kid": "his-2026", "alg": "ES256", "use": "sig"})
    jwks_file = os.path.join(data, "his-jwks.json")
    with open(jwks_file, "w") as f:
        json.dump({"keys": [public]}, f)
    out = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "县医院 HIS", "--facility", "org-county",
                          "--scopes", SCOPES, "--jwks", jwks_file], check=True, capture_output=True, text=True).stdout
    client_id = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("client_id: "))
    assert "client_secret" not in out, "a client with a public key gets no secret"
    server = Server(data)
    server.dev = False
    server.start()
    yield server, client_id, key
    server.stop()


def assertion(client_id, key, audience, **overrides):
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": audience, "exp": now + 240, "jti": str(uuid.uuid4())}
    claims.update(overrides)
    return jwt.encode(claims, key, algorithm="ES256", headers={"kid": "his-2026", "typ": "JWT"})


def token_request(endpoint, signed, scope=SCOPES):
    return requests.post(endpoint, data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed})


def test_private_key_jwt_token_works_with_a_fhir_client(secured):
    server, client_id, key = secured
    config = requests.get(server.base + "/.well-known/smart-configuration").json()
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    endpoint = config["token_endpoint"]
    r = token_request(endpoint, assertion(client_id, key, endpoint))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"].lower() == "bearer" and body["expires_in"] > 0
    assert set(body["scope"].split()) == set(SCOPES.split())

    fhir = SyncFHIRClient(server.base, authorization="Bearer " + body["access_token"])
    patient = fhir.resource("Patient", name=[{"family": "王", "given": ["芳"]}], gender="female")
    patient.save()
    found = fhir.resources("Patient").search(_id=patient.id).fetch()
    assert [p.id for p in found] == [patient.id]
    # The token does not reach what its scopes leave out.
    denied = requests.post(server.base + "/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
                           headers={"Authorization": "Bearer " + body["access_token"]})
    assert denied.status_code == 403, denied.text
    assert denied.json()["issue"][0]["code"] == "forbidden"


def test_assertions_that_must_not_grant(secured):
    server, client_id, key = secured
    endpoint = requests.get(server.base + "/.well-known/smart-configuration").json()["token_endpoint"]
    once = assertion(client_id, key, endpoint)
    assert token_request(endpoint, once).status_code == 200
    cases = {
        "replayed jti": once,
        "another audience": assertion(client_id, key, "https://elsewhere.example/auth/token"),
        "expired": assertion(client_id, key, endpoint, exp=int(time.time()) - 10),
        "lives an hour": assertion(client_id, key, endpoint, exp=int(time.time()) + 3600),
        "unknown client": assertion("no-such-client", key, endpoint),
        "another key": assertion(client_id, ec.generate_private_key(ec.SECP256R1()), endpoint),
        "alg none": jwt.encode({"iss": client_id, "sub": client_id, "aud": endpoint, "exp": int(time.time()) + 60,
                                "jti": str(uuid.uuid4())}, None, algorithm="none"),
        "not a JWT": "not-a-jwt",
    }
    for name, signed in cases.items():
        r = token_request(endpoint, signed)
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert r.json()["error"] == "invalid_client", name


def test_every_fhir_endpoint_needs_a_token(secured):
    server, _, _ = secured
    metadata = requests.get(server.base + "/metadata")
    assert metadata.status_code == 200, "the CapabilityStatement is public (SMART discovery)"
    rest = metadata.json()["rest"][0]
    requests_made = 0
    checks = [("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": []}), ("GET", "_history", None)]
    checks += [("POST", "$" + op["name"], {"resourceType": "Parameters"}) for op in rest.get("operation", [])]
    for resource in rest["resource"]:
        t = resource["type"]
        checks += [("GET", t, None), ("POST", t, {"resourceType": t}), ("GET", f"{t}/x", None), ("PUT", f"{t}/x", {"resourceType": t, "id": "x"}),
                   ("DELETE", f"{t}/x", None), ("GET", f"{t}/x/_history", None), ("GET", f"{t}/x/_history/1", None),
                   ("POST", f"{t}/_search", None), ("GET", f"{t}/_history", None)]
        checks += [("POST" if op["name"] == "match" else "GET", f"{t}/{'x/' if op['name'] == 'everything' else ''}${op['name']}", None)
                   for op in resource.get("operation", [])]
    for method, path, body in checks:
        r = requests.request(method, f"{server.base}/{path}", json=body)
        requests_made += 1
        assert r.status_code == 401, f"{method} /fhir/{path}: {r.status_code}"
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), f"{method} /fhir/{path}"
    # A token that is not ours is refused the same way, with the RFC 6750 error.
    forged = jwt.encode({"sub": "x", "scope": "system/*.cruds"}, "a-shared-secret-of-thirty-two-bytes!", algorithm="HS256")
    r = requests.get(server.base + "/Patient", headers={"Authorization": "Bearer " + forged})
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["WWW-Authenticate"]
    assert requests_made > 1000
