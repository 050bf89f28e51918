"""Subscriptions deliver only what their owner may read (issue 28, ADR 023), against a real server
with real tokens (no --dev).

Facility B treats resident 5, whose records are kept at facility A. B's system subscribes to
resident 5's Observations: it is notified of A's ordinary results, not of a sensitive one (and the
event numbers do not show one was skipped), and nothing once the resident's Consent denies B. A
rest-hook to an address not registered for the client is refused (SSRF)."""
import time

import pytest
import requests

from conftest import free_port
from region import Caller, Region, patient, resident_id
from test_access_probe import consent

import os
import sys
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "notifications"))
from test_rest_hook import Receiver, event_numbers, status_of, subscription, value, wait_for  # noqa: E402


def observation(subject, code="718-7", value_concept=None):
    o = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{subject}"},
         "code": {"coding": [{"system": "http://loinc.org", "code": code}]}}
    if value_concept:
        o["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct", "code": value_concept}]}
    else:
        o["valueQuantity"] = {"value": 130, "unit": "g/L"}
    return o


def focus_ids(receiver, path):
    out = []
    for b in receiver.bundles(path):
        for e in status_of(b).get("notification-event", []):
            parts = {p["name"]: value(p) for p in e["part"]}
            out.append((int(parts["event-number"]), parts["focus"]["reference"].split("/Observation/")[1].split("/")[0]))
    return out


def started(tmp_path):
    """A receiver, and a region with A, B (its rest-hooks registered at the receiver's /b/), an
    administrator and an operator, its server started."""
    port = free_port()
    receiver = Receiver(port).start()
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
    out = region.cli("client", "create", "--name", "乡镇卫生院 HIS", "--role", "facility-system", "--scopes", "system/*.cruds",
                     "--facility", "org-b", "--subscription-endpoint", f"http://127.0.0.1:{port}/b/")
    b = Caller(region, "乡镇卫生院 HIS", client=out["client_id"], secret=out["client_secret"].split()[0])
    region.admin = region.client("平台管理员", "administrator", "system/*.cruds")
    region.operator = region.client("平台运维", "operator", "system/*.rs")
    region.server.start()
    return port, receiver, region, b


