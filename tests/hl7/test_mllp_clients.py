"""The HL7 v2 gateway as a hospital system meets it: the PyPI `hl7` package's MLLP client sends ADT
and ORU messages to a running `huitong serve --mllp-port`, reads the ACKs, and the data is then read
back through FHIR. Bad messages (no MSH, wrong separator, cut-off frame, 10 MiB, unknown sender)
are refused, and the server keeps serving other connections."""
import asyncio
import base64
import os
import shutil
import socket
import subprocess
import tempfile

import hl7
import hl7.mllp
import pytest
import requests

from conftest import BINARY, Server, free_port, self_signed

SENDER = "HIS|county-hospital"


@pytest.fixture(scope="module")
def gateway():
    data = tempfile.mkdtemp(prefix="huitong-hl7-")
    created = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "县医院 HIS", "--facility", "county",
                              "--scopes", "system/*.cruds", "--hl7-sender", "HIS^county-hospital",
                              "--hl7-sender", "^county-lab"], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    server = Server(data)
    server.mllp_port = free_port()
    server.start_args += ["--mllp-port", str(server.mllp_port), "--mllp-max-bytes", str(4 * 1024 * 1024)]
    server.start()
    yield server
    server.stop()
    shutil.rmtree(data, ignore_errors=True)


def msh(message_type, control, sender=SENDER, version="2.4", charset=""):
    return f"MSH|^~\\&|{sender}|HUITONG|platform|20261124103000||{message_type}|{control}|P|{version}|||AL|NE|CHN|{charset}"


PID = ("PID|1||H-1001^^^county-hospital^MR~110101196507150011^^^CHN^NNCHN||欧阳^娜娜^^^^^L||19650715|F|||"
       "人民路8号^^贵阳市^贵州省^550001^CHN^H||^PRN^PH^^^^^^^^^13985012345")
PV1 = "PV1|1|I|内科^305^2||||D042^王^医生||||||||||||V-88|||||||||||||||||||||||||20261124083000"


def exchange(port, messages, encoding="utf-8"):
    """Sends each message on one MLLP connection, waiting for each ACK (as senders do)."""
    async def run():
        reader, writer = await hl7.mllp.open_hl7_connection("127.0.0.1", port, encoding=encoding)
        acks = []
        try:
            for m in messages:
                writer.writemessage(hl7.parse(m))
                await writer.drain()
                acks.append(await asyncio.wait_for(reader.readmessage(), 30))
        finally:
            writer.close()
        return acks
    return asyncio.run(run())


def ack_code(ack):
    return str(ack.segment("MSA")[1])


def fhir(server, path, **params):
    r = requests.get(f"{server.base}/{path}", params=params)
    assert r.status_code == 200, r.text
    return r.json()


