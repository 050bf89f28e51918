"""Record sharing (issue 29), release build, in one run:

1. `Patient/[id]/$recognizable-results` on a store of N residents (default 1,000,000), each with a
   haemoglobin or creatinine result at facility A (HR-marked at import: the catalogue and A's QC
   passes are loaded first), asked by facility B — a real token, the access decision, B treating
   the residents asked about (an open Encounter each) — for random residents, 8 clients and 1
   client; target p99 < 20 ms. Baseline in the same run: the search the operation rests on,
   `Observation?subject=Patient/x&code=...` by the same client.
2. HR stamping: `huitong import` of the same Observations into a store with the catalogue and QC
   passes loaded and into one without, alternating rounds; target: with / without >= 0.90. The
   same on the channels hospitals send through (`stamping-channels`): ORU^R01 of 10 catalogue
   results over MLLP, and the gateway's transactions of them over HTTP, 16 senders.
3. MHD provide (ITI-65) of a 1 MB CDA document — a transaction of a SubmissionSet List, the
   DocumentReference (subject, type and id from the CDA header) and the Binary — through HTTP, 8
   clients; target >= 100/s. Baseline: raw SQLite inserts of the same request bodies, one
   committed row each (WAL, synchronous=NORMAL).
4. Binaries in their own content type (`--only binary`): POST of a 10 MB `application/pdf`
   document (the server makes the Binary), against raw SQLite inserts of the same bytes; reads of
   it with `Accept: application/pdf` and as FHIR JSON, 8 clients, each on a fresh server, with the
   server's peak resident memory after each. Twice in the same run: streamed (ADR 029, the
   default above 4 MiB) and held whole in the Binary's JSON as before (`--document-stream-threshold`
   above the document's size).

5. Documents streamed (`--only stream`, ADR 029): a 256 MiB document POSTed in its own type with
   curl (`-T`, which asks `Expect: 100-continue` first) and read back with curl, 3 rounds each, then 4 reads at once; MB/s and the server's peak resident
   memory. Baselines in the same run: the same bytes written to a file and fsynced (what storing
   them costs at the least), and read back from that file (page cache).

    python3 bench/sharing.py [--residents 1000000] [--seconds 10] [--observations 100000]
"""
import argparse
import datetime
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

import chinese_households
from common import BINARY, CACHE, free_port, log, lua_get, save, start, stop, token, wrk
from mhd_documents import cda, provide
import mllp

LOINC = "http://loinc.org"
CATALOGUE = ("system,code,display,category,validity_days,scope,price\n"
             f"{LOINC},718-7,血红蛋白,lab,30,province,5\n{LOINC},2160-0,肌酐,lab,30,province,6\n"
             f"{LOINC},1742-6,ALT,lab,30,province,6\n{LOINC},4548-4,HbA1c,lab,90,province,60\n")
CODES = ["718-7", "2160-0", "1742-6", "4548-4"]


def day(offset):
    return (datetime.date.today() + datetime.timedelta(days=offset)).isoformat()


def lists(work, facility):
    catalogue = os.path.join(work, "catalogue.csv")
    open(catalogue, "w").write(CATALOGUE)
    qc = os.path.join(work, "qc.csv")
    open(qc, "w").write("facility,system,code,scope,valid_from,valid_to\n" +
                        "".join(f"{facility},{LOINC},{c},province,{day(-400)},{day(400)}\n" for c in CODES))
    return catalogue, qc


def load_lists(data, work, facility="org-a"):
    """The catalogue, and `facility`'s QC passes for its items."""
    catalogue, qc = lists(work, facility)
    subprocess.run([BINARY, "sharing", "load-catalogue", catalogue, "--data", data], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([BINARY, "sharing", "load-qc", qc, "--data", data], check=True, stdout=subprocess.DEVNULL)


def observation(i, patient, rnd):
    t = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=8))) - datetime.timedelta(days=rnd.randrange(60), minutes=rnd.randrange(1440))
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final", "meta": {"source": "urn:huitong:facility:org-a"},
            "subject": {"reference": f"Patient/{patient}"}, "code": {"coding": [{"system": LOINC, "code": rnd.choice(CODES)}]},
            "effectiveDateTime": t.replace(microsecond=0).isoformat(), "valueQuantity": {"value": 130, "unit": "g/L"}}


