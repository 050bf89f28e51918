"""HL7 v2 over MLLP: messages/s and ACK latency for ADT^A04 (a new registration and visit each) and
ORU^R01 (10 OBX), with 1 and 16 connections, each sender waiting for its ACK before the next message
(as MLLP senders do). The baseline is measured in the same run: for each of the same messages, the
FHIR transaction Bundle the gateway's mapping makes of it (`huitong bench hl7-bundles`), POSTed
to /fhir over HTTP/1.1 keep-alive by the same client, with a token of the same facility client. Both servers are fresh stores (audited).
A second baseline is the storage engine's own cost: the rows each MLLP run wrote, inserted again
with raw SQLite into a fresh database of the same schema, as many messages per transaction as
there were connections (`replay.py`), after the servers have stopped.

    python3 bench/mllp.py --seconds 10          # needs a release build
    python3 bench/mllp.py --no-matching         # without the master patient index
"""
import argparse
import asyncio
import datetime
import json
import os
import random
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request

from common import BINARY, free_port, log, save, start, stop
import replay

FACILITY = "bench-hospital"


def msh(kind, control, sender="HIS|bench-hospital", version="2.5"):
    return f"MSH|^~\\&|{sender}|HUITONG|platform|20261124103000||{kind}|{control}|P|{version}|||AL|NE|CHN|UNICODE UTF-8"


# Residents as a registration desk sees them: common surnames, one- or two-character given names,
# birth dates over eight decades, a valid resident ID number (GB 11643), streets of one city. Each
# message is a different resident (a false link between two of them would be the matcher's error).
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国文辉鹏飞玉兰凤红梅琳颖欣怡宇浩然子轩梓涵一诺思雨晨阳佳慧俊博嘉睿雅婷丹志刚永海春燕晓东海燕金凤秋菊德明淑珍"
STREETS = ["人民南路", "春熙路", "红星路", "天府大道", "蜀都大道", "建设路", "府青路", "玉林路", "科华北路", "双楠路",
           "光华大道", "金沙路", "青羊大道", "抚琴路", "一环路", "二环路", "营门口路", "驷马桥路", "沙湾路", "锦华路"]


