"""HL7 v2 over MLLP: messages/s and ACK latency for ADT^A04 (a new registration and visit each) and
ORU^R01 (10 OBX), with 1 and 16 connections, each sender waiting for its ACK before the next message
(as MLLP senders do). The baseline is measured in the same run: the same content as the FHIR
transaction Bundle the gateway commits, POSTed to /fhir over HTTP/1.1 keep-alive by the same
client, with a token of the same facility client. Both servers are fresh stores (audited).

    python3 bench/mllp.py --seconds 10          # needs a release build
    python3 bench/mllp.py --no-matching         # without the master patient index
"""
import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from common import BINARY, free_port, log, save, start, stop

FACILITY = "bench-hospital"


def msh(kind, control, sender="HIS|bench-hospital", version="2.5"):
    return f"MSH|^~\\&|{sender}|HUITONG|platform|20261124103000||{kind}|{control}|P|{version}|||AL|NE|CHN|UNICODE UTF-8"


def adt(n):
    return "\r".join([msh("ADT^A04^ADT_A01", f"A{n}"), "EVN|A04|20261124103000",
                      f"PID|1||MRN{n}^^^bench-hospital^MR||王^{n}^^^^^L||19{n % 90 + 10:02d}0{n % 9 + 1}1{n % 10}|{'MF'[n % 2]}|||"
                      f"人民路{n % 500}号^^成都市^四川省^610000^CHN^H||^PRN^PH^^^^^^^^^139{n:08d}",
                      f"PV1|1|O|门诊^{n % 40}||||D{n % 50}^李^医生||||||||||||V{n}|||||||||||||||||||||||||20261124083000"])


def oru(n):
    # Ten results per patient; a connection's messages never share a patient with another's.
    segments = [msh("ORU^R01^ORU_R01", f"O{n}", sender="LIS|bench-lab"), f"PID|1||MRN{n // 10}^^^bench-hospital^MR",
                f"OBR|1|P{n}|F{n}^LAB|24323-8^Metabolic panel^LN|||20261124070000|||||||||||||||20261124090000||||F"]
    for i in range(1, 11):
        segments.append(f"OBX|{i}|NM|{2000 + i}-1^Item {i}^LN||{(n + i) % 17}.{i}|mmol/L^mmol/L^UCUM|1.0-9.0|N|||F")
    return "\r".join(segments)


def adt_bundle(n):
    src = f"_source=urn%3Ahuitong%3Afacility%3A{FACILITY}"
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:p{n}", "request": {"method": "PUT", "url": f"Patient?identifier=urn%3Ahuitong%3Amrn%3A{FACILITY}|MRN{n}&{src}"},
         "resource": {"resourceType": "Patient", "identifier": [{"system": f"urn:huitong:mrn:{FACILITY}", "value": f"MRN{n}"}],
                      "name": [{"use": "official", "family": "王", "given": [str(n)]}], "gender": ["male", "female"][n % 2],
                      "birthDate": f"19{n % 90 + 10:02d}-0{n % 9 + 1}-1{n % 10}",
                      "telecom": [{"system": "phone", "value": f"139{n:08d}", "use": "home"}],
                      "address": [{"use": "home", "line": [f"人民路{n % 500}号"], "city": "成都市", "state": "四川省", "postalCode": "610000", "country": "CHN"}]}},
        {"fullUrl": f"urn:uuid:e{n}", "request": {"method": "PUT", "url": f"Encounter?identifier=urn%3Ahuitong%3Avisit%3A{FACILITY}|V{n}&{src}"},
         "resource": {"resourceType": "Encounter", "identifier": [{"system": f"urn:huitong:visit:{FACILITY}", "value": f"V{n}"}],
                      "status": "in-progress", "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                      "subject": {"reference": f"urn:uuid:p{n}"}, "period": {"start": "2026-11-24T08:30:00+08:00"},
                      "location": [{"location": {"display": f"门诊 {n % 40}"}, "status": "active"}]}},
    ]}


