"""Change-feed dispatcher (ADR 020): latency from a commit's acknowledgement to a consumer's
handler, at a steady write rate (default 1,000 changes/s for 10 s, 16 writers through the write
pipeline). The baseline, in the same run and on the same changes, is a consumer that asks the feed
every millisecond (`huitong bench change-feed` runs both). Issue 26's targets: dispatcher p99
< 50 ms on SQLite, < 200 ms on PostgreSQL.

    python3 bench/change_feed.py                              # needs a release build
    python3 bench/change_feed.py --postgres postgres://...    # also on PostgreSQL (a fresh database)
"""
import argparse
import json
import shutil
import subprocess
import tempfile
import uuid

from common import BINARY, log, save


def run(args, store_args):
    done = subprocess.run([BINARY, "bench", "change-feed", *store_args, "--rate", str(args.rate), "--seconds", str(args.seconds),
                           "--writers", str(args.writers), "--batch", str(args.batch)], capture_output=True, text=True, check=True)
    lines = [json.loads(l) for l in done.stdout.splitlines() if l.startswith("{")]
    return {"dispatcher": lines[0], "poll_1ms": lines[1], **lines[2]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--writers", type=int, default=16)
    ap.add_argument("--batch", type=int, default=1, help="changes per committed unit")
    ap.add_argument("--postgres", help="a PostgreSQL server URL; a fresh database is made on it")
    args = ap.parse_args()
    results = {}
    data = tempfile.mkdtemp(prefix="huitong-cf-")
    try:
        results["sqlite"] = run(args, ["--data", data])
        log("sqlite", json.dumps(results["sqlite"]))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    if args.postgres:
        name = "huitong_cf_" + uuid.uuid4().hex[:8]
        subprocess.run(["psql", args.postgres, "-qAtc", f"CREATE DATABASE {name}"], check=True)
        head, _, tail = args.postgres.partition("?")
        url = head.rsplit("/", 1)[0] + "/" + name + ("?" + tail if tail else "")
        try:
            results["postgres"] = run(args, ["--database", url])
            log("postgres", json.dumps(results["postgres"]))
        finally:
            subprocess.run(["psql", args.postgres, "-qAtc", f"DROP DATABASE IF EXISTS {name}"])
    save("change_feed", {"rate": args.rate, "seconds": args.seconds, "writers": args.writers, "batch": args.batch, "results": results})


if __name__ == "__main__":
    main()
