"""Mutual recognition of test results (检查检验结果互认, issue 29; ADR 024), on a real server with
real tokens: a catalogue and QC passes loaded with `huitong sharing load-catalogue/load-qc`, results
HR-marked when facility A commits them, and facility B's `$recognizable-results` for a resident it
treats — recognisable, expired, not HR, out of scope; nothing of a sensitive result; nothing once
the resident's Consent denies B.
"""
import datetime
import os
import subprocess
import sys

import pytest
from fhir.resources.bundle import Bundle
from fhir.resources.communication import Communication
from fhir.resources.detectedissue import DetectedIssue
from fhir.resources.operationoutcome import OperationOutcome
from fhir.resources.task import Task

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))
from conftest import BINARY  # noqa: E402
from region import Caller, Region, patient, resident_id  # noqa: E402
from test_access_probe import consent  # noqa: E402

LOINC = "http://loinc.org"
MARK = "https://huitong.health/fhir/CodeSystem/recognition-mark"

# 20+ items as a region's spreadsheet has them (LOINC codes; imaging and function items too).
CATALOGUE = """system,code,display,category,validity_days,scope,price
http://loinc.org,718-7,血红蛋白 Haemoglobin,lab,30,province,5
http://loinc.org,1742-6,丙氨酸氨基转移酶 ALT,lab,30,province,6
http://loinc.org,2160-0,肌酐 Creatinine,lab,30,city,6
http://loinc.org,4548-4,糖化血红蛋白 HbA1c,lab,90,province,60
http://loinc.org,2345-7,葡萄糖 Glucose,lab,7,province,4
http://loinc.org,1920-8,天门冬氨酸氨基转移酶 AST,lab,30,province,6
http://loinc.org,1975-2,总胆红素 Total bilirubin,lab,30,province,5
http://loinc.org,3094-0,尿素氮 Urea nitrogen,lab,30,province,5
http://loinc.org,2823-3,钾 Potassium,lab,7,province,4
http://loinc.org,2951-2,钠 Sodium,lab,7,province,4
http://loinc.org,6690-2,白细胞计数 WBC,lab,7,province,3
http://loinc.org,777-3,血小板计数 Platelets,lab,7,province,3
http://loinc.org,3016-3,促甲状腺激素 TSH,lab,90,province,30
http://loinc.org,1988-5,C反应蛋白 CRP,lab,7,province,20
http://loinc.org,5196-1,乙肝表面抗原 HBsAg,lab,180,national,15
http://loinc.org,7917-8,HIV抗体 HIV 1 Ab,lab,30,province,40
http://loinc.org,24627-2,胸部CT Chest CT,imaging,180,province,300
http://loinc.org,24558-9,腹部超声 Abdominal ultrasound,imaging,90,province,120
http://loinc.org,24725-4,头颅CT Head CT,imaging,180,province,300
http://loinc.org,11524-6,心电图 ECG,function,30,city,25
"""


def day(offset):
    return (datetime.date.today() + datetime.timedelta(days=offset)).isoformat()


def at(days_ago):
    t = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))) - datetime.timedelta(days=days_ago)
    return t.replace(microsecond=0).isoformat()


def result(subject, code, days_ago, value_concept=None):
    o = {"resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{subject}"},
         "code": {"coding": [{"system": LOINC, "code": code}]}, "effectiveDateTime": at(days_ago)}
    if value_concept:
        o["valueCodeableConcept"] = {"coding": [{"system": "http://snomed.info/sct", "code": value_concept}]}
    else:
        o["valueQuantity"] = {"value": 130, "unit": "g/L"}
    return o


def recognizable(caller, patient_id, code):
    r = caller.get(f"Patient/{patient_id}/$recognizable-results?code={LOINC}|{code}")
    assert r.status_code == 200, r.text
    bundle = r.json()
    Bundle.parse_obj(bundle)
    matches = [e for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]
    outcomes = [e for e in bundle.get("entry", []) if e["search"]["mode"] == "outcome"]
    return matches, outcomes


