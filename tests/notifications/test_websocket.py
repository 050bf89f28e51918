"""Subscriptions delivered over a websocket (Subscriptions Backport IG 1.1.0): `$get-ws-binding-token`,
`bind-with-token` on the `websocket-url`, a handshake, then `event-notification` messages in order,
with nothing lost while no socket is bound.

Issue 28's websocket acceptance item. The client is `websocket-client` (the websocket library
Selenium uses), a real external client speaking RFC 6455 to the platform.
"""
import json

import requests
import websocket
from fhir.resources.bundle import Bundle

from test_rest_hook import FHIR_JSON, BACKPORT, LOINC_HB, check_shape, event_numbers, observation, status_of, value, write


def ws_subscription(content="id-only"):
    return {
        "resourceType": "Subscription",
        "status": "requested",
        "reason": "床旁提醒：新的血红蛋白结果",
        "criteria": f"Observation?code=http://loinc.org|{LOINC_HB}",
        "channel": {
            "type": "websocket",
            "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": content}]},
        },
    }


def parameters(resource):
    assert resource["resourceType"] == "Parameters", resource
    out = {}
    for p in resource["parameter"]:
        out.setdefault(p["name"], []).append(value(p))
    return out


def binding_token(base, sid):
    r = requests.get(f"{base}/Subscription/{sid}/$get-ws-binding-token", headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    return parameters(r.json())


def receive(ws, count, timeout=60):
    """The next `count` messages, parsed."""
    ws.settimeout(timeout)
    return [json.loads(ws.recv()) for _ in range(count)]


def receive_events(ws, numbers_wanted, timeout=60):
    """Notifications until the given event numbers have all arrived; returns the bundles."""
    got, bundles = [], []
    ws.settimeout(timeout)
    while len(got) < numbers_wanted:
        bundle = json.loads(ws.recv())
        bundles.append(bundle)
        got += event_numbers([bundle])
    return bundles


def test_websocket_binds_with_a_token_and_receives_notifications_in_order(server):
    base = server.base
    r = requests.post(f"{base}/Subscription", json=ws_subscription(), headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    # No endpoint to shake hands with: the subscription is active at once (each socket gets a handshake).
    assert r.json()["status"] == "active"

    # The binding token, per the backport's OperationDefinition.
    p = binding_token(base, sid)
    assert set(p) == {"token", "expiration", "subscription", "websocket-url"}
    assert p["subscription"] == [f"{base}/Subscription/{sid}"]
    url = p["websocket-url"][0]
    assert url == base.replace("http://", "ws://")[: -len("/fhir")] + "/ws/subscriptions"

    # Changes before any socket is bound are kept for it.
    early = write(base, 5)

    ws = websocket.create_connection(url, timeout=30)
    ws.send(f"bind-with-token {p['token'][0]}")
    handshake = receive(ws, 1)[0]
    Bundle.parse_obj(handshake)
    assert check_shape(handshake, sid, base, "id-only") == "handshake"
    assert value(status_of(handshake)["status"][0]) == "active"

    bundles = receive_events(ws, 5)
    assert event_numbers(bundles) == [1, 2, 3, 4, 5]
    later = write(base, 20, offset=5)
    bundles += receive_events(ws, 20)
    assert event_numbers(bundles) == list(range(1, 26)), "contiguous event numbers, in order"
    for b in bundles:
        Bundle.parse_obj(b)
        assert check_shape(b, sid, base, "id-only") == "event-notification"
    focus = sorted(b["entry"][1]["fullUrl"].rsplit("/", 1)[1] for b in bundles)
    assert focus == sorted(early + later), "one notification per matching write"

    # A token binds once: a second socket presenting it is told so.
    other = websocket.create_connection(url, timeout=30)
    other.send(json.dumps({"type": "bind-with-token", "payload": {"token": p["token"][0]}}))
    refused = receive(other, 1)[0]
    assert refused["resourceType"] == "OperationOutcome" and refused["issue"][0]["code"] == "security"
    other.send("hello")
    assert receive(other, 1)[0]["issue"][0]["code"] == "invalid"
    other.close()

    # The socket goes away; three more changes wait; a new token and socket get them, after a
    # handshake that says how many events there were.
    ws.close()
    write(base, 3, offset=25)
    p = binding_token(base, sid)
    ws = websocket.create_connection(url, timeout=30)
    ws.send(f"bind-with-token: {p['token'][0]}")
    handshake = receive(ws, 1)[0]
    assert value(status_of(handshake)["type"][0]) == "handshake"
    assert int(value(status_of(handshake)["events-since-subscription-start"][0])) >= 25
    bundles = receive_events(ws, 3)
    assert event_numbers(bundles) == [26, 27, 28]
    ws.close()


def test_binding_token_requests_are_checked(server):
    base = server.base
    sid = requests.post(f"{base}/Subscription", json=ws_subscription("full-resource"), headers=FHIR_JSON).json()["id"]
    # Type level: the subscriptions are named by id (as a parameter or in a Parameters body).
    r = requests.get(f"{base}/Subscription/$get-ws-binding-token?id={sid}", headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert parameters(r.json())["subscription"] == [f"{base}/Subscription/{sid}"]
    r = requests.post(f"{base}/Subscription/$get-ws-binding-token", headers=FHIR_JSON,
                      json={"resourceType": "Parameters", "parameter": [{"name": "id", "valueId": sid}]})
    assert r.status_code == 200, r.text
    token = parameters(r.json())["token"][0]
    r = requests.get(f"{base}/Subscription/$get-ws-binding-token", headers=FHIR_JSON)
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["id"], r.text
    # A rest-hook subscription has no socket to bind.
    hook = requests.post(f"{base}/Subscription", headers=FHIR_JSON, json={
        "resourceType": "Subscription", "status": "requested", "reason": "x", "criteria": "Observation?code=1",
        "channel": {"type": "rest-hook", "endpoint": "http://127.0.0.1:9/x", "payload": "application/fhir+json"}}).json()
    r = requests.get(f"{base}/Subscription/{hook['id']}/$get-ws-binding-token", headers=FHIR_JSON)
    assert r.status_code == 400, r.text
    # full-resource over the socket: the focus resource is in the notification.
    url = base.replace("http://", "ws://")[: -len("/fhir")] + "/ws/subscriptions"
    ws = websocket.create_connection(url, timeout=30)
    ws.send(f"bind-with-token {token}")
    assert value(status_of(receive(ws, 1)[0])["type"][0]) == "handshake"
    created = requests.post(f"{base}/Observation", json=observation(1), headers=FHIR_JSON).json()
    bundle = receive_events(ws, 1)[0]
    check_shape(bundle, sid, base, "full-resource")
    assert bundle["entry"][1]["resource"]["id"] == created["id"]
    ws.close()
