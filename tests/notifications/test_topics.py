"""The platform's subscription topics (Subscriptions Backport IG 1.1.0, topic-based form in R4): each
published as a `Basic`, subscribed to by canonical URL, narrowed with `backport-filter-criteria`,
and firing on the state changes it names (R5 `queryCriteria` semantics), not on every write.
"""
import time

import requests
from fhir.resources.basic import Basic
from fhir.resources.bundle import Bundle

from conftest import free_port
from test_rest_hook import FHIR_JSON, Receiver, event_numbers, status_of, value, wait_for

TOPIC = "https://huitong.health/fhir/SubscriptionTopic/"
FILTER = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-filter-criteria"
CONTENT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/backport-payload-content"
XVER = "http://hl7.org/fhir/5.0/StructureDefinition/extension-SubscriptionTopic."


def topic_subscription(topic, endpoint, *filters):
    s = {
        "resourceType": "Subscription", "status": "requested", "reason": topic,
        "criteria": TOPIC + topic,
        "channel": {"type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": CONTENT, "valueCode": "id-only"}]}},
    }
    if filters:
        s["_criteria"] = {"extension": [{"url": FILTER, "valueString": f} for f in filters]}
    return s


def create(base, resource):
    r = requests.post(f"{base}/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert r.status_code == 201, r.text
    return r.json()


def update(base, resource, **changes):
    resource = dict(resource, **changes)
    r = requests.put(f"{base}/{resource['resourceType']}/{resource['id']}", json=resource, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    return r.json()


def focus(receiver, path):
    """(event number, focus resource type/id) of the event notifications received on `path`."""
    out = []
    for b in receiver.bundles(path):
        s = status_of(b)
        if value(s["type"][0]) != "event-notification":
            continue
        assert value(s["topic"][0]) == TOPIC + path.strip("/"), "the topic is named in every notification"
        for e in s["notification-event"]:
            parts = {p["name"]: value(p) for p in e["part"]}
            ref = parts["focus"]["reference"].split("/fhir/")[1]
            out.append((int(parts["event-number"]), "/".join(ref.split("/")[:2])))
    return out


def encounter(patient, status):
    return {"resourceType": "Encounter", "status": status,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{patient}"}}


def test_topics_are_published_as_basic(server):
    base = server.base
    r = requests.get(f"{base}/Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic&_count=50", headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    bundle = r.json()
    topics = {}
    for entry in bundle["entry"]:
        Basic.parse_obj(entry["resource"])
        ext = {e["url"][len(XVER):]: e for e in entry["resource"]["extension"]}
        topics[ext["url"]["valueUri"]] = entry["resource"]
        assert entry["resource"]["modifierExtension"][0]["valueCode"] == "active"
        assert entry["resource"]["meta"]["versionId"] == "1"
    for name in ("result-available", "encounter-start", "encounter-end", "document-published", "referral-state-changed",
                 "appointment-booked", "appointment-cancelled", "early-warning-signal"):
        assert TOPIC + name in topics, name
    end = topics[TOPIC + "encounter-end"]
    trigger = next(e for e in end["extension"] if e["url"] == XVER + "resourceTrigger")
    query = next(e for e in trigger["extension"] if e["url"] == "queryCriteria")
    criteria = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in query["extension"]}
    assert criteria == {"previous": "status:not=finished", "resultForCreate": "test-passes", "current": "status=finished",
                        "resultForDelete": "test-fails", "requireBoth": True}
    # A restart publishes nothing again when nothing changed.
    server.stop()
    server.start()
    again = requests.get(f"{base}/Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic&_count=50", headers=FHIR_JSON).json()
    assert sorted(e["resource"]["meta"]["versionId"] for e in again["entry"]) == ["1"] * len(topics)


def test_topic_subscriptions_fire_on_the_state_change_they_name(server):
    base = server.base
    port = free_port()
    receiver = Receiver(port).start()
    hook = f"http://127.0.0.1:{port}"
    subs = {}
    for name, filters in (("encounter-end", ["Encounter?patient=Patient/p1"]), ("result-available", []),
                          ("appointment-cancelled", []), ("referral-state-changed", ["ServiceRequest?patient=Patient/p1"])):
        r = requests.post(f"{base}/Subscription", json=topic_subscription(name, f"{hook}/{name}", *filters), headers=FHIR_JSON)
        assert r.status_code == 201, r.text
        subs[name] = r.json()["id"]
    for name in subs:
        wait_for(lambda: receiver.bundles("/" + name), 30, f"the handshake of {name}")
        handshake = receiver.bundles("/" + name)[0]
        Bundle.parse_obj(handshake)
        assert value(status_of(handshake)["topic"][0]) == TOPIC + name

    # encounter-end, for p1 only: in-progress → finished fires; finished → finished does not; a
    # finished create fires (resultForCreate test-passes); p2's does not pass the filter.
    e1 = create(base, encounter("p1", "in-progress"))
    e1 = update(base, e1, status="finished")
    update(base, e1, status="finished", serviceType={"text": "复诊"})
    create(base, encounter("p2", "finished"))
    e3 = create(base, encounter("p1", "finished"))

    # result-available: preliminary does not fire; final does; amended (a changed result) fires again.
    obs = {"resourceType": "Observation", "status": "preliminary", "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
           "subject": {"reference": "Patient/p1"}, "valueQuantity": {"value": 120, "unit": "g/L"}}
    o1 = create(base, obs)
    o1 = update(base, o1, status="final")
    update(base, o1, status="amended", valueQuantity={"value": 125, "unit": "g/L"})

    # appointment-cancelled: created cancelled does not fire (resultForCreate test-fails); booked → cancelled does.
    appointment = {"resourceType": "Appointment", "status": "cancelled",
                   "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"}]}
    create(base, appointment)
    a2 = create(base, dict(appointment, status="booked"))
    update(base, a2, status="cancelled")

    # referral-state-changed (p1): created fires; an update that keeps the status does not; a new status fires.
    referral = {"resourceType": "ServiceRequest", "status": "draft", "intent": "order", "subject": {"reference": "Patient/p1"},
                "category": [{"text": "转诊"}], "code": {"text": "转上级医院"}}
    s1 = create(base, referral)
    s1 = update(base, s1, note=[{"text": "补充病历摘要"}])
    update(base, s1, status="active")
    create(base, dict(referral, subject={"reference": "Patient/p2"}))

    expected = {
        "encounter-end": [(1, f"Encounter/{e1['id']}"), (2, f"Encounter/{e3['id']}")],
        "result-available": [(1, f"Observation/{o1['id']}"), (2, f"Observation/{o1['id']}")],
        "appointment-cancelled": [(1, f"Appointment/{a2['id']}")],
        "referral-state-changed": [(1, f"ServiceRequest/{s1['id']}"), (2, f"ServiceRequest/{s1['id']}")],
    }
    for name, events in expected.items():
        wait_for(lambda: len(focus(receiver, "/" + name)) >= len(events), 30, f"the events of {name}")
    # Give a stray event time to show up, then compare exactly.
    time.sleep(2)
    for name, events in expected.items():
        assert focus(receiver, "/" + name) == events, name
        for b in receiver.bundles("/" + name):
            Bundle.parse_obj(b)
    receiver.stop()


def test_topic_subscriptions_are_checked(server):
    base = server.base
    hook = "http://127.0.0.1:9/x"
    cases = [
        (topic_subscription("no-such-topic", hook), "Subscription.criteria"),
        (topic_subscription("encounter-end", hook, "Observation?patient=Patient/p1"), "Subscription._criteria.extension[0]"),
        (topic_subscription("encounter-end", hook, "Encounter?length=gt1"), "Subscription._criteria.extension[0]"),
        (topic_subscription("encounter-end", hook, "Encounter?patient=p1", "Encounter?class=AMB"), "Subscription._criteria.extension[1]"),
    ]
    for subscription, location in cases:
        r = requests.post(f"{base}/Subscription", json=subscription, headers=FHIR_JSON)
        assert r.status_code == 400, r.text
        assert r.json()["issue"][0]["expression"] == [location], r.text


def test_every_filter_a_topic_offers_is_taken(server):
    """Each topic's canFilterBy, as published, is a filter a subscription may use (the platform can search it)."""
    base = server.base
    bundle = requests.get(f"{base}/Basic?code=http://hl7.org/fhir/fhir-types|SubscriptionTopic&_count=50", headers=FHIR_JSON).json()
    taken = 0
    for entry in bundle["entry"]:
        ext = entry["resource"]["extension"]
        url = next(e["valueUri"] for e in ext if e["url"] == XVER + "url")
        for f in (e for e in ext if e["url"] == XVER + "canFilterBy"):
            parts = {p["url"]: next(v for k, v in p.items() if k.startswith("value")) for p in f["extension"]}
            s = topic_subscription(url[len(TOPIC):], "http://127.0.0.1:9/x", f"{parts['resource']}?{parts['filterParameter']}=x")
            r = requests.post(f"{base}/Subscription", json=s, headers=FHIR_JSON)
            assert r.status_code == 201, (url, parts, r.text)
            taken += 1
    assert taken >= 20
