"""Document sharing (调阅) over IHE MHD on R4 (issue 29), on a real server with real tokens:
facility A provides a CDA discharge summary (ITI-65: a transaction of a SubmissionSet List, a
DocumentReference that leaves its subject and type to the CDA header, and the Binary); facility B,
treating the same resident under its own registration, finds it by the resident's master identity
(ITI-67 with `_mdm=true`) and retrieves the document (ITI-68); facility C, which treats nobody, and
B after the resident's Consent denies it, find and retrieve nothing. A replacement supersedes."""
import base64
import hashlib
import os
import sys

from fhir.resources.binary import Binary
from fhir.resources.bundle import Bundle
from fhir.resources.documentreference import DocumentReference
from fhir.resources.parameters import Parameters

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bench"))
from mhd_documents import CDA_CONTENT, cda, provide  # noqa: E402
from region import Region, patient, resident_id  # noqa: E402
from test_access_probe import consent  # noqa: E402

def created(response, type_):
    assert response.status_code == 200, response.text
    Bundle.parse_obj(response.json())
    return next(e["response"]["location"].split("/")[1] for e in response.json()["entry"]
                if e["response"]["location"].startswith(type_ + "/"))


def found(caller, query):
    r = caller.get("DocumentReference?" + query)
    assert r.status_code == 200, r.text
    Bundle.parse_obj(r.json())
    return sorted(e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match")


def summary(caller, path):
    """`$record-summary` as {facility: {type: [(id, time)]}}, checked as R4 Parameters."""
    r = caller.get(path)
    assert r.status_code == 200, r.text
    Parameters.parse_obj(r.json())
    out = {}
    for p in r.json()["parameter"]:
        if p["name"] != "facility":
            continue
        parts = {q["name"]: q for q in p["part"]}
        org = parts["organization"]["valueReference"]["reference"]
        records = out.setdefault(org, {})
        for period in (q for q in p["part"] if q["name"] == "period"):
            for rec in (q for q in period["part"] if q["name"] == "record"):
                fields = {f["name"]: f for f in rec["part"]}
                records.setdefault(fields["type"]["valueCode"], []).append(
                    (fields["reference"]["valueReference"]["reference"].split("/")[1], fields.get("time", {}).get("valueDateTime")))
    return out


def test_a_cda_document_is_shared_found_by_master_identity_and_retrieved_under_consent(tmp_path):
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
    region.b = region.client("乡镇卫生院 HIS", "facility-system", "system/*.cruds", "org-b")
    region.c = region.client("另一卫生院 HIS", "facility-system", "system/*.cruds", "org-c")
    region.admin = region.client("平台管理员", "administrator", "system/*.cruds")
    region.server.start()
    try:
        rid = resident_id("1966-06-06", 61)
        at_a = region.a.created("Patient", patient("钱", "琳", rid, "1966-06-06", "female"))
        at_b = region.b.created("Patient", patient("钱", "琳", rid, "1966-06-06", "female"))
        assert region.person_of(at_a) == region.person_of(at_b), "one resident, registered at A and at B"
        region.b.created("Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                       "subject": {"reference": f"Patient/{at_b}"}})

        # A provides the document; the CDA header fills what the DocumentReference left out.
        document = cda(rid, "DS-2026-0001")
        doc = created(region.a.post("", provide(document)), "DocumentReference")
        stored = region.a.get(f"DocumentReference/{doc}").json()
        DocumentReference.parse_obj(stored)
        assert stored["subject"]["reference"] == f"Patient/{at_a}", "the header's resident ID names A's own registration"
        assert stored["type"]["coding"][0]["system"] == "http://loinc.org" and stored["type"]["coding"][0]["code"] == "18842-5"
        assert stored["masterIdentifier"] == {"system": "urn:oid:2.16.156.10011.1.1", "value": "DS-2026-0001"}
        assert stored["date"] == "2026-12-01T09:30:00+08:00"
        assert stored["custodian"]["display"] == "县人民医院 & 病案室"
        assert [a.get("display") for a in stored["author"]] == ["县人民医院", "王医生"]
        attachment = stored["content"][0]["attachment"]
        assert attachment["size"] == len(document)
        assert attachment["hash"] == base64.b64encode(hashlib.sha1(document).digest()).decode()
        assert attachment["title"] == "出院小结"
        binary_id = attachment["url"].split("Binary/")[1]

        # B finds it by the resident's master identity, from its own registration, and reads it.
        assert found(region.b, f"patient=Patient/{at_b}") == [], "B's own registration has no documents"
        assert found(region.b, f"patient=Patient/{at_b}&_mdm=true") == [doc]
        assert found(region.b, f"patient=Patient/{at_b}&_mdm=true&status=current&type=http://loinc.org|18842-5") == [doc]
        assert found(region.b, f"patient=Patient/{at_b}&_mdm=true&type=http://loinc.org|11488-4") == []
        # ITI-67's other parameters: the date (from the header's effectiveTime), the author (the
        # header's organisation, by its identifier), the facility type and practice setting.
        mdm = f"patient=Patient/{at_b}&_mdm=true"
        assert found(region.b, f"{mdm}&date=ge2026-12-01&date=lt2026-12-02") == [doc]
        assert found(region.b, f"{mdm}&date=lt2026-12-01T09:00:00%2B08:00") == []
        assert found(region.b, f"{mdm}&author:identifier=urn:oid:2.16.156.10011.1.5|org-a") == [doc]
        assert found(region.b, f"{mdm}&author:identifier=urn:oid:2.16.156.10011.1.5|org-b") == []
        assert found(region.b, f"{mdm}&facility=http://snomed.info/sct|22232009&setting=http://snomed.info/sct|394802001") == [doc]
        assert found(region.b, f"{mdm}&facility=http://snomed.info/sct|35971002") == []
        raw = region.b.get(f"Binary/{binary_id}", headers={"Accept": CDA_CONTENT})
        assert raw.status_code == 200 and raw.headers["Content-Type"].startswith(CDA_CONTENT) and raw.content == document
        as_fhir = region.b.get(f"Binary/{binary_id}")
        assert as_fhir.status_code == 200, as_fhir.text
        Binary.parse_obj(as_fhir.json())
        assert base64.b64decode(as_fhir.json()["data"]) == document
        assert as_fhir.json()["securityContext"] == {"reference": f"Patient/{at_a}"}
        # The retrieval is audited like any read.
        trail = region.admin.get(f"AuditEvent?patient=Patient/{at_a}&_count=200").json().get("entry", [])
        reads = [e["resource"] for e in trail if any(en.get("what", {}).get("reference") == f"Binary/{binary_id}"
                                                     for en in e["resource"].get("entity", []))]
        assert reads, "B's read of the document is in the audit trail, under the resident"

        # The cross-facility view: B's summary of the resident groups A's document and B's own visit by facility.
        view = summary(region.b, f"Patient/{at_b}/$record-summary")
        assert view["Organization/org-a"] == {"DocumentReference": [(doc, "2026-12-01T09:30:00+08:00")]}
        assert list(view["Organization/org-b"]) == ["Encounter"]
        assert summary(region.b, f"Person/{region.person_of(at_a)}/$record-summary") == view
        assert region.c.get(f"Patient/{at_a}/$record-summary").status_code in (403, 404)

        # C treats nobody: finds nothing, reads nothing; nor does a Binary without a document name anyone for it.
        assert found(region.c, f"patient=Patient/{at_a}&_mdm=true") == []
        assert region.c.get(f"Binary/{binary_id}", headers={"Accept": CDA_CONTENT}).status_code in (403, 404)
        loose = region.a.created("Binary", {"resourceType": "Binary", "contentType": "text/plain",
                                            "data": base64.b64encode("病历".encode()).decode()})
        assert region.b.get(f"Binary/{loose}").status_code in (403, 404), "a Binary no document names is its facility's only"
        assert region.a.get(f"Binary/{loose}").status_code == 200

        # A document whose header names another resident than the subject it is filed under is refused, whole.
        other = region.a.created("Patient", patient("赵", "敏", resident_id("1970-01-01", 3), "1970-01-01", "female"))
        before = region.a.get("DocumentReference?_summary=count").json()["total"]
        wrong = region.a.post("", provide(cda(rid, "DS-2026-0002"), subject=f"Patient/{other}"))
        assert wrong.status_code == 422, wrong.text
        assert "recordTarget" in wrong.text and "subject" in wrong.json()["issue"][0]["expression"][0]
        assert region.a.get("DocumentReference?_summary=count").json()["total"] == before
        # Not a CDA document at all.
        broken = region.a.post("", provide(b"<ClinicalDocument><id root='1'></ClinicalDocument>"))
        assert broken.status_code == 400 and "CDA" in broken.text, broken.text

        # A replacement supersedes the old document, in the same write.
        newer = created(region.a.post("", provide(cda(rid, "DS-2026-0001-v2"), replaces=doc)), "DocumentReference")
        assert region.a.get(f"DocumentReference/{doc}").json()["status"] == "superseded"
        assert found(region.b, f"patient=Patient/{at_b}&_mdm=true&status=current") == [newer]
        assert found(region.b, f"patient=Patient/{at_b}&_mdm=true") == sorted([doc, newer])
        # Only the facility that shared a document replaces it.
        assert region.b.post("", provide(cda(rid, "DS-B"), replaces=newer, subject=f"Patient/{at_b}")).status_code == 403
        # A facility that may not read the document is told what it would be told of none at all.
        hidden = region.c.post("", provide(cda(rid, "DS-C"), replaces=newer, subject=f"Patient/{at_b}"))
        absent = region.c.post("", provide(cda(rid, "DS-C"), replaces="no-such-document", subject=f"Patient/{at_b}"))
        assert hidden.status_code == absent.status_code == 422
        assert hidden.json()["issue"][0]["diagnostics"].replace(newer, "X") == absent.json()["issue"][0]["diagnostics"].replace("no-such-document", "X")

        # The resident denies B: B finds and retrieves nothing any more.
        person = region.person_of(at_a)
        region.server.stop()
        account = region.user("resident61", "resident", "patient/*.rs patient/Consent.cu", patient=f"Person/{person}")
        region.server.start()
        resident = region.login("resident61", account)
        denied = resident.post("Consent", consent(at_a, {"type": "deny", "actor": [
            {"role": {"text": "recipient"}, "reference": {"reference": "Organization/org-b"}}]}))
        assert denied.status_code == 201, denied.text
        assert found(region.b, f"patient=Patient/{at_b}&_mdm=true") == []
        assert region.b.get(f"Binary/{binary_id}", headers={"Accept": CDA_CONTENT}).status_code in (403, 404)
        assert "Organization/org-a" not in summary(region.b, f"Patient/{at_b}/$record-summary")
        # The resident reads their own document.
        mine = resident.get(f"Binary/{binary_id}", headers={"Accept": CDA_CONTENT})
        assert mine.status_code == 200 and mine.content == document
    finally:
        region.server.stop()


def test_a_gb18030_cda_document_is_read_in_its_declared_encoding(tmp_path):
    """Hospital systems in China often write CDA in GB 18030 / GBK and say so in the XML
    declaration: the header fills the DocumentReference as for UTF-8, and the bytes are kept as sent."""
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 HIS", "facility-system", "system/*.cruds", "org-a")
    region.server.start()
    try:
        rid = resident_id("1970-03-03", 62)
        at_a = region.a.created("Patient", patient("孙", "丽", rid, "1970-03-03", "female"))
        document = cda(rid, "DS-GBK-0001").decode("utf-8").replace('encoding="UTF-8"', 'encoding="GBK"').encode("gb18030")
        doc = created(region.a.post("", provide(document)), "DocumentReference")
        stored = region.a.get(f"DocumentReference/{doc}").json()
        DocumentReference.parse_obj(stored)
        assert stored["subject"]["reference"] == f"Patient/{at_a}"
        assert stored["custodian"]["display"] == "县人民医院 & 病案室"
        assert stored["content"][0]["attachment"]["title"] == "出院小结"
        binary_id = stored["content"][0]["attachment"]["url"].split("Binary/")[1]
        assert region.a.get(f"Binary/{binary_id}", headers={"Accept": CDA_CONTENT}).content == document

        # Another encoding is refused by name, and nothing of the transaction is stored.
        latin = cda(rid, "DS-LATIN-0001").decode("utf-8").replace('encoding="UTF-8"', 'encoding="ISO-8859-5"').encode("utf-8")
        r = region.a.post("", provide(latin))
        assert r.status_code == 400, r.text
        assert "ISO-8859-5" in r.text
        assert found(region.a, f"patient=Patient/{at_a}") == [doc]
    finally:
        region.server.stop()
