"""`huitong import` of one NDJSON file (a bulk-data export gives one file per type): N
gateway-shaped Observations (what the HL7 v2 gateway makes of an OBX; `terminology.observation`)
into a store holding their 10,000 Patients, release build. In the same run, alternating rounds:

- the same lines split into 4 files (files are imported concurrently: parsing one overlaps
  writing another), the import's own best case;
- with `--baseline BIN`, the same file imported by another build (the one before a change);
- raw SQLite inserts of the very rows the import stored, 2,000 resources per transaction as the
  import commits them (`replay.py`): the storage engine's own cost. The import's time includes
  the process starting and opening the store, and the statistics it analyses at the end (what a
  user waits for); the replay's does not.

    python3 bench/import_ndjson.py [--observations 100000] [--rounds 3] [--baseline /tmp/huitong-old]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time

from common import BINARY, log, save
import replay
from terminology import observation


def write_files(work, n, parts):
    folder = os.path.join(work, f"observations-{parts}")
    os.makedirs(folder)
    rnd = random.Random(9)
    per = -(-n // parts)
    for p in range(parts):
        with open(os.path.join(folder, f"obs-{p}.ndjson"), "w") as f:
            for i in range(p * per, min(n, (p + 1) * per)):
                f.write(json.dumps(observation(i, "gateway", rnd, rnd.randrange(500), False), ensure_ascii=False) + "\n")
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]


def import_once(binary, files, patients, work):
    """Seconds for the timed import, and the store kept for the replay (with its marks)."""
    data = tempfile.mkdtemp(dir=work, prefix="import-")
    subprocess.run([binary, "import", patients, "--data", data, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = os.path.join(data, "huitong.sqlite")
    before = replay.marks(store)
    t = time.perf_counter()
    subprocess.run([binary, "import", *files, "--data", data, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - t
    return elapsed, data, before


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--baseline", help="another build's binary, importing the same single file")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="huitong-import-")
    try:
        patients = os.path.join(work, "patients.ndjson")
        with open(patients, "w") as f:
            for p in range(10_000):
                f.write(json.dumps({"resourceType": "Patient", "id": f"p{p}", "gender": "unknown",
                                    "meta": {"source": "urn:huitong:facility:org-a"}}) + "\n")
        one, four = write_files(work, args.observations, 1), write_files(work, args.observations, 4)
        runs = [("one file", BINARY, one), ("4 files", BINARY, four)]
        if args.baseline:
            runs.append(("one file, baseline build", args.baseline, one))
        rounds = []
        for r in range(args.rounds):
            row = {}
            for name, binary, files in (runs if r % 2 == 0 else runs[::-1]):
                elapsed, data, before = import_once(binary, files, patients, work)
                row[name] = round(args.observations / elapsed)
                if name == "one file":
                    store = os.path.join(data, "huitong.sqlite")
                    raw = replay.replay(store, [(before, replay.marks(store), args.observations, 2000)])[0]
                    row["raw SQLite, same rows"] = round(raw["messages_per_s"])
                shutil.rmtree(data, ignore_errors=True)
            row["one file / raw SQLite"] = round(row["one file"] / row["raw SQLite, same rows"], 3)
            row["one file / 4 files"] = round(row["one file"] / row["4 files"], 3)
            if args.baseline:
                row["one file / baseline build"] = round(row["one file"] / row["one file, baseline build"], 3)
            rounds.append(row)
            log(f"round {r + 1}", json.dumps(row, ensure_ascii=False))
        save("import_ndjson", {"observations": args.observations, "binary": BINARY, "baseline": args.baseline,
                               "rounds": rounds, "cores": os.cpu_count()})
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
