"""Cost of access control and audit: read-by-id and search throughput of the same data served
twice in one run — with tokens, the access decision and an audit event per request ("on": how
production runs), and as `serve --dev --no-audit` ("off": no token check, nothing recorded) —
wrk alternating between the two. Goal (issue 6): audit + authorization cost <= 15 % of throughput.

    python3 bench/access.py --data /tmp/huitong-bench/synthea-p50-s1   # a store with >= 100,000 resources
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import urllib.parse
import urllib.request

from common import BINARY, LUA, free_port, log, save, start, stop, wrk


def token(port, client_id, secret):
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/auth/token", data=form,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["access_token"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="an imported store (copied twice; the original is not changed)")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()

    db = sqlite3.connect(f"file:{os.path.join(args.data, 'huitong.sqlite')}?mode=ro", uri=True)
    total = db.execute("SELECT COUNT(*) FROM resource WHERE deleted = 0").fetchone()[0]
    keys = db.execute("SELECT type, id FROM resource WHERE deleted = 0 AND type != 'Person'").fetchall()
    patients = [r[0] for r in db.execute("SELECT id FROM resource WHERE type = 'Patient' AND deleted = 0")]
    db.close()
    log(f"{total} resources, {len(patients)} patients")
    assert total >= 100_000, "needs a store with at least 100,000 resources"

    work = tempfile.mkdtemp(prefix="huitong-access-")
    rnd = random.Random(1)
    workloads = {
        "read": [f"/fhir/{t}/{i}" for t, i in rnd.sample(keys, min(20_000, len(keys)))],
        "search": [f"/fhir/Observation?subject=Patient/{p}&_count=10" for p in rnd.sample(patients, min(2_000, len(patients)))],
    }
    scripts = {}
    for name, paths in workloads.items():
        listing = os.path.join(work, f"{name}.txt")
        with open(listing, "w") as f:
            f.writelines(p + "\n" for p in paths)
        scripts[name] = os.path.join(work, f"{name}.lua")
        open(scripts[name], "w").write(LUA % (listing, 1))

    copies = {}
    for mode in ("off", "on"):
        copies[mode] = os.path.join(work, mode)
        log(f"copying the store ({mode})")
        shutil.copytree(args.data, copies[mode], ignore=shutil.ignore_patterns("huitong.lock"))  # keys: the store's own keyring
    # An administrator reads every record (audited, each read as broken glass): this measures tokens
    # and audit; the decision inside the query, for facility readers, is bench/access_query.py's.
    out = subprocess.run([BINARY, "client", "create", "--data", copies["on"], "--name", "bench", "--role", "administrator",
                          "--scopes", "system/*.rs"],
                         check=True, capture_output=True, text=True).stdout
    client_id = next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("client_id: "))
    secret = next(l.split(": ", 1)[1].split()[0] for l in out.splitlines() if l.startswith("client_secret: "))

    ports = {"off": free_port(), "on": free_port()}
    servers = {
        "off": start([BINARY, "serve", "--dev", "--no-audit", "--port", str(ports["off"]), "--data", copies["off"]],
                     f"http://127.0.0.1:{ports['off']}/ready"),
        "on": start([BINARY, "serve", "--host", "127.0.0.1", "--port", str(ports["on"]), "--data", copies["on"],
                     "--public-url", f"http://127.0.0.1:{ports['on']}"],
                    f"http://127.0.0.1:{ports['on']}/ready"),
    }
    results = {}
    try:
        for name, lua in scripts.items():
            def run(mode, seconds):
                headers = [f"Authorization: Bearer {token(ports['on'], client_id, secret)}"] if mode == "on" else []
                return wrk(f"http://127.0.0.1:{ports[mode]}", lua, seconds, connections=args.connections, headers=headers)
            run("off", 3), run("on", 3)  # warm-up
            rounds = []
            for _ in range(args.rounds):
                off, on = run("off", args.seconds), run("on", args.seconds)
                assert off["non_2xx"] == 0 and on["non_2xx"] == 0, (off, on)
                rounds.append({"off": off, "on": on, "ratio": round(on["requests_per_s"] / off["requests_per_s"], 3)})
                log(f"{name}: on {on['requests_per_s']:.0f} req/s, off {off['requests_per_s']:.0f} req/s, ratio {rounds[-1]['ratio']}")
            median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
            results[name] = {"on": median["on"], "off": median["off"], "ratio_on_to_off": median["ratio"],
                             "cost_percent": round(100 * (1 - median["ratio"]), 1),
                             "ratios_all_rounds": [r["ratio"] for r in rounds]}
    finally:
        for s in servers.values():
            stop(s)
    verified = subprocess.run([BINARY, "audit", "verify", "--data", copies["on"]], capture_output=True, text=True)
    log(verified.stdout.strip() or verified.stderr.strip())
    save("access", {
        "resources": total,
        "wrk": f"-t2 -c{args.connections} -d{args.seconds}s, {args.rounds} alternating rounds, median ratio",
        "on": "bearer token (ES256, verified once then cached), access decision, one AuditEvent committed per request",
        "off": "serve --dev --no-audit",
        **results,
        "audit_events_written": verified.stdout.strip(),
        "goal": "cost <= 15 %",
        "cores": os.cpu_count(),
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