def reasons(outcomes):
    return sorted((o["resource"]["issue"][0]["diagnostics"].split("/")[1], o["resource"]["issue"][0]["details"]["coding"][0]["code"])
                  for o in outcomes)


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def test_catalogue_and_qc_lists_are_checked_row_by_row(tmp_path):
    tmp = str(tmp_path)
    bad = CATALOGUE + "http://loinc.org,999-9,坏行,lab,thirty,province,5\nhttp://loinc.org,718-7,重复,lab,30,planet,5\n"
    run = subprocess.run([BINARY, "sharing", "load-catalogue", write(tmp, "bad.csv", bad), "--data", tmp], capture_output=True, text=True)
    assert run.returncode == 1
    assert "line 22" in run.stderr and "validity_days" in run.stderr, run.stderr
    assert "line 23" in run.stderr and "scope" in run.stderr and "on line 2 already" in run.stderr, run.stderr
    assert "nothing loaded" in run.stderr
    # Nothing half-loaded: a QC list naming a catalogue item is refused, since there is no catalogue.
    qc = write(tmp, "qc.csv", "facility,system,code,scope,valid_from,valid_to\norg-a,http://loinc.org,718-7,national,2026-01-01,2026-12-31\n")
    run = subprocess.run([BINARY, "sharing", "load-qc", qc, "--data", tmp], capture_output=True, text=True)
    assert run.returncode == 1 and "not in the catalogue" in run.stderr, run.stderr
    # The good file loads; again, it changes nothing.
    good = write(tmp, "catalogue.csv", CATALOGUE)
    out = subprocess.run([BINARY, "sharing", "load-catalogue", good, "--data", tmp], capture_output=True, text=True, check=True).stdout
    assert "the catalogue has 20 items" in out and "unchanged" not in out
    out = subprocess.run([BINARY, "sharing", "load-catalogue", good, "--data", tmp], capture_output=True, text=True, check=True).stdout
    assert "unchanged" in out
    bad_qc = write(tmp, "bad-qc.csv", "facility,system,code,scope,valid_from,valid_to\norg-a,http://loinc.org,718-7,national,2026-12-31,2026-01-01\n")
    run = subprocess.run([BINARY, "sharing", "load-qc", bad_qc, "--data", tmp], capture_output=True, text=True)
    assert run.returncode == 1 and "line 2" in run.stderr and "after valid_to" in run.stderr, run.stderr
    out = subprocess.run([BINARY, "sharing", "load-qc", qc, "--data", tmp], capture_output=True, text=True, check=True).stdout
    assert "1 QC passes loaded" in out
    # A second pass for org-a, then org-a's whole list again with --replace: the second is removed.
    more = write(tmp, "more-qc.csv", "facility,system,code,scope,valid_from,valid_to\norg-a,http://loinc.org,2160-0,city,2026-01-01,2026-12-31\n")
    subprocess.run([BINARY, "sharing", "load-qc", more, "--data", tmp], capture_output=True, text=True, check=True)
    out = subprocess.run([BINARY, "sharing", "load-qc", qc, "--replace", "--data", tmp], capture_output=True, text=True, check=True).stdout
    assert "1 QC passes loaded, 1 removed" in out, out
    out = subprocess.run([BINARY, "sharing", "load-qc", qc, "--replace", "--data", tmp], capture_output=True, text=True, check=True).stdout
    assert "1 QC passes loaded, 0 removed" in out, out


