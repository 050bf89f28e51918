"""Subscriptions delivered by rest-hook to a real HTTP receiver (Python's http.server), in the shape
of the Subscriptions Backport IG 1.1.0 (R4), at least once and in order, through an outage.

Issue 28's first acceptance item: an id-only and a full-resource subscription; the handshake; 1,000
writes → 1,000 notifications with contiguous event numbers in order; the receiver stopped for 60 s
while 500 more writes happen, then restarted: all 500 arrive, none twice under another number;
`$events` replays a range.
"""
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from fhir.resources.bundle import Bundle

from conftest import free_port

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
OUTAGE = int(os.environ.get("HUITONG_TEST_OUTAGE_SECONDS", "60"))
LOINC_HB = "718-7"


class Receiver:
    """An HTTP endpoint that keeps every notification it is sent, per path."""

    def __init__(self, port):
        self.port = port
        self.lock = threading.Lock()
        self.received = {}
        self.server = None

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.received.setdefault(self.path, []).append((dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def bundles(self, path):
        with self.lock:
            return [b for _, b in self.received.get(path, [])]


def status_of(bundle):
    params = bundle["entry"][0]["resource"]
    assert params["resourceType"] == "Parameters"
    out = {}
    for p in params["parameter"]:
        out.setdefault(p["name"], []).append(p)
    return out


def value(p):
    return next(v for k, v in p.items() if k.startswith("value"))


def event_numbers(bundles):
    numbers = []
    for b in bundles:
        s = status_of(b)
        if value(s["type"][0]) != "event-notification":
            continue
        for e in s.get("notification-event", []):
            parts = {p["name"]: value(p) for p in e["part"]}
            numbers.append(int(parts["event-number"]))
    return numbers


def wait_for(condition, timeout, what):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def subscription(endpoint, content, criteria=f"Observation?code=http://loinc.org|{LOINC_HB}"):
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "新的血红蛋白结果",
        "criteria": criteria,
        "channel": {
            "type": "rest-hook",
            "endpoint": endpoint,
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
            "header": ["X-Receiver-Key: secret-1"],
        },
    }


def observation(i, code=LOINC_HB):
    return {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": "Patient/p1"},
            "valueQuantity": {"value": 100 + i % 60, "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"}}


def write(base, n, offset=0):
    """n matching Observations and n/10 that match neither subscription, from 8 clients."""
    def post(i):
        r = requests.post(f"{base}/Observation", json=observation(offset + i), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        if i % 10 == 0:
            assert requests.post(f"{base}/Observation", json=observation(i, code="2345-7"), headers=FHIR_JSON).status_code == 201
        return r.json()["id"]
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(post, range(n)))


def check_shape(bundle, subscription_id, base, content):
    """The backport's notification shape, field by field, and R4 validity (fhir.resources)."""
    Bundle.parse_obj(bundle)
    assert bundle["type"] == "history"
    assert bundle["meta"]["profile"] == [BACKPORT + "backport-subscription-notification-r4"]
    first = bundle["entry"][0]
    assert first["request"] == {"method": "GET", "url": f"{base}/Subscription/{subscription_id}/$status"}
    assert first["response"]["status"] == "200"
    assert first["resource"]["meta"]["profile"] == [BACKPORT + "backport-subscription-status-r4"]
    s = status_of(bundle)
    assert value(s["subscription"][0]) == {"reference": f"{base}/Subscription/{subscription_id}"}
    assert value(s["status"][0]) in ("requested", "active")
    kind = value(s["type"][0])
    assert kind in ("handshake", "heartbeat", "event-notification")
    assert int(value(s["events-since-subscription-start"][0])) >= 0
    for e in s.get("notification-event", []):
        parts = {p["name"]: p for p in e["part"]}
        assert set(parts) <= {"event-number", "timestamp", "focus"}
        assert "valueString" in parts["event-number"] and "valueInstant" in parts["timestamp"]
        focus = parts["focus"]["valueReference"]["reference"]
        assert focus.startswith(f"{base}/Observation/") and "/_history/" in focus
        focus_entry = bundle["entry"][1]
        assert focus_entry["fullUrl"] == focus.split("/_history/")[0]
        if content == "full-resource":
            assert focus_entry["resource"]["resourceType"] == "Observation"
            assert focus_entry["resource"]["id"] == focus_entry["fullUrl"].rsplit("/", 1)[1]
            assert focus_entry["resource"]["meta"]["versionId"] == focus.rsplit("/", 1)[1]
        else:
            assert "resource" not in focus_entry
    return kind


def test_rest_hook_delivers_every_event_in_order_through_an_outage(server):
    port = free_port()
    receiver = Receiver(port).start()
    base = server.base
    created = {}
    for content in ("id-only", "full-resource"):
        r = requests.post(f"{base}/Subscription", json=subscription(f"http://127.0.0.1:{port}/{content}", content), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        created[content] = r.json()["id"]
        assert r.json()["status"] == "requested"

    # The handshake arrives, and the subscription becomes active.
    for content, sid in created.items():
        wait_for(lambda: len(receiver.bundles("/" + content)) >= 1, 30, f"the handshake of {content}")
        handshake = receiver.bundles("/" + content)[0]
        assert check_shape(handshake, sid, base, content) == "handshake"
        assert "notification-event" not in status_of(handshake)
        wait_for(lambda: requests.get(f"{base}/Subscription/{sid}", headers=FHIR_JSON).json()["status"] == "active", 30, "active")
    headers, _ = receiver.received["/id-only"][0]
    assert headers.get("X-Receiver-Key") == "secret-1", "the subscription's headers are sent"
    assert headers.get("Content-Type") == "application/fhir+json"

    ids = write(base, 1000)
    for content in created:
        wait_for(lambda: len(event_numbers(receiver.bundles("/" + content))) >= 1000, 120, f"1,000 notifications to {content}")
    for content, sid in created.items():
        bundles = receiver.bundles("/" + content)
        assert event_numbers(bundles) == list(range(1, 1001)), "contiguous event numbers, in order"
        focus_ids = [b["entry"][1]["fullUrl"].rsplit("/", 1)[1] for b in bundles if len(b["entry"]) > 1]
        assert sorted(focus_ids) == sorted(ids), "one notification per matching write, none for the others"
        for b in bundles[1:50]:
            check_shape(b, sid, base, content)

    # The receiver is down while 500 more writes happen; then it comes back.
    receiver.stop()
    started = time.time()
    more = write(base, 500, offset=1000)
    # A search shows each subscription still active, with its last error.
    def searched():
        bundle = requests.get(f"{base}/Subscription?_id={','.join(created.values())}", headers=FHIR_JSON).json()
        return [e["resource"] for e in bundle.get("entry", [])]
    wait_for(lambda: all("error" in s for s in searched()), 30, "the last error on the subscriptions")
    for s in searched():
        assert s["status"] == "active" and "could not be reached" in s["error"], s
    time.sleep(max(0, OUTAGE - (time.time() - started)))
    receiver = Receiver(port).start()
    wait_for(lambda: all(len(event_numbers(receiver.bundles("/" + c))) >= 500 for c in created), 180, "the 500 after the outage")
    for content, sid in created.items():
        numbers = event_numbers(receiver.bundles("/" + content))
        assert sorted(set(numbers)) == list(range(1001, 1501)), "all 500 arrive"
        assert numbers == sorted(numbers), "in order"
        # A repeat (a notification sent again after a failure) carries the same number.
        focus = {}
        for b in receiver.bundles("/" + content):
            for e in status_of(b).get("notification-event", []):
                parts = {p["name"]: value(p) for p in e["part"]}
                n, ref = int(parts["event-number"]), parts["focus"]["reference"]
                assert focus.setdefault(n, ref) == ref, f"event {n} came again about another resource"
        assert sorted(r.split("/Observation/")[1].split("/")[0] for r in focus.values()) == sorted(more)

    # $events replays a range; $status reports the counts.
    sid = created["id-only"]
    r = requests.get(f"{base}/Subscription/{sid}/$events?eventsSinceNumber=990&eventsUntilNumber=1005", headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    replay = r.json()
    Bundle.parse_obj(replay)
    assert value(status_of(replay)["type"][0]) == "query-event"
    assert event_numbers_any(replay) == list(range(990, 1006))
    r = requests.get(f"{base}/Subscription/{sid}/$events?eventsSinceNumber=1499&content=full-resource", headers=FHIR_JSON)
    replay = r.json()
    assert event_numbers_any(replay) == [1499, 1500]
    assert all(e["resource"]["resourceType"] == "Observation" for e in replay["entry"][1:])
    status = requests.get(f"{base}/Subscription/{sid}/$status", headers=FHIR_JSON).json()
    Bundle.parse_obj(status)
    s = status_of(status)
    assert value(s["type"][0]) == "query-status" and value(s["status"][0]) == "active"
    assert value(s["events-since-subscription-start"][0]) == "1500"
    # Prometheus: events queued, notifications by outcome, the delivery lag.
    metrics = requests.get(base[: -len("/fhir")] + "/metrics").text
    events = [l for l in metrics.splitlines() if l.startswith("huitong_subscription_events_total")]
    assert events and float(events[0].split()[-1]) == 3000, events
    delivered = [l for l in metrics.splitlines() if l.startswith('huitong_subscription_notifications_total{channel="rest-hook",outcome="delivered"}')]
    assert delivered and float(delivered[0].split()[-1]) >= 3002, delivered   # 3,000 events and 2 handshakes
    assert 'huitong_subscription_notifications_total{channel="rest-hook",outcome="failed"}' in metrics
    assert 'huitong_subscription_lag_seconds{channel="rest-hook"}' in metrics

    # The client changes its subscription's reason: it stays active, and the next write is event 1501
    # with no new handshake (a new handshake would have left the writes in between unnumbered).
    current = requests.get(f"{base}/Subscription/{sid}", headers=FHIR_JSON).json()
    current["reason"] = "新的血红蛋白结果（更新）"
    r = requests.put(f"{base}/Subscription/{sid}", json=current, headers=FHIR_JSON)
    assert r.status_code == 200 and r.json()["status"] == "active", r.text
    before = len(receiver.bundles("/id-only"))
    write(base, 1, offset=1500)
    wait_for(lambda: 1501 in event_numbers(receiver.bundles("/id-only")), 30, "event 1501")
    kinds = [value(status_of(b)["type"][0]) for b in receiver.bundles("/id-only")[before:]]
    assert "handshake" not in kinds, kinds
    receiver.stop()


def event_numbers_any(bundle):
    return [int({p["name"]: value(p) for p in e["part"]}["event-number"]) for e in status_of(bundle).get("notification-event", [])]


def test_subscription_writes_are_checked(server):
    base = server.base
    bad = subscription("http://127.0.0.1:9/x", "id-only")
    bad["channel"]["type"] = "email"
    r = requests.post(f"{base}/Subscription", json=bad, headers=FHIR_JSON)
    assert r.status_code == 400 and "Subscription.channel.type" in r.json()["issue"][0]["expression"]
    bad = subscription("http://127.0.0.1:9/x", "id-only", criteria="Observation?no-such-parameter=1")
    r = requests.post(f"{base}/Subscription", json=bad, headers=FHIR_JSON)
    assert r.status_code == 400 and "Subscription.criteria" in r.json()["issue"][0]["expression"]
    bad = subscription("ftp://127.0.0.1/x", "id-only")
    r = requests.post(f"{base}/Subscription", json=bad, headers=FHIR_JSON)
    assert r.status_code == 400 and "Subscription.channel.endpoint" in r.json()["issue"][0]["expression"]
    # A client asks for a subscription; the platform makes it active (after the handshake).
    forged = subscription("http://127.0.0.1:9/x", "id-only")
    forged["status"] = "active"
    stored = requests.post(f"{base}/Subscription", json=forged, headers=FHIR_JSON).json()
    assert stored["status"] == "requested"


def test_max_count_combines_waiting_events_into_one_notification(server):
    """`backport-max-count`: events that wait (the receiver was down) go out several to a notification, at most
    that many, in order; without it, one per notification (the test above)."""
    port = free_port()
    receiver = Receiver(port).start()
    base = server.base
    s = subscription(f"http://127.0.0.1:{port}/batched", "full-resource")
    s["channel"]["extension"] = [{"url": BACKPORT + "backport-max-count", "valuePositiveInt": 10}]
    sid = requests.post(f"{base}/Subscription", json=s, headers=FHIR_JSON).json()["id"]
    wait_for(lambda: receiver.bundles("/batched"), 30, "the handshake")
    receiver.stop()
    ids = write(base, 35)
    time.sleep(2)
    receiver = Receiver(port).start()
    wait_for(lambda: len(event_numbers(receiver.bundles("/batched"))) >= 35, 60, "the 35 events")
    bundles = [b for b in receiver.bundles("/batched") if value(status_of(b)["type"][0]) == "event-notification"]
    assert event_numbers(bundles) == list(range(1, 36))
    sizes = [len(status_of(b)["notification-event"]) for b in bundles]
    assert max(sizes) == 10 and len(bundles) < 35, sizes
    for b in bundles:
        Bundle.parse_obj(b)
        s = status_of(b)
        numbers = [int({p["name"]: value(p) for p in e["part"]}["event-number"]) for e in s["notification-event"]]
        assert value(s["events-since-subscription-start"][0]) == str(numbers[-1])
        # One focus entry per event, in the same order, with the resource (full-resource).
        focus = [{p["name"]: value(p) for p in e["part"]}["focus"]["reference"].split("/_history/")[0] for e in s["notification-event"]]
        assert [e["fullUrl"] for e in b["entry"][1:]] == focus
        assert all(e["resource"]["resourceType"] == "Observation" for e in b["entry"][1:])
    assert sorted(e["resource"]["id"] for b in bundles for e in b["entry"][1:]) == sorted(ids)
    receiver.stop()
