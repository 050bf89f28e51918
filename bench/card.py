"""E-health card verification over HTTP (issue 8): `POST /card/verify` with 8 connections, static
and dynamic codes of 1,000 issued cards at the facility that registered the residents (a
registration window's steady state: the resident is known, each scan is audited, each dynamic
scan also records its use), against `GET /health` of the same server in the same run (a bare
Hummingbird endpoint) and an audited FHIR read of the same residents' Persons. Goal: >= 5,000
verifications/s on these machines.

    python3 bench/card.py                  # release binary (HUITONG_BIN to override)
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import urllib.parse
import urllib.request

from common import BINARY, free_port, log, save, start, stop, wrk

POST_LUA = """
local bodies = {}
for line in io.lines("%s") do bodies[#bodies + 1] = line end
math.randomseed(%d)
local headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"}
request = function()
  return wrk.format("POST", "/card/verify", headers, bodies[math.random(#bodies)])
end
"""

GET_LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(%d)
local headers = {["Authorization"] = "Bearer %s"}
request = function()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""


def check_digit(body):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def call(port, method, path, token, body=None, form=False):
    data = None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        data = (urllib.parse.urlencode(body) if form else json.dumps(body)).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded" if form else "application/json"
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method, headers=headers)
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=8)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="huitong-card-")
    data = os.path.join(work, "data")
    out = subprocess.run([BINARY, "client", "create", "--data", data, "--name", "registration", "--facility", "city-hospital",
                          "--scopes", "system/*.cruds"], check=True, capture_output=True, text=True).stdout
    client_id = next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("client_id: "))
    secret = next(l.split(": ", 1)[1].split()[0] for l in out.splitlines() if l.startswith("client_secret: "))
    port = free_port()
    # Dynamic codes are made once per round and scanned many times here: the limit is lifted so that
    # every scan is a successful use (each still inserts its use record), as many residents' codes would be.
    server = start([BINARY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", data,
                    "--public-url", f"http://127.0.0.1:{port}", "--card-code-lifetime", "3600", "--card-code-max-uses", "1000000000", "--auth-rate-limit", "0"],
                   f"http://127.0.0.1:{port}/ready")

    def token():
        return call(port, "POST", "/auth/token", None, {"grant_type": "client_credentials", "client_id": client_id,
                                                       "client_secret": secret}, form=True)["access_token"]

    results = {}
    try:
        t = token()
        rnd = random.Random(8)
        cards, persons = [], []
        for start_at in range(0, args.residents, 100):
            entries = []
            for i in range(start_at, min(start_at + 100, args.residents)):
                body = f"510104{1950 + i % 60:04d}{1 + i % 12:02d}{1 + i % 28:02d}{i % 1000:03d}"
                entries.append({"resource": {"resourceType": "Patient",
                                             "identifier": [{"system": "urn:huitong:mrn:city-hospital", "value": f"M{i}"},
                                                            {"system": "urn:oid:2.16.156.10011.1.3", "value": body + check_digit(body)}],
                                             "name": [{"family": rnd.choice("王李张刘陈杨"), "given": [f"测{i}"]}],
                                             "gender": "male" if i % 2 else "female",
                                             "birthDate": f"{1950 + i % 60:04d}-{1 + i % 12:02d}-{1 + i % 28:02d}"},
                                "request": {"method": "POST", "url": "Patient"}})
            bundle = call(port, "POST", "/fhir", t, {"resourceType": "Bundle", "type": "transaction", "entry": entries})
            for e in bundle["entry"]:
                patient = e["response"]["location"].split("/_history")[0]
                card = call(port, "POST", "/card/issue", t, {"patient": patient})
                cards.append(card["id"])
                persons.append(card["person"])
        log(f"{len(cards)} cards issued")

        def listing(name, lines):
            path = os.path.join(work, name)
            with open(path, "w") as f:
                f.writelines(line + "\n" for line in lines)
            return path

        def dynamic_codes():
            tk = token()
            return [json.dumps({"code": call(port, "GET", f"/card/{c}/qr", tk)["text"], "scene": "0101012"}) for c in cards]

        static = listing("static.txt", [json.dumps({"code": c + ":1", "scene": "0101011"}) for c in cards])
        reads = listing("reads.txt", [f"/fhir/{p}" for p in persons])
        health = listing("health.txt", ["/health"])

        def run(kind, seconds):
            tk = token()
            if kind == "static":
                lua = POST_LUA % (static, 1, tk)
            elif kind == "dynamic":
                lua = POST_LUA % (listing("dynamic.txt", dynamic_codes()), 1, tk)
            else:
                lua = GET_LUA % (reads if kind == "fhir-read" else health, 1, tk)
            path = os.path.join(work, f"{kind}.lua")
            open(path, "w").write(lua)
            return wrk(f"http://127.0.0.1:{port}", path, seconds, connections=args.connections)

        kinds = ["bare", "fhir-read", "static", "dynamic"]
        for k in kinds:
            run(k, 3)  # warm-up
        rounds = []
        for _ in range(args.rounds):
            r = {k: run(k, args.seconds) for k in kinds}
            for k in kinds:
                assert r[k]["non_2xx"] == 0, (k, r[k])
            rounds.append(r)
            log(", ".join(f"{k} {r[k]['requests_per_s']:.0f}/s" for k in kinds))
        for k in kinds:
            ordered = sorted(rounds, key=lambda r: r[k]["requests_per_s"])
            results[k] = ordered[len(ordered) // 2][k]
    finally:
        stop(server)
    verified = subprocess.run([BINARY, "audit", "verify", "--data", data], capture_output=True, text=True)
    log(verified.stdout.strip() or verified.stderr.strip())
    save("card", {
        "cards": args.residents,
        "wrk": f"-t2 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds, median",
        "bare": "GET /health of the same server (no token, no store)",
        "fhir-read": "GET /fhir/Person/{id} of the card holders (token, access decision, audit event)",
        "static": "POST /card/verify with '<card id>:1' (card record, Person, facility's Patient, audit event)",
        "dynamic": "as static, plus SM4 decryption of the validity and the use record inserted with the audit event",
        **results,
        "static_to_bare": round(results["static"]["requests_per_s"] / results["bare"]["requests_per_s"], 3),
        "dynamic_to_bare": round(results["dynamic"]["requests_per_s"] / results["bare"]["requests_per_s"], 3),
        "dynamic_to_fhir_read": round(results["dynamic"]["requests_per_s"] / results["fhir-read"]["requests_per_s"], 3),
        "audit": verified.stdout.strip(),
        "goal": ">= 5,000 verifications/s with 8 connections",
        "cores": os.cpu_count(),
    })
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
