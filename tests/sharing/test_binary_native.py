"""Binaries in their own content type (http://hl7.org/fhir/R4/http.html#binary; issue 29), on a
real server with real tokens: a facility POSTs a scanned report as `application/pdf` with
`X-Security-Context`, and PUTs a new version as XML; the server makes the Binary from the header
and the bytes. Reads in the document's own type give back the exact bytes, with their length,
decoded straight from the stored form, also when the stored base64 holds line breaks; the same
Binary read as FHIR is valid R4. At rest, no file holds a
document in clear. Access is that of the resident the security context names. Bodies a browser sends cross-site and bad security contexts
are refused, and nothing is stored."""
import base64
import os
import sys

from fhir.resources.binary import Binary
from fhir.resources.operationoutcome import OperationOutcome

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))
from region import Region, patient, resident_id  # noqa: E402


def count(caller, query):
    r = caller.get(query + ("&" if "?" in query else "?") + "_summary=count")
    assert r.status_code == 200, r.text
    return r.json()["total"]


def region_with_a_resident(tmp_path, rid, family, given, birth, gender):
    """A region of A (the writer, and A's document system that may not change Binaries), B
    (treating the same resident under its own registration) and C (treating nobody), started; the
    resident's Patient ids at A and at B."""
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 PACS", "facility-system", "system/*.cruds", "org-a")
    region.b = region.client("乡镇卫生院 HIS", "facility-system", "system/*.cruds", "org-b")
    region.c = region.client("另一卫生院 HIS", "facility-system", "system/*.cruds", "org-c")
    # A's document system, which may create Binaries but not change them.
    region.a_documents = region.client("县人民医院 文档", "facility-system",
                                       "system/DocumentReference.cruds system/Binary.cr system/Patient.rs", "org-a")
    region.server.start()
    at_a = region.a.created("Patient", patient(family, given, rid, birth, gender))
    at_b = region.b.created("Patient", patient(family, given, rid, birth, gender))
    region.b.created("Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                   "subject": {"reference": f"Patient/{at_b}"}})
    return region, at_a, at_b


def test_a_document_posted_in_its_own_type_is_stored_and_read_back(tmp_path):
    region, at_a, at_b = region_with_a_resident(tmp_path, resident_id("1958-03-08", 27), "孙", "兰", "1958-03-08", "female")
    try:

        # A 12 MB scan: a content file in the store (ADR 025).
        document = b"%PDF-1.7\n" + os.urandom(12 * 1024 * 1024 + 5)
        posted = region.a.post("Binary", document, headers={"Content-Type": "application/pdf",
                                                            "X-Security-Context": f"Patient/{at_a}",
                                                            "Prefer": "return=minimal"})
        assert posted.status_code == 201, posted.text
        assert posted.content == b"", "Prefer: return=minimal"
        binary_id = posted.headers["Location"].split("Binary/")[1].split("/")[0]

        raw = region.a.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
        assert raw.status_code == 200, raw.text
        assert raw.headers["Content-Type"] == "application/pdf"
        assert int(raw.headers["Content-Length"]) == len(document)
        assert raw.headers["ETag"] == 'W/"1"'
        assert raw.content == document
        assert raw.headers["Content-Security-Policy"].startswith("sandbox"), "a stored document runs no script in the platform's origin"

        as_fhir = region.a.get(f"Binary/{binary_id}")
        assert as_fhir.status_code == 200, as_fhir.text
        Binary.parse_obj(as_fhir.json())
        assert as_fhir.json()["contentType"] == "application/pdf"
        assert as_fhir.json()["securityContext"] == {"reference": f"Patient/{at_a}"}
        assert base64.b64decode(as_fhir.json()["data"]) == document

        # B treats the same resident: it reads the scan; C treats nobody: it does not.
        from_b = region.b.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
        assert from_b.status_code == 200 and from_b.content == document
        assert region.c.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"}).status_code in (403, 404)

        # A new version in another type, by PUT: its own bytes and type, version 2.
        report = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><report>胸部CT：未见明显异常</report>".encode()
        put = region.a.put(f"Binary/{binary_id}", report, headers={"Content-Type": "text/xml;charset=UTF-8",
                                                                  "X-Security-Context": f"Patient/{at_a}"})
        assert put.status_code == 200, put.text
        Binary.parse_obj(put.json())
        assert put.json()["meta"]["versionId"] == "2" and put.json()["contentType"] == "text/xml; charset=UTF-8"
        now = region.a.get(f"Binary/{binary_id}", headers={"Accept": "text/xml"})
        assert now.status_code == 200 and now.content == report
        assert now.headers["Content-Type"] == "text/xml; charset=UTF-8" and now.headers["ETag"] == 'W/"2"'
        first = region.a.get(f"Binary/{binary_id}/_history/1")
        assert base64.b64decode(first.json()["data"]) == document

        # A stored web page is shown sandboxed: its script does not run in the platform's origin.
        page = region.a.post("Binary", b"<html><script>fetch('/fhir/Patient')</script></html>",
                             headers={"Content-Type": "text/html", "X-Security-Context": f"Patient/{at_a}"})
        assert page.status_code == 201, page.text
        shown = region.a.get(f"Binary/{page.json()['id']}", headers={"Accept": "text/html"})
        assert shown.status_code == 200 and shown.headers["Content-Type"] == "text/html"
        assert shown.headers["Content-Security-Policy"].startswith("sandbox;") and "script-src" not in shown.headers["Content-Security-Policy"]

        # Base64 stored with MIME line breaks (a client's JSON) is read back as the same bytes.
        scan = os.urandom(700_001)
        folded = base64.encodebytes(scan).decode()
        assert "\n" in folded
        folded_id = region.a.created("Binary", {"resourceType": "Binary", "contentType": "image/jpeg", "data": folded,
                                                "securityContext": {"reference": f"Patient/{at_a}"}})
        got = region.a.get(f"Binary/{folded_id}", headers={"Accept": "image/jpeg"})
        assert got.status_code == 200 and int(got.headers["Content-Length"]) == len(scan) and got.content == scan

        # At rest, the documents are sealed (ADR 026): no file under the data folder holds their
        # bytes or their base64 text, nor the report's text.
        needles = [document[4096:4160], base64.b64encode(document)[4096:4160], scan[999:1063],
                   base64.b64encode(scan)[1200:1264], "胸部CT：未见明显异常".encode(), base64.b64encode(report)[:40]]
        for folder, _, names in os.walk(str(tmp_path)):
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    content = f.read()
                assert not any(n in content for n in needles), f"a document in clear in {os.path.join(folder, name)}"

        # Refused, with nothing stored: what a browser sends to any site, and a security context that is no reference.
        before = count(region.a, "Binary")
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            refused = region.a.post("Binary", b"hello", headers={"Content-Type": content_type})
            assert refused.status_code == 415, (content_type, refused.text)
            OperationOutcome.parse_obj(refused.json())
        bad = region.a.post("Binary", b"%PDF-1.7", headers={"Content-Type": "application/pdf", "X-Security-Context": "Patient/a b/c"})
        assert bad.status_code == 400, bad.text
        OperationOutcome.parse_obj(bad.json())
        assert bad.json()["issue"][0]["expression"] == ["Binary.securityContext"]
        unknown = region.a.post("Binary", b"%PDF-1.7", headers={"Content-Type": "application/pdf", "X-Security-Context": "Nothing/1"})
        assert unknown.status_code == 400, unknown.text
        assert count(region.a, "Binary") == before

        # A FHIR resource in XML is still refused as XML, not taken for a document.
        xml = region.a.post("Binary", b"<Binary xmlns=\"http://hl7.org/fhir\"/>", headers={"Content-Type": "application/fhir+xml"})
        assert xml.status_code == 415, xml.text
        assert count(region.a, "Binary") == before
    finally:
        region.stop()


def test_a_document_sent_on_its_own_is_bound_when_its_facilitys_document_reference_names_it(tmp_path):
    """A Binary POSTed as itself without `X-Security-Context` is its facility's only; when the same
    facility then writes a DocumentReference about a resident whose attachment points at it, the
    Binary is read under that resident (a new version with its `securityContext`). Another
    facility's DocumentReference pointing at it binds nothing."""
    region, at_a, _ = region_with_a_resident(tmp_path, resident_id("1961-09-09", 33), "周", "杰", "1961-09-09", "male")
    try:
        at_c = region.c.created("Patient", patient("吴", "丽", resident_id("1975-01-01", 8), "1975-01-01", "female"))
        document = b"%PDF-1.7\n" + os.urandom(300_000)
        posted = region.a.post("Binary", document, headers={"Content-Type": "application/pdf"})
        assert posted.status_code == 201, posted.text
        binary_id = posted.json()["id"]
        assert "securityContext" not in posted.json()
        assert region.b.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"}).status_code in (403, 404)

        def reference(subject):
            return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": subject},
                    "type": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
                    "content": [{"attachment": {"contentType": "application/pdf", "url": f"Binary/{binary_id}"}}]}

        # Another facility pointing at it binds nothing (its own resident, or anyone's).
        assert region.c.post("DocumentReference", reference(f"Patient/{at_c}")).status_code == 201
        unbound = region.a.get(f"Binary/{binary_id}")
        assert unbound.json()["meta"]["versionId"] == "1" and "securityContext" not in unbound.json()

        # A client of A's whose scopes do not let it update Binaries binds nothing either (the binding is its write).
        assert region.a_documents.post("DocumentReference", reference(f"Patient/{at_a}")).status_code == 201
        assert region.a.get(f"Binary/{binary_id}").json()["meta"]["versionId"] == "1"

        # Its own facility's DocumentReference binds it to the resident: B, treating the resident, reads it.
        assert region.a.post("DocumentReference", reference(f"Patient/{at_a}")).status_code == 201
        bound = region.a.get(f"Binary/{binary_id}")
        assert bound.status_code == 200, bound.text
        Binary.parse_obj(bound.json())
        assert bound.json()["securityContext"] == {"reference": f"Patient/{at_a}"} and bound.json()["meta"]["versionId"] == "2"
        from_b = region.b.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
        assert from_b.status_code == 200 and from_b.content == document
        assert region.c.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"}).status_code in (403, 404)
        # A second reference to it writes no third version.
        assert region.a.post("DocumentReference", reference(f"Patient/{at_a}")).status_code == 201
        assert region.a.get(f"Binary/{binary_id}").json()["meta"]["versionId"] == "2"
    finally:
        region.stop()