def test_adt_and_results_become_fhir_data(gateway):
    a01 = "\r".join([msh("ADT^A01^ADT_A01", "PY-1", charset="UNICODE UTF-8"), "EVN|A01|20261124083000", PID, PV1])
    a08 = a01.replace("PY-1", "PY-2").replace("ADT^A01^ADT_A01", "ADT^A08^ADT_A01").replace("人民路8号", "人民路18号")
    obx = []
    for i in range(1, 21):
        obx.append(f"OBX|{i}|NM|{7000 + i}-1^项目{i}^LN||{i}.{i % 10}0|mmol/L^mmol/L^UCUM|1.0-{i + 5}.0|{'H' if i > 15 else 'N'}|||F")
    oru = "\r".join([msh("ORU^R01^ORU_R01", "PY-3", sender="LIS|county-lab", version="2.5", charset="UNICODE UTF-8"),
                     "PID|1||H-1001^^^county-hospital^MR",
                     "OBR|1|P-55|F-55^LAB|24323-8^综合代谢检查^LN|||20261124070000|||||||||||||||20261124090000||||F"] + obx)
    acks = exchange(gateway.mllp_port, [a01, a08, oru], encoding="utf-8")
    assert [ack_code(a) for a in acks] == ["AA", "AA", "AA"], [str(a) for a in acks]
    assert [str(a.segment("MSA")[2]) for a in acks] == ["PY-1", "PY-2", "PY-3"]

    # The Patient by its PID-3 identifiers, updated by A08 rather than duplicated.
    bundle = fhir(gateway, "Patient", identifier="urn:huitong:mrn:county|H-1001")
    assert bundle["total"] == 1
    patient = bundle["entry"][0]["resource"]
    assert patient["name"][0]["family"] == "欧阳" and patient["name"][0]["given"] == ["娜娜"]
    assert patient["address"][0]["line"] == ["人民路18号"]
    assert patient["meta"]["source"] == "urn:huitong:facility:county"
    by_id = fhir(gateway, "Patient", identifier="urn:oid:2.16.156.10011.1.3|110101196507150011")
    assert [e["resource"]["id"] for e in by_id["entry"]] == [patient["id"]]

    encounter = fhir(gateway, "Encounter", identifier="urn:huitong:visit:county|V-88")["entry"][0]["resource"]
    assert encounter["class"]["code"] == "IMP"
    assert encounter["location"][0]["location"]["display"] == "内科 305 2"
    assert encounter["subject"]["reference"] == f"Patient/{patient['id']}"

    report = fhir(gateway, "DiagnosticReport", identifier="urn:huitong:order:county|F-55")["entry"][0]["resource"]
    assert report["status"] == "final" and len(report["result"]) == 20
    observations = fhir(gateway, "Observation", subject=f"Patient/{patient['id']}", _count=50)["entry"]
    by_ref = {f"Observation/{e['resource']['id']}": e["resource"] for e in observations}
    assert set(r["reference"] for r in report["result"]) == set(by_ref)
    first = next(o for o in by_ref.values() if o["code"]["coding"][0]["code"] == "7001-1")
    assert first["valueQuantity"] == {"value": 1.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}
    assert first["referenceRange"][0]["low"]["value"] == 1.0 and first["referenceRange"][0]["high"]["value"] == 6.0
    assert sum(1 for o in by_ref.values() if o["interpretation"][0]["coding"][0]["code"] == "H") == 5

    # The same ORU again (a sender retrying after a lost ACK): the first ACK, no second report.
    again = exchange(gateway.mllp_port, [oru])
    assert str(again[0]) == str(acks[2])
    assert fhir(gateway, "DiagnosticReport", identifier="urn:huitong:order:county|F-55")["total"] == 1
    assert fhir(gateway, "Observation", subject=f"Patient/{patient['id']}", _summary="count")["total"] == 20


def test_merge_and_document(gateway):
    keep = "PID|1||H-7001^^^county-hospital^MR||钱^七||19720202|M"
    gone = "PID|1||H-7002^^^county-hospital^MR||钱^柒||19720202|M"
    register = [("\r".join([msh("ADT^A04^ADT_A01", f"MG-{i}"), "EVN|A04", pid, "PV1|1|O"])) for i, pid in enumerate([keep, gone])]
    a40 = "\r".join([msh("ADT^A40^ADT_A39", "MG-3"), "EVN|A40", keep, "MRG|H-7002^^^county-hospital^MR"])
    pdf = base64.b64encode("%PDF-1.4 出院小结".encode()).decode()
    mdm = "\r".join([msh("MDM^T02^MDM_T02", "MG-4"), "EVN|T02", keep, "PV1|1|I",
                      "TXA|1|DS|AP|20261124120000|||||D042^王^医生|||DOC-9|||||AU||||||出院小结",
                      f"OBX|1|ED|DS^Discharge summary||^application^pdf^Base64^{pdf}||||||F"])
    acks = exchange(gateway.mllp_port, register + [a40, mdm])
    assert [ack_code(a) for a in acks] == ["AA"] * 4, [str(a) for a in acks]
    survivor = fhir(gateway, "Patient", identifier="urn:huitong:mrn:county|H-7001")["entry"][0]["resource"]
    merged = fhir(gateway, "Patient", identifier="urn:huitong:mrn:county|H-7002")["entry"][0]["resource"]
    assert survivor["link"] == [{"other": {"reference": f"Patient/{merged['id']}"}, "type": "replaces"}]
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}]
    doc = fhir(gateway, "DocumentReference", subject=f"Patient/{survivor['id']}")["entry"][0]["resource"]
    assert doc["masterIdentifier"]["value"] == "DOC-9" and doc["docStatus"] == "final"
    attachment = doc["content"][0]["attachment"]
    assert attachment["contentType"] == "application/pdf"
    binary = fhir(gateway, attachment["url"])
    assert base64.b64decode(binary["data"]) == "%PDF-1.4 出院小结".encode()


