"""Master patient index at regional scale: one new Patient against 1,000,000 residents.

1. A synthetic population of N residents (Chinese names drawn from pools built with PyPI faker
   zh_CN, valid resident IDs, phones, addresses) goes in through `huitong import --no-matching`
   (the throughput baseline: plain creates, records/s).
2. Throughput: `huitong empi rebuild` then matches all N Patients (records/s), which leaves the
   store with N master Persons (cached outside git for the next run).
3. Latency: one client creates Patients one by one (`PUT /fhir/Patient/{id}`): half re-registrations
   of stored residents (another facility, sometimes without ID, sometimes with a typo), half new
   people. Baseline in the same run: the same creates on a copy of the store served with
   `--no-matching`, the two servers taking each probe in turn. Before its create, each probe is
   also asked as `Patient/$match` (the matching alone, nothing written).

    python3 bench/empi_scale.py --residents 1000000     # release build; faker; ~1 hour, ~25 GB
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, CACHE, free_port, log, save, start, stop  # noqa: E402

RID = "urn:oid:2.16.156.10011.1.3"


def check_char(body):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


class Population:
    """Residents from pools of names and places (faker zh_CN), fast enough for millions."""

    def __init__(self, seed):
        from faker import Faker
        fake = Faker("zh_CN")
        Faker.seed(seed)
        self.rnd = random.Random(seed)
        self.families = [fake.last_name() for _ in range(3000)]
        self.given_m = list({fake.first_name_male() for _ in range(3000)})
        self.given_f = list({fake.first_name_female() for _ in range(3000)})
        self.places = [(fake.province(), fake.city(), fake.district(), fake.postcode()) for _ in range(2000)]
        self.streets = [fake.street_name() for _ in range(3000)]
        self.regions = [f"{self.rnd.randint(11, 65):02d}{self.rnd.randint(1, 20):02d}{self.rnd.randint(1, 30):02d}" for _ in range(300)]

    def resident(self, i):
        r = random.Random(i * 7919 + 17)
        gender = "male" if r.random() < 0.5 else "female"
        birth = f"{r.randint(1935, 2024)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}"
        body = r.choice(self.regions) + birth.replace("-", "") + f"{(i % 500) * 2 + (1 if gender == 'male' else 0):03d}"
        province, city, district, postcode = r.choice(self.places)
        return {"family": r.choice(self.families), "given": r.choice(self.given_m if gender == "male" else self.given_f),
                "gender": gender, "birth": birth, "rid": body + check_char(body), "phone": f"1{r.randint(3, 9)}{r.randint(100000000, 999999999)}",
                "place": (province, city, district, postcode), "street": f"{r.choice(self.streets)}{r.randint(1, 300)}号"}


def patient(pid, facility, p, rid=True, given=None):
    province, city, district, postcode = p["place"]
    out = {"resourceType": "Patient", "id": pid,
           "identifier": [{"system": f"urn:huitong:mrn:{facility}", "value": pid}],
           "name": [{"family": p["family"], "given": [given or p["given"]]}], "gender": p["gender"], "birthDate": p["birth"],
           "telecom": [{"system": "phone", "value": p["phone"]}],
           "address": [{"state": province, "city": city, "district": district, "line": [p["street"]], "postalCode": postcode}]}
    if rid:
        out["identifier"].append({"system": RID, "value": p["rid"]})
    return out


def write_ndjson(pop, n, directory, files=8):
    os.makedirs(directory, exist_ok=True)
    handles = [open(os.path.join(directory, f"part-{k}.ndjson"), "w") for k in range(files)]
    for i in range(n):
        handles[i % files].write(json.dumps(patient(f"r{i}", "county", pop.resident(i)), ensure_ascii=False) + "\n")
    for h in handles:
        h.close()


def run(args, work):
    pop = Population(args.seed)
    data = os.path.join(CACHE, f"empi-scale-{args.residents}")
    ndjson = os.path.join(CACHE, f"empi-scale-{args.residents}-ndjson")
    if not os.path.exists(os.path.join(ndjson, "part-0.ndjson")):
        log(f"writing {args.residents} residents as NDJSON")
        write_ndjson(pop, args.residents, ndjson)
    result = {"residents": args.residents}
    # Throughput: plain import (baseline), then rebuild, which matches every record; a cached
    # store (from an earlier run) is rebuilt on a copy.
    cached = os.path.exists(os.path.join(data, "huitong.sqlite"))
    if cached and args.latency_only:
        return latency(args, pop, data, work, result)
    target = data if not cached else os.path.join(work, "plain")
    log("importing without matching")
    t0 = time.perf_counter()
    subprocess.run([BINARY, "import", ndjson, "--data", target, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result["import_without_matching_records_per_s"] = round(args.residents / (time.perf_counter() - t0))
    log("rebuilding the master index", result)
    t0 = time.perf_counter()
    subprocess.run([BINARY, "empi", "rebuild", "--data", target], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result["rebuild_records_per_s"] = round(args.residents / (time.perf_counter() - t0))
    result["rebuild_ratio_to_plain_import"] = round(result["rebuild_records_per_s"] / result["import_without_matching_records_per_s"], 3)
    log("rebuilt", result)
    if target != data:
        shutil.rmtree(target, ignore_errors=True)
    latency(args, pop, data, work, result)


def latency(args, pop, data, work, result):
    # Latency, matching on and off, alternating over copies of the same store.
    rnd = random.Random(args.seed + 1)
    probes = []
    for k in range(args.probes):
        if k % 2 == 0:
            i = rnd.randrange(args.residents)
            p = pop.resident(i)
            given = p["given"] if rnd.random() < 0.8 else p["given"][:-1] + rnd.choice("安邦昌达德")
            probes.append(patient(f"probe-{k}", "city", p, rid=rnd.random() < 0.6, given=given))
        else:
            probes.append(patient(f"probe-{k}", "city", pop.resident(args.residents + 1000 + k)))
    # Both servers run at once and take each probe in random order, so that drift of the machine
    # (page cache, other load) falls on both columns alike.
    servers = {}
    times = {"plain": [], "matching": [], "match_operation": []}
    try:
        for mode in ["matching", "plain"]:
            copy = os.path.join(work, mode)
            shutil.copytree(data, copy, ignore=shutil.ignore_patterns("huitong.lock"))
            port = free_port()
            servers[mode] = (start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", copy]
                                   + (["--no-matching"] if mode == "plain" else []), f"http://127.0.0.1:{port}/ready"), port)
        for p in probes:
            body = json.dumps(p, ensure_ascii=False).encode()
            # Patient/$match first (reads only: the candidates and their scores), then the creates.
            ask = json.dumps({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": p}]}, ensure_ascii=False).encode()
            steps = [("match_operation", "matching", "POST", "/fhir/Patient/$match", ask)]
            order = ["matching", "plain"] if rnd.random() < 0.5 else ["plain", "matching"]
            steps += [(mode, mode, "PUT", f"/fhir/Patient/{p['id']}", body) for mode in order]
            for column, mode, method, path, data_ in steps:
                req = urllib.request.Request(f"http://127.0.0.1:{servers[mode][1]}{path}", data=data_, method=method,
                                             headers={"Content-Type": "application/fhir+json", "Prefer": "return=minimal"})
                t0 = time.perf_counter()
                with urllib.request.urlopen(req, timeout=60) as r:
                    r.read()
                times[column].append((time.perf_counter() - t0) * 1000)
    finally:
        for server, _ in servers.values():
            stop(server)
        for mode in servers:
            shutil.rmtree(os.path.join(work, mode), ignore_errors=True)
    latencies = {}
    for column, t in times.items():
        t = t[len(t) // 10:]  # warm-up
        latencies[column] = {"p50_ms": round(statistics.median(t), 2), "p99_ms": round(sorted(t)[int(len(t) * 0.99) - 1], 2),
                             "mean_ms": round(statistics.mean(t), 2)}
        log(column, latencies[column])
    result["create_latency_one_client"] = latencies
    result["matching_adds_to_create_p50"] = round(latencies["matching"]["p50_ms"] / latencies["plain"]["p50_ms"] - 1, 3)
    result["matching_adds_to_create_mean"] = round(latencies["matching"]["mean_ms"] / latencies["plain"]["mean_ms"] - 1, 3)
    save("empi-scale", dict(result, cores=os.cpu_count()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=1_000_000)
    ap.add_argument("--probes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--latency-only", action="store_true", help="with a cached store: skip import and rebuild")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="huitong-empi-scale-")
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