def test_recognizable_results_for_the_ordering_facility(tmp_path):
    region = Region(str(tmp_path), "sqlite")
    tmp = str(tmp_path)
    region.cli("sharing", "load-catalogue", write(tmp, "catalogue.csv", CATALOGUE))
    # A passed the haemoglobin, creatinine and HIV QC for the year; the ALT QC only since five days ago.
    region.cli("sharing", "load-qc", write(tmp, "qc.csv", "facility,system,code,scope,valid_from,valid_to\n"
                                           f"org-a,{LOINC},718-7,national,{day(-200)},{day(165)}\n"
                                           f"org-a,{LOINC},2160-0,national,{day(-200)},{day(165)}\n"
                                           f"org-a,{LOINC},7917-8,national,{day(-200)},{day(165)}\n"
                                           f"org-a,{LOINC},1742-6,national,{day(-5)},{day(360)}\n"
                                           f"org-a,{LOINC},24627-2,province,{day(-200)},{day(165)}\n"))
    region.a = region.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
    region.b = region.client("乡镇卫生院 HIS", "facility-system", "system/*.cruds", "org-b")
    region.admin = region.client("平台管理员", "administrator", "system/*.cruds")
    region.server.start()
    try:
        # A is in 成都, B in 绵阳: the same province, another city.
        for org, city in (("org-a", "成都市"), ("org-b", "绵阳市")):
            r = region.admin.put(f"Organization/{org}", {"resourceType": "Organization", "id": org, "name": org,
                                                          "address": [{"city": city, "state": "四川省"}]})
            assert r.status_code in (200, 201), r.text
        rid = resident_id("1966-06-06", 61)
        p = region.a.created("Patient", patient("钱", "琳", rid, "1966-06-06", "female"))
        region.b.created("Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                       "subject": {"reference": f"Patient/{p}"}})
        recent = region.a.post("Observation", result(p, "718-7", 10))
        assert recent.status_code == 201, recent.text
        tags = [t for t in recent.json()["meta"].get("tag", []) if t["system"] == MARK]
        assert [t["code"] for t in tags] == ["HR-province"], "national QC pass, province item: marked at the province"
        recent = recent.json()["id"]
        old = region.a.created("Observation", result(p, "718-7", 40))
        alt = region.a.created("Observation", result(p, "1742-6", 10))
        creatinine = region.a.created("Observation", result(p, "2160-0", 3))
        hiv = region.a.created("Observation", result(p, "7917-8", 5, value_concept="10828004"))
        # A client cannot forge the mark.
        forged = result(p, "4548-4", 1)
        forged["meta"] = {"tag": [{"system": MARK, "code": "HR-national"}]}
        forged = region.a.post("Observation", forged).json()
        assert not [t for t in forged["meta"].get("tag", []) if t["system"] == MARK]

        # Nor borrow one by naming a marked result's id in a create's body.
        borrowed = result(p, "4548-4", 1)
        borrowed["id"] = recent
        borrowed = region.a.post("Observation", borrowed).json()
        assert borrowed["id"] != recent and not [t for t in borrowed["meta"].get("tag", []) if t["system"] == MARK]

        matches, outcomes = recognizable(region.b, p, "718-7")
        assert [m["resource"]["id"] for m in matches] == [recent]
        ext = {e["url"].rsplit("/", 1)[1]: next(v for k, v in e.items() if k.startswith("value")) for e in matches[0]["search"]["extension"]}
        assert ext == {"recognition-scope": "province", "recognition-days-left": 20}
        assert reasons(outcomes) == [(old, "expired")]
        matches, outcomes = recognizable(region.b, p, "1742-6")
        assert matches == [] and reasons(outcomes) == [(alt, "not-hr")], "no QC pass when it was done, though A passes now"
        matches, outcomes = recognizable(region.b, p, "2160-0")
        assert matches == [] and reasons(outcomes) == [(creatinine, "out-of-scope")], "a city item reaches no other city"
        # A sensitive result (a positive HIV test): B sees neither it nor a hint of it.
        assert region.b.get(f"Observation/{hiv}").status_code == 403
        matches, outcomes = recognizable(region.b, p, "7917-8")
        assert matches == [] and outcomes == []
        # An imaging item done as an ImagingStudy (chest CT, 20 days ago, 180-day window).
        study = region.a.post("ImagingStudy", {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{p}"},
                                               "started": at(20), "procedureCode": [{"coding": [{"system": LOINC, "code": "24627-2"}]}]})
        assert study.status_code == 201, study.text
        assert [t["code"] for t in study.json()["meta"]["tag"] if t["system"] == MARK] == ["HR-province"]
        matches, outcomes = recognizable(region.b, p, "24627-2")
        assert [m["resource"]["id"] for m in matches] == [study.json()["id"]] and outcomes == []
        # The producing facility itself recognises its own city item.
        matches, _ = recognizable(region.a, p, "2160-0")
        assert [m["resource"]["id"] for m in matches] == [creatinine]
        # Not an item of the catalogue; not a facility.
        assert region.b.get(f"Patient/{p}/$recognizable-results?code={LOINC}|0000-0").status_code == 400
        assert region.admin.get(f"Patient/{p}/$recognizable-results?code={LOINC}|718-7").status_code == 400
        # POST with the ServiceRequest being ordered.
        order = {"resourceType": "ServiceRequest", "status": "active", "intent": "order", "subject": {"reference": f"Patient/{p}"},
                 "code": {"coding": [{"system": LOINC, "code": "718-7"}]}}
        r = region.b.post(f"Patient/{p}/$recognizable-results", order)
        assert r.status_code == 200, r.text
        Bundle.parse_obj(r.json())
        assert [e["resource"]["id"] for e in r.json()["entry"] if e["search"]["mode"] == "match"] == [recent]

        # B orders haemoglobin: the order stands, with a warning in the response, a DetectedIssue
        # implicating it and the prior result, and a reminder to the orderer.
        order["requester"] = {"reference": "Practitioner/dr-b"}
        r = region.b.post("ServiceRequest", order, headers={"Prefer": "return=OperationOutcome"})
        assert r.status_code == 201, r.text
        OperationOutcome.parse_obj(r.json())
        warnings = [i for i in r.json()["issue"] if i["severity"] == "warning"]
        assert len(warnings) == 1 and f"Observation/{recent}" in warnings[0]["diagnostics"], r.text
        ordered = r.headers["Location"].split("/ServiceRequest/")[1].split("/")[0]
        issues = region.b.get(f"DetectedIssue?patient=Patient/{p}").json().get("entry", [])
        assert len(issues) == 1
        DetectedIssue.parse_obj(issues[0]["resource"])
        assert issues[0]["resource"]["meta"]["source"] == "urn:huitong:facility:org-b", "raised for the ordering facility"
        implicated = [i["reference"] for i in issues[0]["resource"]["implicated"]]
        assert implicated == [f"ServiceRequest/{ordered}", f"Observation/{recent}"]
        reminders = region.b.get("Communication?recipient=Practitioner/dr-b").json().get("entry", [])
        assert len(reminders) == 1 and reminders[0]["resource"]["category"][0]["coding"][0]["code"] == "duplicate-test"
        Communication.parse_obj(reminders[0]["resource"])
        # An order with nothing to recognise (ALT: not HR) gets no warning and raises nothing.
        alt_order = dict(order, code={"coding": [{"system": LOINC, "code": "1742-6"}]})
        r = region.b.post("ServiceRequest", alt_order, headers={"Prefer": "return=OperationOutcome"})
        assert r.status_code == 201 and not [i for i in r.json()["issue"] if i["severity"] == "warning"], r.text
        assert len(region.b.get(f"DetectedIssue?patient=Patient/{p}").json().get("entry", [])) == 1

        # The decisions: the first order re-tested because the patient did not bring the result (not a
        # refusal); a second order recognised; a third re-tested before surgery (a refusal).
        # A fourth, ordered from B's cardiology department (its PractitionerRole's organization), is
        # re-tested for continuous monitoring: not a refusal either, and counted for that department.
        r = region.admin.put("Organization/org-b-cardiology", {"resourceType": "Organization", "id": "org-b-cardiology", "name": "心内科",
                                                               "partOf": {"reference": "Organization/org-b"}})
        assert r.status_code in (200, 201), r.text
        cardiologist = region.b.created("PractitionerRole", {"resourceType": "PractitionerRole", "practitioner": {"reference": "Practitioner/dr-c"},
                                                              "organization": {"reference": "Organization/org-b-cardiology"}})
        decisions = {}
        for reason, prior in (("not-available", None), ("recognised", recent), ("major-treatment", None), ("continuous-monitoring", None)):
            if reason != "not-available":
                requester = {"reference": f"PractitionerRole/{cardiologist}"} if reason == "continuous-monitoring" else order["requester"]
                r = region.b.post("ServiceRequest", dict(order, requester=requester), headers={"Prefer": "return=OperationOutcome"})
                assert r.status_code == 201 and [i for i in r.json()["issue"] if i["severity"] == "warning"], r.text
                ordered = r.headers["Location"].split("/ServiceRequest/")[1].split("/")[0]
            task = {"resourceType": "Task", "status": "completed", "intent": "order",
                    "code": {"coding": [{"system": "https://huitong.health/fhir/CodeSystem/recognition-outcome", "code": "decision"}]},
                    "focus": {"reference": f"ServiceRequest/{ordered}"},
                    "statusReason": {"coding": [{"system": "https://huitong.health/fhir/CodeSystem/recognition-decision", "code": reason}]}}
            if prior:
                task["input"] = [{"type": {"text": "prior-result"}, "valueReference": {"reference": f"Observation/{prior}"}}]
            r = region.b.post("Task", task)
            assert r.status_code == 201, r.text
            assert r.json()["for"] == {"reference": f"Patient/{p}"} and "authoredOn" in r.json()
            Task.parse_obj(r.json())
            decisions[reason] = r.json()["id"]
        # Another facility cannot decide B's order (nor so add to B's statistics).
        r = region.a.post("Task", task)
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Task.focus"], r.text
        # A decision without its reason, or recognised without the result, is refused where it is wrong.
        bad = dict(task, statusReason={"text": "复查"})
        r = region.b.post("Task", bad)
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Task.statusReason"], r.text
        OperationOutcome.parse_obj(r.json())
        bad = dict(task, statusReason={"coding": [{"system": "https://huitong.health/fhir/CodeSystem/recognition-decision", "code": "recognised"}]})
        bad.pop("input", None)
        r = region.b.post("Task", bad)
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Task.input"], r.text
        # Statistics for this month, B's: three orders with a recognisable result, one recognised
        # (5 yuan avoided), two re-tested, one refusal (the not-available one is not).
        # The month as the region counts it: Beijing time.
        month = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))).strftime("%Y-%m")
        r = region.b.get(f"$recognition-statistics?month={month}")
        assert r.status_code == 200, r.text
        from fhir.resources.measurereport import MeasureReport
        MeasureReport.parse_obj(r.json())
        groups = {g["code"]["text"].split(" / ")[1]: g for g in r.json()["group"]}
        assert sorted(groups) == ["-", "org-b-cardiology"] and all(g["code"]["coding"][0]["code"] == "718-7" for g in groups.values())
        counts = {pop["code"]["coding"][0]["code"]: pop["count"] for pop in groups["-"]["population"]}
        assert (counts["recognisable-orders"], counts["recognised"], counts["retested"], counts["refusals"]) == (3, 1, 2, 1), counts
        assert counts["retested:not-available"] == 1 and counts["retested:major-treatment"] == 1
        assert groups["-"]["measureScore"]["value"] == 5
        counts = {pop["code"]["coding"][0]["code"]: pop["count"] for pop in groups["org-b-cardiology"]["population"]}
        assert (counts["recognisable-orders"], counts["recognised"], counts["retested"], counts["refusals"]) == (1, 0, 1, 0), counts
        assert counts["retested:continuous-monitoring"] == 1 and groups["org-b-cardiology"]["measureScore"]["value"] == 0
        csv = region.b.get(f"$recognition-statistics?month={month}&_format=csv")
        assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv"), csv.text
        header, *lines = csv.text.strip().splitlines()
        rows = {row["department"]: row for row in (dict(zip(header.split(","), line.split(","))) for line in lines)}
        row = rows["-"]
        assert (row["facility"], row["code"], row["recognisable_orders"], row["refusals"], row["avoided_cost"]) == ("org-b", "718-7", "3", "1", "5")
        row = rows["org-b-cardiology"]
        assert (row["recognisable_orders"], row["retested_continuous-monitoring"], row["refusals"]) == ("1", "1", "0"), row
        # A facility sees only its own; A has none.
        assert region.b.get(f"$recognition-statistics?month={month}&facility=org-a").status_code == 403
        assert region.a.get(f"$recognition-statistics?month={month}").json().get("group", []) == []

        # In a transaction or a batch, the order's entry carries the warning as its outcome.
        for kind in ("transaction", "batch"):
            r = region.b.post("", {"resourceType": "Bundle", "type": kind,
                                   "entry": [{"resource": order, "request": {"method": "POST", "url": "ServiceRequest"}}]})
            assert r.status_code == 200, r.text
            Bundle.parse_obj(r.json())
            outcome = r.json()["entry"][0]["response"]["outcome"]
            assert outcome["issue"][0]["severity"] == "warning" and f"Observation/{recent}" in outcome["issue"][0]["diagnostics"], kind

        # A marked result whose item changes is judged anew (HbA1c: A has no pass): no mark is carried over.
        laundered = region.a.post("Observation", result(p, "718-7", 2)).json()
        assert [t["code"] for t in laundered["meta"]["tag"] if t["system"] == MARK] == ["HR-province"]
        laundered["code"] = {"coding": [{"system": LOINC, "code": "4548-4"}]}
        laundered = region.a.put(f"Observation/{laundered['id']}", laundered).json()
        assert not [t for t in laundered["meta"].get("tag", []) if t["system"] == MARK]
        # A result dated in the future gets no more than the item's window.
        future = region.a.created("Observation", result(p, "718-7", -20))
        matches, _ = recognizable(region.b, p, "718-7")
        days = {m["resource"]["id"]: next(e["valueInteger"] for e in m["search"]["extension"] if e["url"].endswith("days-left")) for m in matches}
        assert days[future] == 30 and days[recent] == 20, days

        # The resident's Consent denies B: nothing, and no hint.
        person = region.admin.get(f"Person?link=Patient/{p}").json()["entry"][0]["resource"]["id"]
        region.server.stop()
        account = region.user("resident61", "resident", "patient/*.rs patient/Consent.cu", patient=f"Person/{person}")
        region.server.start()
        resident = region.login("resident61", account)
        # The resident opts B in to the HIV category: B now gets the sensitive result back.
        opted = resident.post("Consent", consent(p, {"type": "permit", "actor": [
            {"role": {"text": "recipient"}, "reference": {"reference": "Organization/org-b"}}],
            "securityLabel": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]}))
        assert opted.status_code == 201, opted.text
        matches, outcomes = recognizable(region.b, p, "7917-8")
        assert [m["resource"]["id"] for m in matches] == [hiv] and outcomes == []
        denied = resident.post("Consent", consent(p, {"type": "deny", "actor": [
            {"role": {"text": "recipient"}, "reference": {"reference": "Organization/org-b"}}]}))
        assert denied.status_code == 201, denied.text
        for code in ("718-7", "1742-6", "2160-0", "7917-8"):
            assert recognizable(region.b, p, code) == ([], []), code
        r = region.b.post("ServiceRequest", order, headers={"Prefer": "return=OperationOutcome"})
        assert r.status_code == 201 and not [i for i in r.json()["issue"] if i["severity"] == "warning"], "no hint in the order's answer"
    finally:
        region.server.stop()