def test_gb18030_message(gateway):
    a04 = "\r".join([msh("ADT^A04^ADT_A01", "GB-1", charset="GB 18030-2000"), "EVN|A04",
                     "PID|1||H-2002^^^county-hospital^MR||张^三||19800101|M", "PV1|1|O|门诊^1"])
    acks = exchange(gateway.mllp_port, [a04], encoding="gb18030")
    assert ack_code(acks[0]) == "AA", str(acks[0])
    patient = fhir(gateway, "Patient", identifier="urn:huitong:mrn:county|H-2002")["entry"][0]["resource"]
    assert patient["name"][0]["family"] == "张" and patient["name"][0]["given"] == ["三"]


def raw_exchange(port, payload, timeout=30):
    """Sends raw bytes and returns the first framed answer (b'' if the server closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(payload)
        data = b""
        while b"\x1c\x0d" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def parse_ack(data):
    start, end = data.index(b"\x0b"), data.index(b"\x1c\x0d")
    return hl7.parse(data[start + 1:end].decode("utf-8"))


def frame(text):
    return b"\x0b" + text.encode("utf-8") + b"\x1c\x0d"


@pytest.mark.parametrize("payload,code", [
    (frame("PID|1||X-1\rPV1|1|O"), "AR"),  # no MSH
    (frame("MSH^~|&\\|HIS^county-hospital^^20260101^^ADT|A01^1^P^2.4"), "AR"),  # wrong field separator use
    (frame("\r".join([msh("ADT^A01", "U-1", sender="RIS|unknown-hospital"), PID, PV1])), "AR"),  # unknown sender
    (frame("\r".join([msh("ADT^A01", "V-1", version="3.0"), PID, PV1])), "AR"),  # unsupported version
    (frame("\r".join([msh("ADT^A01", "B-1"), "PID|1||||欧阳^娜娜", PV1])), "AE"),  # no PID-3
    (frame("\r".join([msh("ADT^A01", "B-2"), PID.replace("19650715", "19651332"), PV1])), "AE"),  # bad date
])
def test_bad_messages_are_refused(gateway, payload, code):
    before = fhir(gateway, "Patient", _summary="count")["total"]
    ack = parse_ack(raw_exchange(gateway.mllp_port, payload))
    assert ack_code(ack) == code, str(ack)
    if code == "AE":
        assert str(ack.segment("ERR")[3][0][0]) in {"101", "102"}
    assert fhir(gateway, "Patient", _summary="count")["total"] == before


def test_cut_off_and_oversized_frames_and_other_connections_keep_working(gateway):
    good = "\r".join([msh("ADT^A04^ADT_A01", "K-1"), "PID|1||H-3003^^^county-hospital^MR||李^四", "PV1|1|O"])
    # A frame without its end block, followed by a new one: the first is answered AR, the second AA.
    cut = b"\x0b" + ("\r".join([msh("ADT^A04", "CUT-1"), "PID|1||H-3"])).encode()
    with socket.create_connection(("127.0.0.1", gateway.mllp_port), timeout=30) as s:
        s.sendall(cut + frame(good))
        data = b""
        while data.count(b"\x1c\x0d") < 2:
            chunk = s.recv(65536)
            assert chunk, "the server closed the connection"
            data += chunk
    answers = [hl7.parse(part.split(b"\x0b", 1)[1].decode()) for part in data.split(b"\x1c\x0d")[:2]]
    assert [ack_code(a) for a in answers] == ["AR", "AA"]
    assert [str(a.segment("MSA")[2]) for a in answers] == ["CUT-1", "K-1"]

    # 10 MiB (over the 4 MiB limit): AR; meanwhile another connection is served.
    huge = frame("\r".join([msh("ORU^R01", "HUGE-1"), "PID|1||H-1001^^^county-hospital^MR", "NTE|1||" + "x" * (10 * 1024 * 1024)]))
    with socket.create_connection(("127.0.0.1", gateway.mllp_port), timeout=60) as big:
        big.sendall(huge[: len(huge) // 2])
        other = exchange(gateway.mllp_port, [good.replace("K-1", "K-2")])
        assert ack_code(other[0]) == "AA"
        big.sendall(huge[len(huge) // 2:])
        data = b""
        while b"\x1c\x0d" not in data:
            chunk = big.recv(65536)
            assert chunk
            data += chunk
    ack = parse_ack(data)
    assert ack_code(ack) == "AR" and str(ack.segment("MSA")[2]) == "HUGE-1"
    # A frame cut off by the client hanging up gets no answer, and breaks nothing.
    with socket.create_connection(("127.0.0.1", gateway.mllp_port), timeout=30) as s:
        s.sendall(cut)
    assert ack_code(exchange(gateway.mllp_port, [good.replace("K-1", "K-3")])[0]) == "AA"


def test_operators_see_per_sender_counts(gateway):
    """After the other tests' traffic: counts per sender at /hl7/status and in Prometheus format."""
    exchange(gateway.mllp_port, ["\r".join([msh("ADT^A04^ADT_A01", "ST-1"), "PID|1||H-8008^^^county-hospital^MR||周^八", "PV1|1|O"])])
    root = gateway.base.replace("/fhir", "")
    status = requests.get(root + "/hl7/status").json()
    assert status["mllp"] is True
    his = status["senders"]["HIS^county-hospital"]
    assert his["counts"]["AA"] >= 1 and his["counts"]["received"] >= his["counts"]["AA"]
    assert his["last"].startswith("20")
    metrics = requests.get(root + "/metrics").text
    assert 'huitong_hl7_messages_total{sender="HIS^county-hospital",outcome="AA"}' in metrics
    assert "# TYPE huitong_hl7_last_message_timestamp_seconds gauge" in metrics


