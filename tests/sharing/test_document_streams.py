"""Large documents stream in and out (issue 29: "Large attachments stream"; ADR 029), on a real
server with real tokens, on SQLite and on PostgreSQL.

A facility POSTs a 48 MB scan in its own type (more than the 20 MB request body limit): the
server seals it piece by piece into the store as it arrives and sends it back piece by piece, so
its peak memory grows by far less than the document. The bytes come back exact, with their length
and version; the same Binary read as FHIR shows where the document is read (its size and SHA-1),
and a document within the body limit is inlined as `data`. Access is that of the resident the
security context names; a refused or oversized upload leaves nothing; a client cannot name a
stream itself; a stream survives `kill -9` once acknowledged; a stream altered at rest is never
sent as different bytes; an upload cut short by `kill -9` is removed once idle, and only it."""
import base64
import gzip
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse

import pytest
import requests
from fhir.resources.binary import Binary
from fhir.resources.operationoutcome import OperationOutcome

from conftest import POSTGRES_URL

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "security"))
from region import Region, patient, resident_id  # noqa: E402

BACKENDS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])
STORED_DOCUMENT = "https://huitong.health/fhir/StructureDefinition/stored-document"


def peak_kb(region):
    """The server's peak resident memory so far (VmHWM), in kB."""
    with open(f"/proc/{region.server.process.pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def stream_files(region):
    folder = os.path.join(region.tmp, "huitong.sqlite-content", "streams")
    return sorted(os.path.join(d, n) for d, _, names in os.walk(folder) for n in names)


def stored_streams(region):
    """The streams the store holds: files on SQLite, whole streams on PostgreSQL."""
    if region.backend == "sqlite":
        return len(stream_files(region))
    import subprocess
    out = subprocess.run(["psql", region.database, "-qAtc", "SELECT (SELECT count(*) FROM document_stream) || ' ' || "
                          "(SELECT count(DISTINCT stream) FROM document_chunk)"], check=True, capture_output=True, text=True)
    whole, chunked = out.stdout.split()
    assert whole == chunked, "every stream with chunks is whole"
    return int(whole)


@pytest.fixture(params=BACKENDS)
def region(request, tmp_path):
    region = Region(str(tmp_path), request.param)
    region.a = region.client("县人民医院 PACS", "facility-system", "system/*.cruds", "org-a")
    region.b = region.client("乡镇卫生院 HIS", "facility-system", "system/*.cruds", "org-b")
    region.c = region.client("另一卫生院 HIS", "facility-system", "system/*.cruds", "org-c")
    region.reader = region.client("县人民医院 阅片", "facility-system", "system/Binary.rs system/Patient.rs", "org-a")
    region.server.start_args += ["--max-document-bytes", str(60 * 1024 * 1024)]
    region.server.start()
    rid = resident_id("1961-07-19", 41)
    region.at_a = region.a.created("Patient", patient("欧阳", "明", rid, "1961-07-19", "male"))
    region.at_b = region.b.created("Patient", patient("欧阳", "明", rid, "1961-07-19", "male"))
    region.b.created("Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                   "subject": {"reference": f"Patient/{region.at_b}"}})
    yield region
    region.stop()


def test_a_document_larger_than_the_body_limit_streams_in_and_out(region):
    document = b"%PDF-1.7\n" + os.urandom(48 * 1024 * 1024)
    before = peak_kb(region)
    posted = region.a.post("Binary", document, headers={"Content-Type": "application/pdf",
                                                        "X-Security-Context": f"Patient/{region.at_a}"})
    assert posted.status_code == 201, posted.text
    Binary.parse_obj(posted.json())
    binary_id = posted.json()["id"]

    raw = region.a.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200, raw.text
    assert raw.headers["Content-Type"] == "application/pdf" and raw.headers["ETag"] == 'W/"1"'
    assert int(raw.headers["Content-Length"]) == len(document)
    assert raw.headers["Content-Security-Policy"].startswith("sandbox")
    assert raw.content == document
    # Neither the upload nor the read held the document whole (nor its base64 form, nor several copies).
    grown = peak_kb(region) - before
    assert grown < 24 * 1024, f"the server's peak memory grew by {grown} kB for a {len(document) // 1024} kB document"

    # Read as FHIR: above the body limit the Binary shows where its document is read.
    as_fhir = region.a.get(f"Binary/{binary_id}")
    assert as_fhir.status_code == 200, as_fhir.text
    Binary.parse_obj(as_fhir.json())
    assert "data" not in as_fhir.json()
    [shown] = as_fhir.json()["_data"]["extension"]
    assert shown["url"] == STORED_DOCUMENT
    assert shown["valueAttachment"] == {"contentType": "application/pdf", "size": len(document), "hash": base64.b64encode(hashlib.sha1(document).digest()).decode()}
    listed = region.a.get(f"Binary?_id={binary_id}")
    assert listed.status_code == 200 and listed.json()["entry"][0]["resource"]["_data"] == as_fhir.json()["_data"]

    # B treats the same resident and reads it; C treats nobody and learns nothing.
    from_b = region.b.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
    assert from_b.status_code == 200 and from_b.content == document
    from_c = region.c.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
    assert from_c.status_code in (403, 404) and document[100:200] not in from_c.content
    OperationOutcome.parse_obj(from_c.json())

    # A second version, streamed too (6 MB): within the body limit, a FHIR read inlines it.
    second = os.urandom(6 * 1024 * 1024 + 3)
    put = region.a.put(f"Binary/{binary_id}", second, headers={"Content-Type": "image/tiff",
                                                               "X-Security-Context": f"Patient/{region.at_a}"})
    assert put.status_code == 200, put.text
    assert put.json()["meta"]["versionId"] == "2"
    now = region.a.get(f"Binary/{binary_id}")
    Binary.parse_obj(now.json())
    assert now.json()["contentType"] == "image/tiff" and base64.b64decode(now.json()["data"]) == second
    # A subset that keeps `data` inlines it; one that leaves it out shows neither it nor where it is.
    assert base64.b64decode(region.a.get(f"Binary/{binary_id}?_elements=data").json()["data"]) == second
    summary = region.a.get(f"Binary/{binary_id}?_summary=true").json()
    assert summary["contentType"] == "image/tiff" and "data" not in summary and "_data" not in summary
    # Each version keeps its own document, in its own type too.
    first = region.a.get(f"Binary/{binary_id}/_history/1", headers={"Accept": "application/pdf"})
    assert first.status_code == 200 and first.content == document and first.headers["ETag"] == 'W/"1"'
    latest = region.a.get(f"Binary/{binary_id}/_history/2", headers={"Accept": "image/tiff"})
    assert latest.status_code == 200 and latest.content == second

    # At rest the documents are sealed: no file under the data folder holds their bytes.
    if region.backend == "sqlite":
        needles = [document[4096:4160], document[-64:], second[5000:5064]]
        for folder, _, names in os.walk(region.tmp):
            for name in names:
                with open(os.path.join(folder, name), "rb") as f:
                    content = f.read()
                assert not any(n in content for n in needles), f"a document in clear in {os.path.join(folder, name)}"
    assert stored_streams(region) == 2


def test_refused_and_oversized_uploads_leave_nothing(region):
    scan = os.urandom(5 * 1024 * 1024)
    # A client whose scopes do not let it create Binaries: refused before anything is kept.
    refused = region.reader.post("Binary", scan, headers={"Content-Type": "image/jpeg", "X-Security-Context": f"Patient/{region.at_a}"})
    assert refused.status_code == 403, refused.text
    OperationOutcome.parse_obj(refused.json())
    tagged = {"Content-Type": "image/jpeg", "X-Security-Context": f"Patient/{region.at_a}"}
    made = region.a.post("Binary", scan, headers=tagged)
    assert made.status_code == 201, made.text
    made_id = made.json()["id"]
    # Refused before any of the document is kept: C may not change A's Binary; A's own change
    # names a version that is not the current one.
    foreign = region.c.put(f"Binary/{made_id}", scan, headers=tagged)
    assert foreign.status_code == 403, foreign.text
    stale = region.a.put(f"Binary/{made_id}", scan, headers=dict(tagged, **{"If-Match": 'W/"7"'}))
    assert stale.status_code == 412, stale.text
    # Refused after the upload, before the commit (a conditional create that matches two): the stream received is discarded.
    for _ in range(2):
        assert region.a.post("Binary", b"%PDF-1.7 small", headers=tagged).status_code == 201
    ambiguous = region.a.post("Binary", scan, headers=dict(tagged, **{"If-None-Exist": "_lastUpdated=gt2000-01-01"}))
    assert ambiguous.status_code == 412, ambiguous.text
    # Over --max-document-bytes: 413, and the part received is discarded.
    huge = region.a.post("Binary", b"\0" * (61 * 1024 * 1024), headers={"Content-Type": "application/octet-stream"})
    assert huge.status_code == 413, huge.text
    assert "exceeds the limit" in OperationOutcome.parse_obj(huge.json()).issue[0].diagnostics
    # A coded body (gzip) would be kept, and served, as its coding under the document's type: 415, small or large.
    for body in (gzip.compress(b"%PDF-1.7 small"), gzip.compress(scan)):
        coded = region.a.post("Binary", body, headers=dict(tagged, **{"Content-Encoding": "gzip"}))
        assert coded.status_code == 415, coded.text
        OperationOutcome.parse_obj(coded.json())
    # A conditional create that finds its match writes nothing: the stream it received is no one's.
    again = region.a.post("Binary", scan, headers=dict(tagged, **{"If-None-Exist": f"_id={made_id}"}))
    assert again.status_code == 200 and again.json()["id"] == made_id, again.text
    assert stored_streams(region) == 1
    assert region.a.get("Binary?_summary=count").json()["total"] == 3

    # What the platform shows of a stream is not taken back: a client cannot name a stream.
    shown = region.a.get(f"Binary/{made_id}").json()
    assert "data" in shown  # within the body limit, inlined
    forged = {"resourceType": "Binary", "contentType": "image/jpeg",
              "_data": {"extension": [{"url": STORED_DOCUMENT, "valueAttachment": {"size": len(scan)}}]}}
    bad = region.c.post("Binary", forged)
    assert bad.status_code == 400, bad.text
    assert "_data" in OperationOutcome.parse_obj(bad.json()).issue[0].expression[0]


def test_a_streamed_document_is_bound_by_its_facilitys_document_reference_and_patched(region):
    """The flow for documents too large for an MHD transaction: the Binary first, on its own (its
    facility's only), then the DocumentReference that names it binds it to the resident."""
    scan = b"%PDF-1.7\n" + os.urandom(5 * 1024 * 1024)
    posted = region.a.post("Binary", scan, headers={"Content-Type": "application/pdf"})
    assert posted.status_code == 201, posted.text
    binary_id = posted.json()["id"]
    assert region.b.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"}).status_code in (403, 404)
    reference = {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{region.at_a}"},
                 "type": {"coding": [{"system": "http://loinc.org", "code": "18748-4"}]},
                 "content": [{"attachment": {"contentType": "application/pdf", "url": f"Binary/{binary_id}"}}]}
    made = region.a.post("DocumentReference", reference)
    assert made.status_code == 201, made.text
    bound = region.a.get(f"Binary/{binary_id}")
    assert bound.json()["meta"]["versionId"] == "2" and bound.json()["securityContext"] == {"reference": f"Patient/{region.at_a}"}
    assert base64.b64decode(bound.json()["data"]) == scan
    from_b = region.b.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
    assert from_b.status_code == 200 and from_b.content == scan
    # A PATCH that leaves the document alone keeps it; one that touches it is refused.
    patched = region.a.request("PATCH", f"Binary/{binary_id}", [{"op": "replace", "path": "/contentType", "value": "application/x-pdf"}],
                               headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    now = region.a.get(f"Binary/{binary_id}", headers={"Accept": "application/x-pdf"})
    assert now.status_code == 200 and now.headers["ETag"] == 'W/"3"' and now.content == scan
    touched = region.a.request("PATCH", f"Binary/{binary_id}", [{"op": "remove", "path": "/_data/extension/0/url"}],
                               headers={"Content-Type": "application/json-patch+json"})
    assert touched.status_code == 400, touched.text
    assert stored_streams(region) == 1


def region_with_one_document(tmp_path, backend, size, content_type):
    """A server where facility A has POSTed one streamed document of `size` random bytes."""
    region = Region(str(tmp_path), backend)
    region.a = region.client("县人民医院 PACS", "facility-system", "system/*.cruds", "org-a")
    region.server.start_args += ["--max-document-bytes", str(60 * 1024 * 1024)]
    region.server.start()
    try:
        document = os.urandom(size)
        posted = region.a.post("Binary", document, headers={"Content-Type": content_type, "Prefer": "return=minimal"})
        assert posted.status_code == 201, posted.text
        return region, document, posted.headers["Location"].split("Binary/")[1].split("/")[0]
    except BaseException:
        region.stop()
        raise


@pytest.mark.parametrize("backend", ["sqlite"])
def test_an_acknowledged_stream_survives_kill_9_and_an_altered_one_is_never_sent(tmp_path, backend):
    region, document, binary_id = region_with_one_document(tmp_path, backend, 9 * 1024 * 1024 + 77, "application/dicom")
    try:
        region.server.kill9()
        region.server.start()
        back = region.a.get(f"Binary/{binary_id}", headers={"Accept": "application/dicom"})
        assert back.status_code == 200 and back.content == document

        # One byte changed at rest, in the middle of the stream.
        [path] = stream_files(region)
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
        # As FHIR (inlined): an error, no data.
        as_fhir = region.a.get(f"Binary/{binary_id}")
        assert as_fhir.status_code == 500, as_fhir.status_code
        OperationOutcome.parse_obj(as_fhir.json())
        # In its own type: the transfer fails short of its length; the bytes before the change are the document's.
        try:
            raw = region.a.get(f"Binary/{binary_id}", headers={"Accept": "application/dicom"})
            received = raw.content
        except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
            received = None
        if received is not None:
            assert len(received) < len(document) and document.startswith(received)
    finally:
        region.stop()


def psql(region, sql):
    return subprocess.run(["psql", region.database, "-qAtc", sql], check=True, capture_output=True, text=True).stdout.strip()


def stream_state(region):
    """(streams with bytes, whole streams, pending marks)."""
    if region.backend == "sqlite":
        import sqlite3
        with sqlite3.connect(f"file:{os.path.join(region.tmp, 'huitong.sqlite')}?mode=ro", uri=True) as db:
            pending = db.execute("SELECT count(*) FROM document_stream_pending").fetchone()[0]
        files = len(stream_files(region))  # an unfinished file is a file too: counted with the rest
        return files, files, pending
    chunked, whole, pending = psql(region, "SELECT (SELECT count(DISTINCT stream) FROM document_chunk) || ' ' || "
                                   "(SELECT count(*) FROM document_stream) || ' ' || (SELECT count(*) FROM document_stream_pending)").split()
    return int(chunked), int(whole), int(pending)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_upload_cut_short_by_kill_9_is_removed_once_idle_and_only_it(tmp_path, backend):
    """The server killed in the middle of an upload leaves a partial stream no Binary names. After
    a restart, once nothing was written to it for the sweep's hour (backdated here), it is removed;
    the acknowledged document beside it stays, and reads back exactly."""
    region, document, binary_id = region_with_one_document(tmp_path, backend, 5 * 1024 * 1024 + 3, "application/pdf")
    try:
        assert stream_state(region)[2] == 0, "an acknowledged stream is not pending"

        # 12 of 30 MB sent, then the server is killed.
        url = urllib.parse.urlparse(region.base)
        sock = socket.create_connection((url.hostname, url.port))
        head = (f"POST {url.path}/Binary HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/pdf\r\n"
                f"Authorization: {region.a.headers()['Authorization']}\r\nContent-Length: {30 * 1024 * 1024}\r\n\r\n")
        sock.sendall(head.encode())
        for _ in range(12):
            sock.sendall(os.urandom(1024 * 1024))
        deadline = time.time() + 20
        while stream_state(region)[0] < 2 and time.time() < deadline:
            time.sleep(0.1)
        assert stream_state(region)[0] == 2, "the upload's stream is being written"
        region.server.kill9()
        sock.close()
        streams, whole, pending = stream_state(region)
        assert (streams, pending) == (2, 1), stream_state(region)

        # Restarted while the partial stream is fresh: kept (it might be an upload in progress; the
        # sweep runs as the server starts).
        region.server.start()
        time.sleep(1.5)
        assert stream_state(region)[2] == 1
        region.server.stop()
        # An hour and more later.
        if backend == "sqlite":
            content = os.path.join(region.tmp, "huitong.sqlite-content")
            past = time.time() - 7200
            for folder, _, names in os.walk(content):
                for name in names:
                    os.utime(os.path.join(folder, name), (past, past))
        else:
            psql(region, "UPDATE document_stream_pending SET touched_at = now() - interval '2 hours'")
        region.server.start()
        deadline = time.time() + 20
        while stream_state(region) != (1, 1, 0) and time.time() < deadline:
            time.sleep(0.2)
        assert stream_state(region) == (1, 1, 0), stream_state(region)
        back = region.a.get(f"Binary/{binary_id}", headers={"Accept": "application/pdf"})
        assert back.status_code == 200 and back.content == document
    finally:
        region.stop()


def test_a_client_that_asks_before_sending_a_large_body_is_told_to_go_on(tmp_path):
    """`Expect: 100-continue` (RFC 9110): curl asks for bodies over 1 MB and waits a second for
    the answer; the server answers as the head arrives, before any of the body is sent."""
    import socket
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 PACS", "facility-system", "system/*.cruds", "org-a")
    region.server.start()
    try:
        body = os.urandom(5 * 1024 * 1024)
        token = region.a.headers()["Authorization"]
        with socket.create_connection(("127.0.0.1", region.server.port), timeout=10) as s:
            s.sendall((f"POST /fhir/Binary HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
                       f"Content-Type: application/pdf\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
            interim = s.recv(4096)
            assert interim.startswith(b"HTTP/1.1 100 Continue\r\n"), interim
            s.sendall(body)
            reply = b""
            while b"\r\n\r\n" not in reply:
                reply += s.recv(65536)
            assert reply.startswith(b"HTTP/1.1 201 Created"), reply[:200]
    finally:
        region.stop()


def test_a_pipelined_requests_100_continue_waits_for_the_response_before_it(tmp_path):
    """A request's `100 Continue` is never written into the middle of the response before it."""
    import socket
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 PACS", "facility-system", "system/*.cruds", "org-a")
    region.server.start()
    try:
        document = os.urandom(10 * 1024 * 1024)
        posted = region.a.post("Binary", document, headers={"Content-Type": "application/pdf"})
        assert posted.status_code == 201, posted.text
        token = region.a.headers()["Authorization"]
        body = os.urandom(5 * 1024 * 1024)
        with socket.create_connection(("127.0.0.1", region.server.port), timeout=20) as s:
            s.sendall((f"GET /fhir/Binary/{posted.json()['id']} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
                       f"Accept: application/pdf\r\n\r\n"
                       f"POST /fhir/Binary HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
                       f"Content-Type: application/pdf\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())
            received = b""
            while b"\r\n\r\n" not in received:
                received += s.recv(65536)
            head, _, received = received.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
            while len(received) < length + len(b"HTTP/1.1 100 Continue\r\n\r\n"):
                received += s.recv(1 << 20)
            assert received[:length] == document, "the first response's body is the document, whole and alone"
            assert received[length:].startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), received[length:length + 100]
            s.sendall(body)
            reply = received[length + len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
            while b"\r\n\r\n" not in reply:
                reply += s.recv(65536)
            assert reply.startswith(b"HTTP/1.1 201 Created"), reply[:200]
    finally:
        region.stop()


def test_a_document_the_disk_has_no_room_for_is_refused_and_nothing_is_kept(tmp_path):
    """Streams never take the embedded store's disk below its reserve (`--document-disk-reserve`):
    the database beside them keeps room to commit. A document whose declared length does not fit
    is refused (507) before any of it is kept; one sent without a length is refused when it reaches
    the reserve, its partial stream removed. Documents kept in their JSON are not concerned."""
    region = Region(str(tmp_path), "sqlite")
    region.a = region.client("县人民医院 PACS", "facility-system", "system/*.cruds", "org-a")
    free = shutil.disk_usage(str(tmp_path)).free
    if free < 2 * 1024 ** 3:
        pytest.skip("less than 2 GiB free on the test disk")
    # Room for about 64 MiB of documents from now on (the rest of the run writes a few MiB more).
    region.server.start_args += ["--max-document-bytes", str(400 * 1024 * 1024), "--document-disk-reserve", str(free - 64 * 1024 * 1024)]
    region.server.start()
    try:
        refused = region.a.post("Binary", os.urandom(160 * 1024 * 1024), headers={"Content-Type": "application/pdf"})
        assert refused.status_code == 507, refused.text
        outcome = OperationOutcome.parse_obj(refused.json())
        assert outcome.issue[0].code == "no-store"

        def chunks():
            for _ in range(256):
                yield os.urandom(1024 * 1024)
        try:
            cut = requests.post(region.base + "/Binary", data=chunks(), headers=region.a.headers({"Content-Type": "application/pdf"}))
            assert cut.status_code == 507, cut.text
        except requests.exceptions.ConnectionError:
            pass  # answered before the body was all sent
        assert stream_state(region) == (0, 0, 0), stream_state(region)

        small = region.a.post("Binary", os.urandom(1024 * 1024), headers={"Content-Type": "application/pdf"})
        assert small.status_code == 201, small.text
        fits = region.a.post("Binary", os.urandom(6 * 1024 * 1024), headers={"Content-Type": "application/pdf"})
        assert fits.status_code == 201, fits.text
        assert stream_state(region) == (1, 1, 0)
        found = region.a.get("Binary?_summary=count").json()
        assert found["total"] == 2
    finally:
        region.stop()