def test_the_lists_are_managed_on_a_running_server(tmp_path):
    """While a server runs its embedded store is its own (`huitong sharing load-*` cannot open it):
    the same lists are loaded over FHIR by administrators, checked the same way, and take effect
    on the next results; the catalogue is also edited as its CodeSystem."""
    from fhir.resources.parameters import Parameters
    import time

    def csv(text):
        return {"resourceType": "Parameters", "parameter": [{"name": "csv", "valueString": text}]}

    def passes(caller, query=""):
        r = caller.get(f"$qc-passes{query}")
        assert r.status_code == 200, r.text
        Parameters.parse_obj(r.json())
        return [{part["name"]: next(v for k, v in part.items() if k.startswith("value")) for part in p["part"]}
                for p in r.json().get("parameter", [])]

    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
    region.admin = region.client("平台管理员", "administrator", "system/*.cruds")
    region.server.start()
    try:
        r = region.admin.put("Organization/org-a", {"resourceType": "Organization", "id": "org-a", "name": "org-a",
                                                    "address": [{"city": "成都市", "state": "四川省"}]})
        assert r.status_code in (200, 201), r.text
        p = region.a.created("Patient", patient("孙", "悦", resident_id("1971-03-03", 62), "1971-03-03", "female"))
        # Administrators load the catalogue; a facility may not; the same file again changes nothing.
        assert region.a.post("$load-catalogue", csv(CATALOGUE)).status_code == 403
        r = region.admin.post("$load-catalogue", csv(CATALOGUE))
        assert r.status_code == 200, r.text
        OperationOutcome.parse_obj(r.json())
        assert "the catalogue has 20 items" in r.json()["issue"][0]["diagnostics"]
        assert "unchanged" in region.admin.post("$load-catalogue", csv(CATALOGUE)).json()["issue"][0]["diagnostics"]
        # A QC list with bad rows: each named by its line, nothing loaded.
        bad = ("facility,system,code,scope,valid_from,valid_to\n"
               f"org-a,{LOINC},718-7,national,{day(-10)},{day(300)}\n"
               f"org-a,{LOINC},0000-0,national,{day(-10)},{day(300)}\n"
               f"org-a,{LOINC},2160-0,planet,{day(-10)},{day(300)}\n")
        r = region.admin.post("$load-qc", csv(bad))
        assert r.status_code == 400, r.text
        OperationOutcome.parse_obj(r.json())
        text = " ".join(i["diagnostics"] for i in r.json()["issue"])
        assert "line 3" in text and "not in the catalogue" in text and "line 4" in text and "scope" in text, text
        assert "line 2" not in text, text
        assert passes(region.admin) == []
        # A result before any pass: not marked.
        assert not [t for t in region.a.post("Observation", result(p, "718-7", 1)).json()["meta"].get("tag", []) if t["system"] == MARK]
        good = "facility,system,code,scope,valid_from,valid_to\n" + f"org-a,{LOINC},718-7,national,{day(-10)},{day(300)}\n"
        assert region.a.post("$load-qc", csv(good)).status_code == 403
        assert region.admin.post("$load-qc", {"resourceType": "Parameters"}).status_code == 400
        for _ in range(2):
            r = region.admin.post("$load-qc", csv(good))
            assert r.status_code == 200 and "1 QC passes loaded" in r.json()["issue"][0]["diagnostics"], r.text
        listed = [{"facility": "org-a", "system": LOINC, "code": "718-7", "scope": "national", "valid_from": day(-10), "valid_to": day(300)}]
        assert passes(region.admin) == listed, "loaded once, however often sent"
        assert passes(region.a, "?facility=org-a") == listed and passes(region.a, "?facility=org-b") == []
        # The stamping sees the pass within its two seconds.
        time.sleep(2.5)
        marked = region.a.post("Observation", result(p, "718-7", 1)).json()
        assert [t["code"] for t in marked["meta"]["tag"] if t["system"] == MARK] == ["HR-province"]

        # The catalogue edited as its CodeSystem: an item added with the properties of the CSV's names.
        catalogue = region.admin.get("CodeSystem/recognition-items").json()
        concept = next(c for c in catalogue["concept"] if c["code"] == f"{LOINC}|718-7")
        added = {"code": f"{LOINC}|2093-3", "display": "总胆固醇 Cholesterol",
                 "property": [dict(pr, **({"valueString": "2093-3"} if pr["code"] == "code" else {})) for pr in concept["property"]]}
        catalogue["concept"].append(added)
        catalogue.pop("count", None)
        assert region.a.put("CodeSystem/recognition-items", catalogue).status_code == 403
        r = region.admin.put("CodeSystem/recognition-items", catalogue)
        assert r.status_code == 200, r.text
        # The new item now takes a QC pass, and its results are marked.
        r = region.admin.post("$load-qc", csv("facility,system,code,scope,valid_from,valid_to\n"
                                              f"org-a,{LOINC},2093-3,city,{day(-10)},{day(300)}\n"))
        assert r.status_code == 200, r.text
        time.sleep(2.5)
        marked = region.a.post("Observation", result(p, "2093-3", 1)).json()
        assert [t["code"] for t in marked["meta"]["tag"] if t["system"] == MARK] == ["HR-city"], "the item's own scope, narrower than the pass"
        # The region republishes org-a's whole list without the cholesterol pass: it is removed; the
        # result it marked keeps its mark.
        assert region.admin.post("$load-qc", dict(csv(good), parameter=csv(good)["parameter"] + [{"name": "replace", "valueString": "yes"}])).status_code == 400
        r = region.admin.post("$load-qc", dict(csv(good), parameter=csv(good)["parameter"] + [{"name": "replace", "valueBoolean": True}]))
        assert r.status_code == 200 and "1 QC passes loaded, 1 removed" in r.json()["issue"][0]["diagnostics"], r.text
        assert passes(region.admin) == listed
        assert [t["code"] for t in region.a.get(f"Observation/{marked['id']}").json()["meta"]["tag"] if t["system"] == MARK] == ["HR-city"]
    finally:
        region.server.stop()