def resident_id(birth, sequence):
    body = "510104" + birth.replace("-", "") + f"{sequence % 1000:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return body + "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def resident(n):
    r = random.Random(n)
    birth = (datetime.date(1940, 1, 1) + datetime.timedelta(days=r.randrange(80 * 365))).isoformat()
    sex = "MF"[n % 2]
    return {"family": r.choice(SURNAMES), "given": "".join(r.choice(GIVEN) for _ in range(r.choice((1, 2, 2)))),
            "birth": birth, "sex": sex, "rid": resident_id(birth, 2 * (n // 2 % 500) + (1 if sex == "M" else 0)),
            "street": r.choice(STREETS), "house": r.randrange(1, 999), "postal": f"6100{r.randrange(10, 99)}", "phone": f"139{n:08d}"}


def adt(n):
    p = resident(n)
    return "\r".join([msh("ADT^A04^ADT_A01", f"A{n}"), "EVN|A04|20261124103000",
                      f"PID|1||MRN{n}^^^bench-hospital^MR~{p['rid']}^^^CHN^NNCHN||{p['family']}^{p['given']}^^^^^L||{p['birth'].replace('-', '')}|{p['sex']}|||"
                      f"{p['street']}{p['house']}号^^成都市^四川省^{p['postal']}^CHN^H||^PRN^PH^^^^^^^^^{p['phone']}",
                      f"PV1|1|O|门诊^{n % 40}||||D{n % 50}^李^医生||||||||||||V{n}|||||||||||||||||||||||||20261124083000"])


def oru(n):
    # Ten results per patient; a connection's messages never share a patient with another's.
    segments = [msh("ORU^R01^ORU_R01", f"O{n}", sender="LIS|bench-lab"), f"PID|1||MRN{n // 10}^^^bench-hospital^MR",
                f"OBR|1|P{n}|F{n}^LAB|24323-8^Metabolic panel^LN|||20261124070000|||||||||||||||20261124090000||||F"]
    for i in range(1, 11):
        segments.append(f"OBX|{i}|NM|{2000 + i}-1^Item {i}^LN||{(n + i) % 17}.{i}|mmol/L^mmol/L^UCUM|1.0-9.0|N|||F")
    return "\r".join(segments)


def gateway_bundles(make, numbers):
    """The transaction Bundle the gateway commits for each message, as bytes (`huitong bench hl7-bundles`)."""
    lines = "".join(json.dumps(make(n)) + "\n" for n in numbers).encode()
    out = subprocess.run([BINARY, "bench", "hl7-bundles", "--facility", FACILITY], input=lines, capture_output=True, check=True).stdout
    bundles = out.splitlines()
    assert len(bundles) == len(numbers), (len(bundles), len(numbers))
    return dict(zip(numbers, bundles))


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
        msa = ack.split(b"MSA|", 1)[1].split(b"\r", 1)[0].decode().split("|")
        sent = m.split("|", 10)[9]
        assert msa[1] == sent, f"ACK for {msa[1]}, sent {sent}"
        codes[msa[0]] = codes.get(msa[0], 0) + 1
    writer.close()


async def http_sender(port, bodies, deadline, latencies, codes, token):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for body in bodies:
        if time.perf_counter() > deadline:
            break
        t0 = time.perf_counter()
        data = body
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
    assert time.perf_counter() > deadline, "a sender ran out of messages before the deadline"


def numbers(connections, offset, count=None):
    """The message numbers of each connection (`count` each; all it could send by default)."""
    per = 200_000 // connections
    return [[offset + c * per + i for i in range(count or per)] for c in range(connections)]


def run(kind, port, connections, seconds, make, offset, token=None, count=None):
    """`connections` senders, each with its own sequence of messages, for `seconds`."""
    latencies, codes = [], {}
    sequences = numbers(connections, offset, count)

    def messages(c):
        # A function, so that each connection's generator keeps its own `c` (a generator expression
        # inside the comprehension below would read `c` late: every connection would send the
        # last one's messages, and all but one copy would be answered as duplicates).
        return (make(n) for n in sequences[c])

    async def main():
        deadline = time.perf_counter() + seconds
        await asyncio.gather(*[mllp_sender(port, messages(c), deadline, latencies, codes) if kind == "mllp" else
                               http_sender(port, messages(c), deadline, latencies, codes, token)
                               for c in range(connections)])
    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"messages_per_s": round(len(latencies) / elapsed, 1), "messages": len(latencies),
            "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2), "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            "answers": codes}


def compare_on_channels(work, rounds, seconds, prepare, make, label, count_sql, connections=16):
    """What a platform feature costs the ingest hospitals send through: `make(n)`'s messages over
    MLLP, and the gateway's transactions of them over HTTP, `connections` senders each waiting for
    its answer, into a fresh server whose store `prepare(data, True)` readied (the feature on)
    against one `prepare(data, False)` readied; the order alternates between rounds. `count_sql`
    counts, after each run, the rows the feature wrote (none without it)."""
    rows = []
    offset = 0
    for round_ in range(rounds):
        for kind in ("mllp", "http"):
            runs = {}
            for on in ((False, True) if (round_ + (kind == "http")) % 2 == 0 else (True, False)):
                data = tempfile.mkdtemp(dir=work, prefix="channel-")
                prepare(data, on)
                out = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "bench", "--facility", FACILITY,
                                      "--scopes", "system/*.cruds", "--hl7-sender", "LIS^bench-lab", "--hl7-sender", "HIS^bench-hospital"],
                                     check=True, capture_output=True, text=True).stdout
                credentials = dict(line.split(": ", 1) for line in out.splitlines() if line.startswith("client_"))
                port, mllp_port = free_port(), free_port()
                server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", data,
                                "--mllp-port", str(mllp_port)], f"http://127.0.0.1:{port}/ready")
                try:
                    offset += 1_000_000
                    if kind == "mllp":
                        result = run("mllp", mllp_port, connections, seconds, make, offset)
                    else:
                        form = (f"grant_type=client_credentials&client_id={credentials['client_id']}"
                                f"&client_secret={credentials['client_secret'].split()[0]}")
                        request = urllib.request.Request(f"http://127.0.0.1:{port}/auth/token", data=form.encode(),
                                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
                        token = json.load(urllib.request.urlopen(request))["access_token"]
                        count = 400 * seconds // connections + 200
                        bundles = gateway_bundles(make, [n for seq in numbers(connections, offset, count) for n in seq])
                        result = run("http", port, connections, seconds, bundles.__getitem__, offset, token, count)
                finally:
                    stop(server)
                counted = subprocess.run(["sqlite3", os.path.join(data, "huitong.sqlite"), count_sql], capture_output=True, text=True, check=True)
                result["rows_of_the_feature"] = int(counted.stdout.strip())
                accepted = "AA" if kind == "mllp" else "200"
                assert set(result["answers"]) == {accepted}, f"{kind}: answers {result['answers']}"
                runs[on] = result
                shutil.rmtree(data, ignore_errors=True)
            rows.append({"round": round_ + 1, "channel": kind, "without_per_s": runs[False]["messages_per_s"],
                         f"{label}_per_s": runs[True]["messages_per_s"],
                         "ratio": round(runs[True]["messages_per_s"] / runs[False]["messages_per_s"], 3),
                         "p99_ms": {"without": runs[False]["p99_ms"], label: runs[True]["p99_ms"]},
                         "rows_of_the_feature": {"without": runs[False]["rows_of_the_feature"], label: runs[True]["rows_of_the_feature"]},
                         "answers": {"without": runs[False]["answers"], label: runs[True]["answers"]}})
            log("channel round", json.dumps(rows[-1], ensure_ascii=False))
    medians = {kind: statistics.median(r["ratio"] for r in rows if r["channel"] == kind) for kind in ("mllp", "http")}
    return {"connections": connections, "seconds": seconds, "rounds": rows, "median_ratio": medians}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--no-matching", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="copy the gateway's store here (for bench/replay.py)")
    ap.add_argument("--workloads", nargs="+", choices=["ADT^A04", "ORU^R01"], default=["ADT^A04", "ORU^R01"])
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
        store = os.path.join(work, "mllp", "huitong.sqlite")
        segments = []
        for workload in args.workloads:
            for connections in (1, 16):
                offset = 1_000_000 * (len(results) + 1)
                make = adt if workload == "ADT^A04" else oru
                before = replay.marks(store)
                m = run("mllp", servers["mllp"][2], connections, args.seconds, make, offset)
                segments.append((before, replay.marks(store), m["messages"], connections))
                # The same messages' transactions, made ahead (room for 3x the MLLP rate).
                count = min(200_000 // connections, max(200, 3 * m["messages"] // connections))
                bundles = gateway_bundles(make, [n for seq in numbers(connections, offset, count) for n in seq])
                h = run("http", servers["http"][1], connections, args.seconds, bundles.__getitem__, offset, token, count)
                key = f"{workload} x{connections}"
                results[key] = {"mllp": m, "http_transaction": h, "mllp/http": round(m["messages_per_s"] / h["messages_per_s"], 2)}
                log(key, json.dumps(results[key]))
        # Every message is new: none may have been answered as a duplicate.
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{servers['mllp'][1]}/hl7/status"))
        duplicates = sum(sender["counts"].get("duplicate", 0) for sender in status["senders"].values())
        log(f"gateway counts: {json.dumps(status['senders'])}")
        assert duplicates == 0, f"{duplicates} messages were answered as duplicates"
        for p, _, _ in servers.values():
            stop(p)
        if args.keep:
            shutil.copytree(os.path.dirname(store), args.keep, dirs_exist_ok=True)
        for key, raw in zip(results, replay.replay(store, segments)):
            results[key]["sqlite_same_rows"] = raw
            results[key]["mllp/sqlite"] = round(results[key]["mllp"]["messages_per_s"] / raw["messages_per_s"], 2)
            log(key, "raw SQLite, same rows:", json.dumps(raw), "mllp/sqlite", results[key]["mllp/sqlite"])
        save("mllp", {"matching": not args.no_matching, "seconds": args.seconds, "results": results, "gateway": status["senders"]})
    finally:
        for p, _, _ in servers.values():
            stop(p)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