def test_mllp_over_tls(tmp_path):
    """`--mllp-tls`: the sender's connection is encrypted; a plain connection gets no ACK."""
    import ssl
    data = str(tmp_path / "store")
    os.makedirs(data)
    cert, key = self_signed(str(tmp_path))
    created = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "HIS", "--facility", "county",
                              "--scopes", "system/*.cruds", "--hl7-sender", "HIS^county-hospital"], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    server = Server(data).use_tls(cert, key)
    port = free_port()
    server.start_args += ["--mllp-port", str(port), "--mllp-tls"]
    server.start()
    try:
        message = "\r".join([msh("ADT^A04^ADT_A01", "TLS-1"), "PID|1||H-9009^^^county-hospital^MR||孙^九", "PV1|1|O"])
        context = ssl.create_default_context(cafile=cert)
        with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                assert s.version() in ("TLSv1.2", "TLSv1.3")
                s.sendall(frame(message))
                data_in = b""
                while b"\x1c\x0d" not in data_in:
                    chunk = s.recv(65536)
                    assert chunk
                    data_in += chunk
        assert ack_code(parse_ack(data_in)) == "AA"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(frame(message.replace("TLS-1", "TLS-2")))
            try:
                answer = plain.recv(65536)
            except (ConnectionResetError, socket.timeout):
                answer = b""
            assert b"MSA|AA" not in answer
    finally:
        server.stop()
