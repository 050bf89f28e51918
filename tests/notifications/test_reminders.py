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


def test_a_resident_marks_their_reminder_read_and_nothing_else(tmp_path):
    """With a real resident token: the resident reads their reminder and marks it read (status, received);
    changing its text, or marking the doctor's reminder about them read, is refused."""
    import os
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))
    from region import Region, patient, resident_id

    region = Region(str(tmp_path), "sqlite")
    region.server.start_args += ["--reminder-interval", "0.5"]
    region.a = region.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
    region.admin = region.client("平台管理员", "administrator", "system/*.cruds")
    region.server.start()
    try:
        p = region.a.created("Patient", patient("孙", "悦", resident_id("1970-02-02", 51), "1970-02-02", "female"))
        visit = appointment(2)
        visit["participant"][0]["actor"]["reference"] = f"Patient/{p}"
        region.a.created("Appointment", visit)
        wait_for(lambda: len(region.admin.get(f"Communication?subject=Patient/{p}").json().get("entry", [])) == 2, 30, "the reminders")
        person = region.admin.get(f"Person?link=Patient/{p}").json()["entry"][0]["resource"]["id"]
        region.server.stop()
        account = region.user("resident51", "resident", "patient/*.rs patient/Communication.u", patient=f"Person/{person}")
        region.server.start()
        p2 = region.a.created("Patient", patient("李", "娜", resident_id("1985-03-03", 21), "1985-03-03", "female"))
        person2 = region.admin.get(f"Person?link=Patient/{p2}").json()["entry"][0]["resource"]["id"]
        region.server.stop()
        account2 = region.user("resident21", "resident", "patient/*.rs patient/Communication.u", patient=f"Person/{person2}")
        region.server.start()
        resident = region.login("resident51", account)
        other_resident = region.login("resident21", account2)
        mine = resident.get(f"Communication?recipient=Patient/{p}").json()["entry"][0]["resource"]
        doctors = resident.get("Communication?recipient=Practitioner/dr1").json()["entry"][0]["resource"]
        changed = dict(mine, payload=[{"contentString": "改过的内容"}], status="completed")
        assert resident.put(f"Communication/{mine['id']}", changed).status_code == 403
        assert resident.put(f"Communication/{doctors['id']}", dict(doctors, status="completed")).status_code == 403
        # Another resident learns nothing of it (second probe, F3: the comparison with the stored
        # message ran before the check that it was theirs, so a right guess of its text got another
        # answer than a wrong one).
        other = resident.get(f"Communication/{mine['id']}").json()
        answers = [other_resident.put(f"Communication/{mine['id']}", body)
                   for body in (dict(other, status="completed"), dict(other, status="completed", payload=[{"contentString": "猜的内容"}]))]
        assert [a.status_code for a in answers] == [403, 403]
        assert answers[0].json()["issue"][0]["diagnostics"] == answers[1].json()["issue"][0]["diagnostics"], [a.text for a in answers]
        read = dict(mine, status="completed", received=at(0))
        r = resident.put(f"Communication/{mine['id']}", read)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "completed" and r.json()["payload"] == mine["payload"]
        # Still nothing else: a resident creates no Communication.
        assert resident.post("Communication", dict(mine, id=None)).status_code == 403
        # A message with a document attached (sealed at rest, ADR 027) is marked read the same way.
        import base64
        report = base64.b64encode("%PDF-1.7 检查报告".encode()).decode()
        with_report = region.a.created("Communication", {
            "resourceType": "Communication", "status": "in-progress", "subject": {"reference": f"Patient/{p}"},
            "recipient": [{"reference": f"Patient/{p}"}],
            "payload": [{"contentAttachment": {"contentType": "application/pdf", "data": report, "title": "检查报告"}}]})
        got = resident.get(f"Communication/{with_report}").json()
        assert got["payload"][0]["contentAttachment"]["data"] == report
        r = resident.put(f"Communication/{with_report}", dict(got, status="completed", received=at(0)))
        assert r.status_code == 200, r.text
        assert r.json()["payload"][0]["contentAttachment"]["data"] == report
    finally:
        region.server.stop()