def oru_bundle(n):
    src = f"_source=urn%3Ahuitong%3Afacility%3A{FACILITY}"
    entries = [{"fullUrl": f"urn:uuid:p{n}", "request": {"method": "POST", "url": "Patient",
                                                         "ifNoneExist": f"identifier=urn%3Ahuitong%3Amrn%3A{FACILITY}|MRN{n // 10}&{src}"},
                "resource": {"resourceType": "Patient", "identifier": [{"system": f"urn:huitong:mrn:{FACILITY}", "value": f"MRN{n // 10}"}]}}]
    results = []
    for i in range(1, 11):
        key = f"F{n}-{i}"
        results.append({"reference": f"urn:uuid:o{n}-{i}"})
        entries.append({"fullUrl": f"urn:uuid:o{n}-{i}", "request": {"method": "PUT", "url": f"Observation?identifier=urn%3Ahuitong%3Aresult%3A{FACILITY}|{key}&{src}"},
                        "resource": {"resourceType": "Observation", "identifier": [{"system": f"urn:huitong:result:{FACILITY}", "value": key}],
                                     "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": f"{2000 + i}-1"}]},
                                     "subject": {"reference": f"urn:uuid:p{n}"},
                                     "valueQuantity": {"value": float(f"{(n + i) % 17}.{i}"), "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                                     "referenceRange": [{"low": {"value": 1.0}, "high": {"value": 9.0}}]}})
    entries.append({"fullUrl": f"urn:uuid:r{n}", "request": {"method": "PUT", "url": f"DiagnosticReport?identifier=urn%3Ahuitong%3Aorder%3A{FACILITY}|F{n}&{src}"},
                    "resource": {"resourceType": "DiagnosticReport", "identifier": [{"system": f"urn:huitong:order:{FACILITY}", "value": f"F{n}"}],
                                 "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "24323-8"}]},
                                 "subject": {"reference": f"urn:uuid:p{n}"}, "result": results}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


async def mllp_sender(port, messages, deadline, latencies, codes):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for m in messages:
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        writer.write(b"\x0b" + m.encode() + b"\x1c\x0d")
        await writer.drain()
        ack = await reader.readuntil(b"\x1c\x0d")
        latencies.append(time.perf_counter() - t0)
        codes[ack.split(b"MSA|", 1)[1][:2].decode()] = codes.get(ack.split(b"MSA|", 1)[1][:2].decode(), 0) + 1
    writer.close()


async def http_sender(port, bodies, deadline, latencies, codes, token):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for body in bodies:
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        data = json.dumps(body).encode()
        writer.write(b"POST /fhir HTTP/1.1\r\nHost: bench\r\nContent-Type: application/fhir+json\r\nPrefer: return=minimal\r\n"
                     + f"Authorization: Bearer {token}\r\n".encode()
                     + f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0].split(b":")[1])
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - t0)
        status = head.split(b" ")[1].decode()
        codes[status] = codes.get(status, 0) + 1
    writer.close()


def run(kind, port, connections, seconds, make, offset, token=None):
    """`connections` senders, each with its own sequence of messages, for `seconds`."""
    latencies, codes = [], {}
    per = 200_000 // connections

    async def main():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*[mllp_sender(port, (make(offset + c * per + i) for i in range(per)), deadline, latencies, codes)
                               if kind == "mllp" else
                               http_sender(port, (make(offset + c * per + i) for i in range(per)), deadline, latencies, codes, token)
                               for c in range(connections)])
    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"messages_per_s": round(len(latencies) / elapsed, 1), "messages": len(latencies),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "answers": codes}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-matching", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="huitong-mllp-")
    extra = ["--no-matching"] if args.no_matching else []
    servers = {}
    try:
        credentials = {}
        for name in ("mllp", "http"):
            data = os.path.join(work, name)
            out = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "bench", "--facility", FACILITY, "--scopes", "system/*.cruds",
                                  "--hl7-sender", "HIS^bench-hospital", "--hl7-sender", "LIS^bench-lab"], check=True, capture_output=True, text=True).stdout
            credentials[name] = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith("client_"))
            port, mllp = free_port(), free_port()
            servers[name] = (start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", data,
                                    "--mllp-port", str(mllp)] + extra, f"http://127.0.0.1:{port}/ready"), port, mllp)
        # The HTTP baseline acts as the same kind of principal: the facility's client, by token.
        form = f"grant_type=client_credentials&client_id={credentials['http']['client_id']}&client_secret={credentials['http']['client_secret'].split()[0]}"
        request = urllib.request.Request(f"http://127.0.0.1:{servers['http'][1]}/auth/token", data=form.encode(),
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        token = json.load(urllib.request.urlopen(request))["access_token"]
        results = {}
        for workload in ("ADT^A04", "ORU^R01"):
            for connections in (1, 16):
                offset = 1_000_000 * (len(results) + 1)
                if workload == "ADT^A04":
                    m = run("mllp", servers["mllp"][2], connections, args.seconds, adt, offset)
                    h = run("http", servers["http"][1], connections, args.seconds, adt_bundle, offset, token)
                else:
                    m = run("mllp", servers["mllp"][2], connections, args.seconds, oru, offset)
                    h = run("http", servers["http"][1], connections, args.seconds, oru_bundle, offset, token)
                key = f"{workload} x{connections}"
                results[key] = {"mllp": m, "http_transaction": h, "mllp/http": round(m["messages_per_s"] / h["messages_per_s"], 2)}
                log(key, json.dumps(results[key]))
        save("mllp", {"matching": not args.no_matching, "seconds": args.seconds, "results": results})
    finally:
        for p, _, _ in servers.values():
            stop(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
