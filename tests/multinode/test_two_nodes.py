"""Two `huitong serve` processes on one PostgreSQL database behave like one server: concurrent
conditional creates with the same identifier create one resource, concurrent If-Match updates
lose nothing, a transaction answered by one node is visible on the other at once, and version
numbers never repeat. Needs HUITONG_TEST_POSTGRES_URL (.ci/run sets it)."""
import base64
import collections
import concurrent.futures
import os
import threading

import pytest
import requests

from conftest import POSTGRES_URL, Server, fresh_postgres_database

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="HUITONG_TEST_POSTGRES_URL is not set")

FHIR_JSON = {"Content-Type": "application/fhir+json"}
SYSTEM = "urn:oid:2.16.156.10011.1.3"
local = threading.local()


def session():
    if not hasattr(local, "s"):
        local.s = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4)
        local.s.mount("http://", adapter)
    return local.s


@pytest.fixture(scope="module")
def nodes(tmp_path_factory):
    database = fresh_postgres_database("huitong_multinode")
    # Every node of one database shares the identifier keyring (a node with another one is refused).
    keyring = tmp_path_factory.mktemp("keys") / "identifier-keys"
    keyring.write_text("k1 " + base64.b64encode(os.urandom(32)).decode() + "\n")
    servers = [Server(str(tmp_path_factory.mktemp(f"node{i}")), database) for i in range(2)]
    for s in servers:
        s.start_args += ["--identifier-keys", str(keyring)]
        s.start()
    yield servers
    for s in servers:
        s.stop()


def test_conditional_creates_across_nodes_make_one_resource_per_identifier(nodes):
    def create(i):
        node = nodes[i % 2]
        ident = f"{SYSTEM}|cc{i % 100:03d}"
        body = {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"cc{i % 100:03d}"}],
                "name": [{"family": "王", "given": [f"{i}"]}]}
        r = session().post(f"{node.base}/Patient", json=body, headers={**FHIR_JSON, "If-None-Exist": f"identifier={ident}"})
        return r.status_code, r.text

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(create, range(1000)))
    statuses = collections.Counter(status for status, _ in results)
    assert set(statuses) <= {200, 201}, [t for s, t in results if s not in (200, 201)][:3]
    assert statuses[201] == 100, statuses
    for node in nodes:
        total = session().get(f"{node.base}/Patient", params={"identifier": f"{SYSTEM}|", "_summary": "count"}).json()["total"]
        assert total == 100
    for k in range(100):
        bundle = session().get(f"{nodes[k % 2].base}/Patient", params={"identifier": f"{SYSTEM}|cc{k:03d}"}).json()
        assert len(bundle.get("entry", [])) == 1, f"identifier cc{k:03d}"


def test_if_match_updates_across_nodes_lose_nothing_and_versions_are_contiguous(nodes):
    created = session().post(f"{nodes[0].base}/Patient", json={"resourceType": "Patient", "gender": "unknown"}, headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    pid = created.json()["id"]
    successes = []
    lock = threading.Lock()

    def update(i):
        """Read, add this client's identifier, write back with If-Match; on 412 start again."""
        node = nodes[i % 2]
        for _ in range(500):
            current = session().get(f"{node.base}/Patient/{pid}")
            assert current.status_code == 200
            resource = current.json()
            version = resource["meta"]["versionId"]
            resource["identifier"] = resource.get("identifier", []) + [{"system": "urn:test:updater", "value": f"u{i}"}]
            r = session().put(f"{node.base}/Patient/{pid}", json=resource, headers={**FHIR_JSON, "If-Match": f'W/"{version}"'})
            if r.status_code == 200:
                with lock:
                    successes.append(int(r.json()["meta"]["versionId"]))
                return
            assert r.status_code == 412, r.text
        raise AssertionError("an update never got through")

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(update, range(50)))
    # One success per version, and no lost update: every client's identifier is in the last version.
    assert sorted(successes) == list(range(2, 52))
    final = session().get(f"{nodes[1].base}/Patient/{pid}").json()
    assert final["meta"]["versionId"] == "51"
    assert sorted(x["value"] for x in final["identifier"]) == sorted(f"u{i}" for i in range(50))
    history = session().get(f"{nodes[0].base}/Patient/{pid}/_history", params={"_count": 100}).json()
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert sorted(versions) == list(range(1, 52)), "version numbers are contiguous and never repeat"


def test_transaction_on_one_node_is_visible_on_the_other_at_once(nodes):
    for round_ in range(20):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
             "resource": {"resourceType": "Patient", "identifier": [{"system": SYSTEM, "value": f"tx{round_}"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "血压"},
                          "subject": {"reference": "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"}},
             "request": {"method": "POST", "url": "Observation"}}]}
        a, b = nodes[round_ % 2], nodes[(round_ + 1) % 2]
        r = session().post(f"{a.base}", json=bundle, headers=FHIR_JSON)
        assert r.status_code == 200, r.text
        locations = [e["response"]["location"].split("/_history")[0] for e in r.json()["entry"]]
        for loc in locations:
            assert session().get(f"{b.base}/{loc}").status_code == 200, f"{loc} not visible on the other node"
        found = session().get(f"{b.base}/Observation", params={"subject": locations[0], "_summary": "count"}).json()
        assert found["total"] == 1
