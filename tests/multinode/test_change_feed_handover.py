"""The change feed's consumers survive the death of the node serving them: two `huitong serve`
processes on one PostgreSQL database both run the `file-export` consumer (`--export-changes`),
each into its own folder; clients write on both nodes; node A is killed with `kill -9` while they
write; node B takes the consumer over from the saved position. Every acknowledged version of every
resource is then exported, in commit order per resource within each node's file, and a change is
exported twice only when A had written it but died before its position moved (its last batch):
the two nodes never ran the consumer at once. Needs HUITONG_TEST_POSTGRES_URL (.ci/run sets it)."""
import base64
import collections
import json
import os
import threading
import time

import pytest
import requests

from conftest import POSTGRES_URL, Server, fresh_postgres_database

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="HUITONG_TEST_POSTGRES_URL is not set")

FHIR_JSON = {"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}
BATCH = 500   # ChangeConsumer's default batch: at most one batch may come again after a crash


def exported(folder):
    """The lines of a node's export files, in the order written; a line cut by `kill -9` may end a file."""
    lines = []
    if not os.path.isdir(folder):
        return lines
    for name in sorted(os.listdir(folder)):
        assert name.startswith("changes-") and name.endswith(".ndjson"), name
        text = open(os.path.join(folder, name), encoding="utf-8").read()
        rows = text.split("\n")
        for i, row in enumerate(rows):
            if not row:
                continue
            try:
                lines.append(json.loads(row))
            except json.JSONDecodeError:
                assert i == len(rows) - 1 or (i == len(rows) - 2 and rows[-1] == ""), f"a broken line inside {name}: {row!r}"
    return lines


def key(line):
    return (line["resourceType"], line["id"], int(line["versionId"]))


def test_a_consumer_moves_to_another_node_after_kill9_with_no_gap(tmp_path):
    database = fresh_postgres_database("huitong_handover")
    keyring = tmp_path / "identifier-keys"
    keyring.write_text("k1 " + base64.b64encode(os.urandom(32)).decode() + "\n")
    folders = {name: str(tmp_path / f"export-{name}") for name in "AB"}
    nodes = {}
    for name in "AB":
        os.makedirs(tmp_path / f"node-{name}")
        node = Server(str(tmp_path / f"node-{name}"), database)
        node.start_args += ["--identifier-keys", str(keyring), "--export-changes", folders[name]]
        nodes[name] = node.start()

    acknowledged, lock, stop = set(), threading.Lock(), threading.Event()
    a_dead = threading.Event()

    def writer(k):
        """Creates Observations and updates each twice, alternating nodes (only B once A is dead)."""
        session = requests.Session()
        i = 0
        while not stop.is_set():
            i += 1
            node = nodes["B"] if a_dead.is_set() or i % 2 else nodes["A"]
            body = {"resourceType": "Observation", "status": "preliminary", "code": {"text": f"w{k}-{i}"}}
            try:
                r = session.post(f"{node.base}/Observation", json=body, headers=FHIR_JSON, timeout=10)
                if r.status_code != 201:
                    continue
                oid = r.headers["Location"].split("/Observation/")[1].split("/")[0]
                with lock:
                    acknowledged.add(("Observation", oid, 1))
                for version, status in ((2, "final"), (3, "amended")):
                    node = nodes["B"] if a_dead.is_set() or (i + version) % 2 else nodes["A"]
                    r = session.put(f"{node.base}/Observation/{oid}", json={**body, "id": oid, "status": status},
                                    headers=FHIR_JSON, timeout=10)
                    if r.status_code != 200:
                        break
                    with lock:
                        acknowledged.add(("Observation", oid, version))
            except requests.RequestException:
                continue   # node A died under this request: not acknowledged

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    try:
        deadline = time.time() + 30
        while time.time() < deadline and len(exported(folders["A"])) < 200:
            time.sleep(0.2)
        assert len(exported(folders["A"])) >= 200, "node A exported nothing: the consumer never ran there"
        nodes["A"].kill9()
        a_dead.set()
        time.sleep(3)   # B alone, with the consumer from where A's last finished batch left it
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    try:
        by_a = exported(folders["A"])
        deadline = time.time() + 30
        while time.time() < deadline:
            by_b = exported(folders["B"])
            if acknowledged <= {key(line) for line in by_a + by_b}:
                break
            time.sleep(0.2)
        seen = {key(line) for line in by_a + by_b}
        missing = acknowledged - seen
        assert not missing, f"{len(missing)} of {len(acknowledged)} acknowledged versions never exported, e.g. {sorted(missing)[:3]}"
        print(f"acknowledged {len(acknowledged)}, exported by A {len(by_a)}, by B {len(by_b)}")
        assert len(acknowledged) > 500, len(acknowledged)
        assert any(k in acknowledged for k in map(key, by_b)), "node B exported nothing after A died"

        # Commit order per resource within each node's export.
        for name, lines in (("A", by_a), ("B", by_b)):
            newest = {}
            for line in lines:
                resource, version = line["id"], int(line["versionId"])
                assert version > newest.get(resource, 0), f"node {name} exported {resource} v{version} after v{newest[resource]}"
                newest[resource] = version

        # Never both at once: nothing is exported twice, except what A wrote in its last batch and
        # B exported again because A died before its position moved.
        counts = collections.Counter(map(key, by_a + by_b))
        twice = {k for k, n in counts.items() if n > 1}
        print(f"exported twice: {len(twice)}")
        assert all(n <= 2 for n in counts.values())
        assert len(twice) <= BATCH, f"{len(twice)} changes exported twice"
        tail_of_a = {key(line) for line in by_a[-BATCH:]}
        assert twice <= tail_of_a, f"exported twice outside A's last batch: {sorted(twice - tail_of_a)[:3]}"
        assert not any(n > 1 for n in collections.Counter(map(key, by_a)).values()), "node A exported a change twice"
        assert not any(n > 1 for n in collections.Counter(map(key, by_b)).values()), "node B exported a change twice"
        assert all(set(line) == {"resourceType", "id", "versionId", "lastUpdated", "deleted"} for line in by_a + by_b[:10])
    finally:
        nodes["B"].stop()