def organizations(folder):
    with open(os.path.join(folder, "0-organizations.ndjson"), "w") as f:
        for org, city in (("org-a", "成都市"), ("org-b", "绵阳市")):
            f.write(json.dumps({"resourceType": "Organization", "id": org, "name": org, "address": [{"city": city, "state": "四川省"}]},
                               ensure_ascii=False) + "\n")


def resident_store(n, asked, work):
    """n residents with one result each at A (marked at import), B treating the first `asked`; cached by n."""
    data = os.path.join(CACHE, f"sharing-residents-{n}")
    if os.path.exists(os.path.join(data, "huitong.sqlite")):
        return data
    tmp = data + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    load_lists(tmp, work)
    folder = os.path.join(work, "residents")
    os.makedirs(folder)
    organizations(folder)
    rnd = random.Random(11)
    per_file = 100_000
    for k in range(0, n, per_file):
        with open(os.path.join(folder, f"1-patients-{k // per_file:03d}.ndjson"), "w") as f:
            for i in range(k, min(n, k + per_file)):
                f.write(json.dumps({"resourceType": "Patient", "id": f"p{i}", "meta": {"source": "urn:huitong:facility:org-a"},
                                    "gender": "unknown"}) + "\n")
    log(f"importing {n} residents")
    t = time.time()
    subprocess.run([BINARY, "import", folder, "--data", tmp, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shutil.rmtree(folder)
    os.makedirs(folder)
    for k in range(0, n, per_file):
        with open(os.path.join(folder, f"2-results-{k // per_file:03d}.ndjson"), "w") as f:
            for i in range(k, min(n, k + per_file)):
                f.write(json.dumps(observation(i, f"p{i}", rnd)) + "\n")
    with open(os.path.join(folder, "3-encounters.ndjson"), "w") as f:
        for i in range(asked):
            f.write(json.dumps({"resourceType": "Encounter", "id": f"e{i}", "status": "in-progress", "class": {"code": "AMB"},
                                "meta": {"source": "urn:huitong:facility:org-b"}, "subject": {"reference": f"Patient/p{i * (n // asked)}"}}) + "\n")
    subprocess.run([BINARY, "import", folder, "--data", tmp, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log(f"imported in {time.time() - t:.0f} s")
    shutil.rmtree(folder)
    os.rename(tmp, data)
    return data


def client(data, name, facility):
    out = subprocess.run([BINARY, "client", "create", "--data", data, "--name", name, "--role", "facility-system", "--facility", facility,
                          "--scopes", "system/*.cruds"], check=True, capture_output=True, text=True).stdout
    return (next(l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("client_id: ")),
            next(l.split(": ", 1)[1].split()[0] for l in out.splitlines() if l.startswith("client_secret: ")))


def measure(url, script, seconds, headers):
    many = wrk(url, script, seconds, headers=headers)
    one = wrk(url, script, max(3, seconds // 2), connections=1, threads=1, headers=headers)
    return {"requests_per_s_8_clients": many["requests_per_s"], "p50_ms_8_clients": many["p50_ms"], "p99_ms_8_clients": many["p99_ms"],
            "single_client_p50_ms": one["p50_ms"], "single_client_p99_ms": one["p99_ms"], "non_2xx": many["non_2xx"] + one["non_2xx"]}


def recognizable(args, work):
    asked = 5000
    data = resident_store(args.residents, asked, work)
    copy = os.path.join(work, "store")
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("huitong.lock"))
    client_id, secret = client(copy, "乡镇卫生院 HIS", "org-b")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start([BINARY, "serve", "--host", "127.0.0.1", "--port", str(port), "--data", copy, "--no-matching",
                    "--public-url", base], f"{base}/ready")
    try:
        headers = [f"Authorization: Bearer {token(port, client_id, secret)}"]
        rnd = random.Random(3)
        step = args.residents // asked
        people = [f"p{i * step}" for i in range(asked)]
        q = urllib.parse.quote
        # Check once that the answers have what they should: the first resident's one result, a match
        # for its own item and nothing for the others.
        matches = 0
        for code in CODES:
            probe = urllib.request.Request(f"{base}/fhir/Patient/{people[0]}/$recognizable-results?code={q(LOINC + '|' + code)}",
                                           headers={"Authorization": headers[0].split(": ", 1)[1]})
            with urllib.request.urlopen(probe) as r:
                matches += sum(1 for e in json.load(r).get("entry", []) if e["search"]["mode"] == "match")
        results = {"probe_matches_of_first_resident": matches}
        ops = [f"/fhir/Patient/{p}/$recognizable-results?code={q(LOINC + '|' + rnd.choice(CODES))}" for p in people]
        searches = [f"/fhir/Observation?subject=Patient/{p}&code={q(LOINC + '|' + rnd.choice(CODES))}" for p in people]
        results["search_baseline"] = measure(base, lua_get(work, "search", searches), args.seconds, headers)
        results["recognizable_results"] = measure(base, lua_get(work, "recognizable", ops), args.seconds, headers)
        results["ratio_p99_single_client_to_search"] = round(results["recognizable_results"]["single_client_p99_ms"]
                                                             / results["search_baseline"]["single_client_p99_ms"], 2)
        return results
    finally:
        stop(server)


def stamping(args, work):
    rnd = random.Random(17)
    folder = os.path.join(work, "stamping")
    os.makedirs(folder)
    organizations(folder)
    with open(os.path.join(folder, "1-patients.ndjson"), "w") as f:
        for p in range(10_000):
            f.write(json.dumps({"resourceType": "Patient", "id": f"p{p}", "gender": "unknown", "meta": {"source": "urn:huitong:facility:org-a"}}) + "\n")
    per_file = 25_000
    files = []
    for k in range(0, args.observations, per_file):
        path = os.path.join(folder, f"2-results-{k // per_file:03d}.ndjson")
        with open(path, "w") as f:
            for i in range(k, min(args.observations, k + per_file)):
                f.write(json.dumps(observation(i, f"p{i % 10_000}", rnd)) + "\n")
        files.append(path)
    base_files = [os.path.join(folder, "0-organizations.ndjson"), os.path.join(folder, "1-patients.ndjson")]
    rows = []
    for round_ in range(args.rounds):
        for marked in ((False, True) if round_ % 2 == 0 else (True, False)):
            data = tempfile.mkdtemp(dir=work, prefix="stamp-")
            if marked:
                load_lists(data, work)
            subprocess.run([BINARY, "import", *base_files, "--data", data, "--no-matching"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t = time.time()
            subprocess.run([BINARY, "import", *files, "--data", data, "--no-matching"], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            elapsed = time.time() - t
            marks = subprocess.run(["sqlite3", os.path.join(data, "huitong.sqlite"),
                                    "SELECT COUNT(*) FROM idx_token WHERE type='Observation' AND param='_tag' AND code LIKE 'HR-%'"],
                                   capture_output=True, text=True).stdout.strip()
            rows.append({"round": round_ + 1, "catalogue": marked, "per_s": round(args.observations / elapsed), "marked": int(marks or 0)})
            log(rows[-1])
            shutil.rmtree(data, ignore_errors=True)
    ratios = []
    for r in range(1, args.rounds + 1):
        w = next(x for x in rows if x["round"] == r and x["catalogue"])
        wo = next(x for x in rows if x["round"] == r and not x["catalogue"])
        ratios.append(round(w["per_s"] / wo["per_s"], 3))
    return {"rounds": rows, "with_over_without": ratios}


def oru_catalogued(n):
    """mllp.py's ORU^R01 (10 OBX), each result of a catalogue item (all of them stamped where the
    catalogue and the facility's QC passes are loaded)."""
    r = random.Random(n)
    segments = [mllp.msh("ORU^R01^ORU_R01", f"O{n}", sender="LIS|bench-lab"), f"PID|1||MRN{n // 10}^^^bench-hospital^MR",
                f"OBR|1|P{n}|F{n}^LAB|24323-8^Metabolic panel^LN|||{day(-3).replace('-', '')}070000|||||||||||||||"
                f"{day(-3).replace('-', '')}090000||||F"]
    for i in range(1, 11):
        segments.append(f"OBX|{i}|NM|{r.choice(CODES)}^Item^LN||{(n + i) % 17}.{i}|mmol/L^mmol/L^UCUM|1.0-9.0|N|||F")
    return "\r".join(segments)


def stamping_channels(args, work):
    """HR stamping on the channels hospitals send through: ORU^R01 over MLLP and the gateway's
    transactions over HTTP, into a server with the catalogue and the facility's QC passes loaded
    against one without (mllp.compare_on_channels)."""
    def prepare(data, with_catalogue):
        if with_catalogue:
            load_lists(data, work, mllp.FACILITY)

    return mllp.compare_on_channels(work, args.rounds, args.seconds, prepare, oru_catalogued, "with_catalogue",
                                    "SELECT COUNT(*) FROM idx_token WHERE type='Observation' AND param='_tag' AND code LIKE 'HR-%'")


def cda_document(rid, size):
    head = cda(rid, "BENCH-1")
    # A 1 MB document: the header, then narrative sections up to the size.
    body = "<component><section><text>" + ("住院经过：抗感染治疗后好转。" * 40) + "</text></section></component>\n"
    filler = body.encode() * (size // len(body.encode()))
    return head.replace(b"<structuredBody>", b"<structuredBody>" + filler)


def raw_blob_inserts(path, body, n):
    """Raw SQLite inserts of `body`, one committed row each (WAL, synchronous=NORMAL): per second."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE doc (id INTEGER PRIMARY KEY, body BLOB)")
    t = time.time()
    for _ in range(n):
        db.execute("BEGIN")
        db.execute("INSERT INTO doc (body) VALUES (?)", (body,))
        db.execute("COMMIT")
    rate = n / (time.time() - t)
    db.close()
    return rate


def mhd(args, work):
    rid = chinese_households.resident_id("510104", "1966-06-06", 61)
    document = cda_document(rid, 1_000_000)
    bundle = json.dumps(provide(document)).encode()
    log(f"document {len(document)} bytes, request {len(bundle)} bytes")
    # Baseline: the same request bodies as raw SQLite rows.
    raw = raw_blob_inserts(os.path.join(work, "raw.sqlite"), bundle, 300)

    data = os.path.join(work, "mhd")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start([BINARY, "serve", "--dev", "--port", str(port), "--data", data, "--no-matching"], f"{base}/ready")
    try:
        req = urllib.request.Request(f"{base}/fhir/Patient", method="POST", headers={"Content-Type": "application/fhir+json"},
                                     data=json.dumps({"resourceType": "Patient", "identifier": [
                                         {"system": "urn:oid:2.16.156.10011.1.3", "value": rid}]}).encode())
        urllib.request.urlopen(req).read()
        body = os.path.join(work, "provide.json")
        open(body, "wb").write(bundle)
        script = os.path.join(work, "provide.lua")
        open(script, "w").write(f"""
local f = io.open("{body}", "rb")
wrk.body = f:read("*all")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/fhir+json"
""")
        result = wrk(base + "/fhir", script, args.seconds)
        stored = json.load(urllib.request.urlopen(f"{base}/fhir/DocumentReference?_summary=count"))["total"]
        return {"document_bytes": len(document), "request_bytes": len(bundle), "provide": result, "documents_stored": stored,
                "raw_sqlite_inserts_per_s": round(raw), "ratio_to_raw": round(result["requests_per_s"] / raw, 3)}
    finally:
        stop(server)


def peak_rss_mb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)


def binary(args, work):
    document = b"%PDF-1.7\n" + random.Random(29).randbytes(10 * 1024 * 1024)
    n = 30
    raw = raw_blob_inserts(os.path.join(work, "raw-binary.sqlite"), document, n)
    out = {"document_bytes": len(document), "raw_sqlite_inserts_per_s": round(raw, 1)}
    # Streamed (ADR 029, the default above 4 MiB) and, in the same run, held whole in the
    # Binary's JSON as before it (the threshold raised above the document).
    for mode, threshold in (("streamed", 4 * 1024 * 1024), ("in_json", 64 * 1024 * 1024)):
        data = os.path.join(work, "binary-" + mode)
        result = out[mode] = {}
        for accept in ("application/pdf", "application/fhir+json"):
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            server = start([BINARY, "serve", "--dev", "--port", str(port), "--data", data, "--no-matching",
                            "--document-stream-threshold", str(threshold)], f"{base}/ready")
            try:
                if "upload_per_s" not in result:
                    t = time.time()
                    for _ in range(n):
                        req = urllib.request.Request(f"{base}/fhir/Binary", method="POST", data=document,
                                                     headers={"Content-Type": "application/pdf", "Prefer": "return=minimal"})
                        location = urllib.request.urlopen(req).headers["Location"]
                    upload = n / (time.time() - t)
                    result["upload_per_s"] = round(upload, 1)
                    result["upload_ratio_to_raw"] = round(upload / raw, 3)
                    result["peak_rss_mb_after_uploads"] = peak_rss_mb(server.pid)
                    binary_id = location.split("Binary/")[1].split("/")[0]
                script = lua_get(work, "binary-" + accept.split("/")[1].split("+")[0], [f"/fhir/Binary/{binary_id}"])
                read = wrk(base, script, args.seconds, headers=[f"Accept: {accept}"])
                read["peak_rss_mb"] = peak_rss_mb(server.pid)
                result["read_as_" + ("document" if accept == "application/pdf" else "fhir_json")] = read
            finally:
                stop(server)
        log(f"{mode}: {result}")
    out["streamed_to_in_json"] = {
        "upload": round(out["streamed"]["upload_per_s"] / out["in_json"]["upload_per_s"], 3),
        "read_as_document": round(out["streamed"]["read_as_document"]["requests_per_s"] / out["in_json"]["read_as_document"]["requests_per_s"], 3),
        "read_as_fhir_json": round(out["streamed"]["read_as_fhir_json"]["requests_per_s"] / out["in_json"]["read_as_fhir_json"]["requests_per_s"], 3),
    }
    return out


def stream(args, work):
    size = 256 * 1024 * 1024
    source = os.path.join(work, "document.bin")
    rng = random.Random(29)
    with open(source, "wb") as f:
        for _ in range(size // (8 * 1024 * 1024)):
            f.write(rng.randbytes(8 * 1024 * 1024))
    mb = size / (1024 * 1024)

    def file_write():
        copy = os.path.join(work, "copy.bin")
        t = time.time()
        with open(source, "rb") as src, open(copy, "wb") as dst:
            while chunk := src.read(1024 * 1024):
                dst.write(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        elapsed = time.time() - t
        os.remove(copy)
        return mb / elapsed

    def file_read():
        t = time.time()
        with open(source, "rb") as src:
            while src.read(1024 * 1024):
                pass
        return mb / (time.time() - t)

    def curl(*arguments):
        t = time.time()
        out = subprocess.run(["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{http_code}", *arguments], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return time.time() - t, out.stdout

    data = os.path.join(work, "stream")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start([BINARY, "serve", "--dev", "--port", str(port), "--data", data, "--no-matching"], f"{base}/ready")
    out = {"document_mb": mb, "rounds": []}
    try:
        started_rss = peak_rss_mb(server.pid)
        ids = []
        for _ in range(3):
            written = file_write()
            t = time.time()
            posted = subprocess.run(["curl", "-s", "-f", "-X", "POST", "-T", source, "-H", "Content-Type: application/octet-stream",
                                     "-H", "Prefer: return=minimal", "-D", "-", "-o", "/dev/null", f"{base}/fhir/Binary"],
                                    capture_output=True, text=True, check=True)
            upload = mb / (time.time() - t)
            location = next(line for line in posted.stdout.splitlines() if line.lower().startswith("location:"))
            ids.append(location.split("Binary/")[1].split("/")[0].strip())
            read = file_read()
            elapsed, status = curl("-H", "Accept: application/octet-stream", f"{base}/fhir/Binary/{ids[-1]}")
            assert status == "200"
            download = mb / elapsed
            out["rounds"].append({"upload_mb_per_s": round(upload, 1), "file_write_fsync_mb_per_s": round(written, 1),
                                  "upload_ratio": round(upload / written, 3), "download_mb_per_s": round(download, 1),
                                  "file_read_mb_per_s": round(read, 1), "download_ratio": round(download / read, 3)})
            log(str(out["rounds"][-1]))
        out["peak_rss_mb_at_start"] = started_rss
        out["peak_rss_mb_after_uploads_and_reads"] = peak_rss_mb(server.pid)
        # Four reads at once, of different documents.
        t = time.time()
        procs = [subprocess.Popen(["curl", "-s", "-f", "-o", "/dev/null", "-H", "Accept: application/octet-stream",
                                   f"{base}/fhir/Binary/{ids[i % len(ids)]}"]) for i in range(4)]
        assert all(p.wait() == 0 for p in procs)
        out["four_reads_at_once_mb_per_s"] = round(4 * mb / (time.time() - t), 1)
        out["peak_rss_mb_after_four_reads"] = peak_rss_mb(server.pid)
    finally:
        stop(server)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=1_000_000)
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["recognizable", "stamping", "stamping-channels", "mhd", "binary", "stream"])
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="huitong-sharing-")
    results = {"binary": BINARY}
    try:
        for name, run in (("mhd", mhd), ("binary", binary), ("stream", stream), ("stamping", stamping),
                          ("stamping-channels", stamping_channels), ("recognizable", recognizable)):
            if args.only in (None, name):
                log(f"== {name}")
                results[name] = run(args, work)
        save("sharing", results)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
