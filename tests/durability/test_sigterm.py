"""A graceful stop loses nothing: while 8 HTTP clients write Observations and an HL7 system sends
ADT messages over MLLP, the server gets SIGTERM. It must stop taking work, finish what it took,
flush its audit spool and exit 0 within 10 s; after a restart every write it acknowledged (201, or
an ACK with AA) reads back, and the audit chain verifies. Runs on the embedded store and, when
HUITONG_TEST_POSTGRES_URL is set, on PostgreSQL."""
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import BINARY, POSTGRES_URL, Server, free_port, fresh_postgres_database

START, END = b"\x0b", b"\x1c\x0d"


def adt(n):
    return ("MSH|^~\\&|HIS|term-hospital|HUITONG|platform|20261124103000||ADT^A04^ADT_A04|T%d|P|2.5|||AL|NE|CHN|UNICODE UTF-8\r"
            "EVN|A04|20261124103000\r"
            "PID|1||T%d^^^term-hospital^MR||王^%d^^^^^L||19700101|M\r"
            "PV1|1|O|门诊^1||||D1^李^医生||||||||||||VT%d|||||||||||||||||||||||||20261124083000" % (n, n, n, n)).encode()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigterm_during_writes_loses_no_acknowledged_write_and_exits_0(data_dir, backend):
    if backend == "postgres" and not POSTGRES_URL:
        pytest.skip("HUITONG_TEST_POSTGRES_URL is not set")
    database = fresh_postgres_database("huitong_sigterm") if backend == "postgres" else None
    args = ["--database", database] if database else ["--data", data_dir]
    created = subprocess.run([BINARY, "client", "create", *args, "--name", "HIS", "--facility", "term",
                              "--scopes", "system/*.cruds", "--hl7-sender", "HIS^term-hospital"], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    server = Server(data_dir, database)
    mllp_port = free_port()
    server.start_args += ["--mllp-port", str(mllp_port)]
    server.start()

    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def writer(k):
        session = requests.Session()
        i = 0
        while not stop.is_set():
            i += 1
            try:
                r = session.post(f"{server.base}/Observation", json={
                    "resourceType": "Observation", "status": "final", "code": {"text": f"w{k}-{i}"},
                    "valueQuantity": {"value": i, "unit": "/min"}},
                    headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"}, timeout=15)
            except requests.RequestException:
                return   # the server stopped taking requests
            if r.status_code != 201:
                return
            with lock:
                acknowledged.append(r.headers["Location"].split("/fhir/")[1].split("/_history")[0])

    acked_messages = []

    def sender():
        try:
            with socket.create_connection(("127.0.0.1", mllp_port), timeout=15) as s:
                n = 0
                while not stop.is_set():
                    n += 1
                    s.sendall(START + adt(n) + END)
                    answer = b""
                    while not answer.endswith(END):
                        chunk = s.recv(65536)
                        if not chunk:
                            return   # closed while draining: this message was not acknowledged
                        answer += chunk
                    if b"MSA|AA" in answer:
                        acked_messages.append(n)
        except OSError:
            return

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)] + [threading.Thread(target=sender)]
    for t in threads:
        t.start()
    time.sleep(3)
    began = time.time()
    server.process.send_signal(signal.SIGTERM)
    code = server.process.wait(timeout=30)
    took = time.time() - began
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert code == 0, open(server.log.name).read()[-3000:]
    assert took < 10, f"stopped in {took:.1f} s"
    assert len(acknowledged) > 50 and acked_messages, (len(acknowledged), len(acked_messages))

    server.start()
    try:
        session = requests.Session()
        missing = [ref for ref in acknowledged if session.get(f"{server.base}/{ref}").status_code != 200]
        assert missing == [], f"{len(missing)} of {len(acknowledged)} acknowledged writes are missing"
        for n in acked_messages:
            found = session.get(f"{server.base}/Patient", params={"identifier": f"T{n}"}).json()
            assert found.get("total", len(found.get("entry", []))) >= 1, f"ADT T{n} was acknowledged but its Patient is missing"
    finally:
        server.stop()
    if not database:
        verified = subprocess.run([BINARY, "audit", "verify", "--data", data_dir], capture_output=True, text=True)
        assert verified.returncode == 0, verified.stdout + verified.stderr
