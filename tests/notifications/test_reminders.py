"""The reminder service (提醒服务): the appointment rule writes one `Communication` per participant within
24 h before a booked appointment starts — stored, searchable, marked read by its recipient, and
delivered through a subscription like any other change.
"""
import datetime
import time

import pytest
import requests
from fhir.resources.communication import Communication

from conftest import Server, free_port
from test_rest_hook import FHIR_JSON, BACKPORT, Receiver, status_of, value, wait_for

REMINDER = "https://huitong.health/fhir/CodeSystem/reminder-type"


@pytest.fixture
def reminding_server(data_dir):
    s = Server(data_dir)
    s.start_args = ["--reminder-interval", "0.5"]
    s.start()
    yield s
    s.stop()


def at(hours):
    return (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=hours)).replace(microsecond=0).isoformat()


def appointment(start_hours, status="booked", text="高血压复诊"):
    start = at(start_hours)
    return {"resourceType": "Appointment", "status": status, "serviceType": [{"text": text}],
            "start": start, "end": at(start_hours + 0.5),
            "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
                            {"actor": {"reference": "Practitioner/dr1"}, "status": "accepted"},
                            {"actor": {"reference": "Location/room-3"}, "status": "accepted"}]}


def reminders(base, query=""):
    r = requests.get(f"{base}/Communication?category={REMINDER}|appointment&_count=100{query}", headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    return [e["resource"] for e in r.json().get("entry", [])]


def test_appointment_reminders_are_written_once_read_and_delivered(reminding_server):
    base = reminding_server.base
    port = free_port()
    receiver = Receiver(port).start()
    # The resident's app subscribes to what is addressed to them.
    sub = requests.post(f"{base}/Subscription", headers=FHIR_JSON, json={
        "resourceType": "Subscription", "status": "requested", "reason": "居民提醒",
        "criteria": "Communication?recipient=Patient/p1",
        "channel": {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{port}/p1", "payload": "application/fhir+json",
                    "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": "full-resource"}]}}})
    assert sub.status_code == 201, sub.text
    wait_for(lambda: receiver.bundles("/p1"), 30, "the handshake")

    soon = requests.post(f"{base}/Appointment", json=appointment(2), headers=FHIR_JSON).json()
    for a in (appointment(30), appointment(3, status="cancelled"), appointment(-2), appointment(2, status="proposed")):
        assert requests.post(f"{base}/Appointment", json=a, headers=FHIR_JSON).status_code == 201

    wait_for(lambda: len(reminders(base)) >= 2, 30, "the reminders")
    time.sleep(2)   # several more sweeps: nothing is written twice
    found = reminders(base)
    assert sorted(c["recipient"][0]["reference"] for c in found) == ["Patient/p1", "Practitioner/dr1"]
    for c in found:
        Communication.parse_obj(c)
        assert c["about"] == [{"reference": f"Appointment/{soon['id']}"}]
        assert c["subject"] == {"reference": "Patient/p1"}
        assert c["status"] == "in-progress" and "received" not in c
        zh, en = (p["contentString"] for p in c["payload"])
        local = datetime.datetime.fromisoformat(soon["start"]).astimezone(datetime.timezone(datetime.timedelta(hours=8)))
        assert "高血压复诊" in zh and f"{local.hour:02d}:{local.minute:02d}" in zh, zh
        assert "appointment" in en

    # Delivered to the resident's subscription, with the Communication in it.
    def delivered():
        for b in receiver.bundles("/p1"):
            if value(status_of(b)["type"][0]) == "event-notification":
                return [e["resource"] for e in b["entry"][1:] if "resource" in e]
        return None
    wait_for(delivered, 30, "the reminder's notification")
    assert delivered()[0]["recipient"] == [{"reference": "Patient/p1"}]

    # The recipient marks it read; the unread list is then empty.
    mine = next(c for c in found if c["recipient"][0]["reference"] == "Patient/p1")
    mine["status"] = "completed"
    mine["received"] = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    r = requests.put(f"{base}/Communication/{mine['id']}", json=mine, headers=FHIR_JSON)
    assert r.status_code == 200, r.text
    assert reminders(base, "&recipient=Patient/p1&status=in-progress") == []
    assert len(reminders(base, "&recipient=Patient/p1&status=completed")) == 1

    # Moved an hour later: reminded again (the read reminder stays as it is).
    soon["start"], soon["end"] = at(3), at(3.5)
    assert requests.put(f"{base}/Appointment/{soon['id']}", json=soon, headers=FHIR_JSON).status_code == 200
    wait_for(lambda: len(reminders(base)) >= 4, 30, "the reminders of the moved appointment")
    time.sleep(1.5)
    assert len(reminders(base)) == 4
    assert len(reminders(base, "&recipient=Patient/p1&status=completed")) == 1
    receiver.stop()