def test_notifications_follow_the_owners_access(tmp_path):
    port, receiver, region, b = started(tmp_path)
    try:
        rid = resident_id("1970-02-02", 51)
        p5 = region.a.created("Patient", patient("孙", "悦", rid, "1970-02-02", "female"))
        b.created("Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                "subject": {"reference": f"Patient/{p5}"}})
        person5 = region.person_of(p5)
        region.server.stop()
        account = region.user("resident5", "resident", "patient/*.rs patient/Consent.cu", patient=f"Person/{person5}")
        region.server.start()
        resident5 = region.login("resident5", account)

        # An endpoint not registered for B is refused; the registered one is taken.
        other = b.post("Subscription", subscription(f"http://127.0.0.1:{free_port()}/x", "id-only", criteria=f"Observation?patient={p5}"))
        assert other.status_code == 403, other.text
        assert "Subscription.channel.endpoint" in other.json()["issue"][0]["expression"]
        sid = b.created("Subscription", subscription(f"http://127.0.0.1:{port}/b/hook", "full-resource", criteria=f"Observation?patient={p5}"))
        wait_for(lambda: b.get(f"Subscription/{sid}").json()["status"] == "active", 30, "active")

        first = region.a.created("Observation", observation(p5))
        wait_for(lambda: len(focus_ids(receiver, "/b/hook")) >= 1, 30, "the first notification")
        assert focus_ids(receiver, "/b/hook") == [(1, first)]
        full = receiver.bundles("/b/hook")[-1]["entry"][1]["resource"]
        assert full["id"] == first and full["resourceType"] == "Observation"

        # A positive HIV test at A: B may not read it, so it is neither delivered nor numbered.
        hidden = region.a.created("Observation", observation(p5, "7917-8", "10828004"))
        assert b.get(f"Observation/{hidden}").status_code == 403
        second = region.a.created("Observation", observation(p5))
        wait_for(lambda: len(focus_ids(receiver, "/b/hook")) >= 2, 30, "the next permitted change")
        assert focus_ids(receiver, "/b/hook") == [(1, first), (2, second)]

        # The resident's Consent denies B: nothing more reaches B.
        denied = resident5.post("Consent", consent(p5, {"type": "deny", "actor": [
            {"role": {"text": "recipient"}, "reference": {"reference": "Organization/org-b"}}]}))
        assert denied.status_code == 201, denied.text
        assert b.get(f"Observation/{second}").status_code == 403
        after = region.a.created("Observation", observation(p5))
        time.sleep(3)
        assert focus_ids(receiver, "/b/hook") == [(1, first), (2, second)]
        assert after not in [f for _, f in focus_ids(receiver, "/b/hook")]
        # $events shows B nothing it may not read either, and the subscription is B's alone.
        events = b.get(f"Subscription/{sid}/$events").json()
        assert [n for n in event_numbers_of(events)] == [1, 2]
        assert region.a.get(f"Subscription/{sid}/$events").status_code in (403, 404)
        # An operator sees its status, but may not take its notifications (read as B) on a socket.
        assert region.operator.get(f"Subscription/{sid}/$status").status_code == 200
        assert region.operator.get(f"Subscription/{sid}/$get-ws-binding-token").status_code == 403
        # Nor may A bind a websocket to it.
        assert region.a.get(f"Subscription/{sid}/$get-ws-binding-token").status_code in (403, 404)
        assert region.a.get(f"Subscription/$get-ws-binding-token?id={sid}").status_code in (403, 404)
        # Its endpoint and headers are B's: A neither reads nor finds it.
        assert region.a.get(f"Subscription/{sid}").status_code in (403, 404)
        assert sid not in [e["resource"]["id"] for e in region.a.get("Subscription").json().get("entry", [])]
        assert sid in [e["resource"]["id"] for e in b.get("Subscription").json().get("entry", [])]
    finally:
        receiver.stop()
        region.stop()


def event_numbers_of(bundle):
    return [int({p["name"]: value(p) for p in e["part"]}["event-number"]) for e in status_of(bundle).get("notification-event", [])]


def test_criteria_are_matched_as_their_owner_would_search_and_shown_masked_to_others(tmp_path):
    """Second probe (F2, F5). Criteria that need other rows (`_has`, a chain) were matched with
    the platform's rights: B, notified about its own Patient, learned that the resident has an HIV
    diagnosis at A, and about A's Patient the birth date it may not read. They are matched as B's
    own search would be. And an operator read B's subscriptions whole: the receiver's key in its
    headers, the patient ids and diagnosis codes in its criteria."""
    port, receiver, region, b = started(tmp_path)
    try:
        rid1, rid3, rid4 = resident_id("1980-05-05", 11), resident_id("1990-07-07", 31), resident_id("1975-01-09", 41)
        p1 = region.a.created("Patient", patient("张", "伟", rid1))
        region.a.created("Condition", {"resourceType": "Condition", "subject": {"reference": f"Patient/{p1}"},
                                       "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "B20.1"}]}})
        pb1 = b.created("Patient", patient("张", "伟", rid1))
        assert region.person_of(p1) == region.person_of(pb1)
        b.created("Condition", {"resourceType": "Condition", "subject": {"reference": f"Patient/{pb1}"},
                                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "J45.9"}]}})
        region.a.created("Patient", patient("王", "芳", rid3, "1990-07-07", "female"))
        pb3 = b.created("Patient", patient("王", "芳", rid3, "1990-07-07", "female"))
        p4 = region.a.created("Patient", patient("赵", "敏", rid4, "1975-01-09", "female"))
        across = "Patient?_id={}&_has:Person:link:link:Patient._has:Condition:subject:code={}"
        criteria = {
            "hiv1": across.format(pb1, "B20.1"),     # resident 1 has it, at A only
            "hiv3": across.format(pb3, "B20.1"),     # the control: resident 3 has not
            "born": "Observation?subject:Patient.birthdate=1975-01-09",  # A's Patient p4
            "own": f"Patient?_id={pb1}&_has:Condition:subject:code=J45.9",  # B's own diagnosis: notified
        }
        sids = {name: b.created("Subscription", subscription(f"http://127.0.0.1:{port}/b/{name}", "id-only", criteria=c))
                for name, c in criteria.items()}
        for sid in sids.values():
            wait_for(lambda: b.get(f"Subscription/{sid}").json()["status"] == "active", 30, "active")
        for pid in (pb1, pb3):
            record = b.get(f"Patient/{pid}").json()
            record["active"] = True   # nothing the master index matches on
            assert b.put(f"Patient/{pid}", record).status_code == 200
        b.created("Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "体重"},
                                  "subject": {"reference": f"Patient/{p4}"}})
        wait_for(lambda: any(status_of(x).get("notification-event") for x in receiver.bundles("/b/own")), 30, "B's own match")
        time.sleep(2)
        for name in ("hiv1", "hiv3", "born"):
            assert not any(status_of(x).get("notification-event") for x in receiver.bundles(f"/b/{name}")), name
            assert event_numbers_of(b.get(f"Subscription/{sids[name]}/$events").json()) == [], name

        # Its owner reads it as written; the operator sees its status, not its secrets or criteria values.
        mine = b.get(f"Subscription/{sids['hiv1']}").json()
        assert mine["criteria"] == criteria["hiv1"] and mine["channel"]["header"] == ["X-Receiver-Key: secret-1"]
        seen = region.operator.get(f"Subscription/{sids['hiv1']}")
        assert seen.status_code == 200, seen.text
        shown = seen.json()
        assert shown["status"] == "active" and shown["channel"]["header"] == ["X-Receiver-Key: ******"]
        assert shown["criteria"].startswith("Patient?_id=******&") and pb1 not in seen.text and "B20.1" not in seen.text
        listed = region.operator.get("Subscription?_count=50")
        assert "secret-1" not in listed.text and "B20.1" not in listed.text
        # Nor found or ordered by what is masked (a prefix search would spell it out letter by letter).
        for query in ("criteria:contains=B20.1", "criteria=Patient", "_sort=criteria", "url=http://127.0.0.1"):
            answer = region.operator.get(f"Subscription?{query}")
            assert answer.status_code == 403, (query, answer.text)
        assert region.operator.get("Subscription?status=active&_summary=count").json()["total"] == len(sids)
        # Nor through a chain from what operators may search (every Subscription write is audited).
        chained = region.operator.get("AuditEvent?entity:Subscription.criteria:contains=B20.1")
        assert chained.status_code in (400, 403), chained.text
        # The endpoint is shown to its host (a path may carry a token); a masked form is not a value to send back.
        assert shown["channel"]["endpoint"] == f"http://127.0.0.1:{port}/******"
        back = b.put(f"Subscription/{sids['hiv1']}", dict(mine, channel=dict(mine["channel"], header=["X-Receiver-Key: ******"])))
        assert back.status_code == 400 and "masked" in back.text, back.text
        assert b.get("Subscription?criteria:contains=B20.1").status_code == 200
        assert region.admin.get(f"Subscription/{sids['hiv1']}").json()["criteria"] == criteria["hiv1"]
    finally:
        receiver.stop()
        region.stop()
