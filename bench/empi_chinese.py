"""Master patient index accuracy on Chinese registrations: a synthetic population (PyPI faker,
locale zh_CN: names, resident ID numbers, phones, addresses) registered at a county hospital, and
again at a city hospital with one kind of corruption per record:

  homophone       a given-name character replaced by a homophone (伟 → 玮)
  typo            a given-name character replaced by another character
  swapped         family and given name swapped
  missing_id      no resident ID number
  bad_check_digit the ID number's check character wrong
  transposed_date day and month (or two neighbouring digits) of the birth date swapped
  newborn         a newborn under a placeholder name (王某之子), known by the mother's ID
  clean           no corruption

Half of the city records (none for missing_id and newborn) carry the resident ID, and 30 % have
another phone, 30 % another street (people move); besides,
"namesakes" — other residents with the same name and birth date — must never be linked. Pairs of
Patients under one master Person are scored per corruption type against the truth.

    python3 bench/empi_chinese.py --residents 2000        # release build; venv with faker
"""
import argparse
import collections
import itertools
import json
import os
import random
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BINARY, free_port, log, put_patients as load, save, start, stop  # noqa: E402

RID = "urn:oid:2.16.156.10011.1.3"
HOMOPHONES = ["伟玮炜维", "丽莉俐", "静晶菁", "军君均", "芳方坊", "敏闽珉", "强蔷", "娜纳", "磊垒", "涛韬",
              "明铭鸣", "华骅桦", "红宏鸿", "英莹瑛", "杰洁婕", "霞侠", "平萍苹", "刚钢", "辉晖徽", "燕艳雁",
              "玲琳麟", "婷亭", "俊骏峻", "斌彬", "鹏朋", "勇涌", "波博", "秀绣", "兰岚澜", "欣新馨"]
HOMOPHONE_OF = {c: group for group in HOMOPHONES for c in group}
TYPES = ["clean", "homophone", "typo", "swapped", "missing_id", "bad_check_digit", "transposed_date", "newborn"]


def check_char(body):
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return "10X98765432"[sum(int(c) * w for c, w in zip(body, weights)) % 11]


def resident_id(region, birth, seq, gender):
    seq = seq * 2 + (1 if gender == "male" else 0)
    body = region + birth.replace("-", "") + f"{seq % 1000:03d}"
    return body + check_char(body)


def patient(pid, facility, r, name, birth, rid=None, mother=None):
    family, given = name
    p = {"resourceType": "Patient", "id": pid,
         "identifier": [{"system": f"urn:huitong:mrn:{facility}", "value": pid,
                         "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
         "name": [{"family": family, "given": [given]}], "gender": r["gender"], "birthDate": birth,
         "telecom": [{"system": "phone", "value": r["phone"]}],
         "address": [{"state": r["province"], "city": r["city"], "district": r["district"], "line": [r["street"]],
                      "postalCode": r["postcode"]}]}
    if rid:
        p["identifier"].append({"system": RID, "value": rid})
    if mother:
        p["contact"] = [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}],
                         "extension": [{"url": "https://huitong.health/fhir/StructureDefinition/contact-identifier",
                                        "valueIdentifier": {"system": RID, "value": mother}}]}]
    return p


def population(n, seed):
    from faker import Faker
    fake = Faker("zh_CN")
    Faker.seed(seed)
    rnd = random.Random(seed)
    regions = [f"{rnd.randint(11, 65):02d}{rnd.randint(1, 20):02d}{rnd.randint(1, 30):02d}" for _ in range(40)]
    people = []
    for i in range(n):
        gender = rnd.choice(["male", "female"])
        kind = TYPES[i % len(TYPES)]
        year = rnd.randint(2026, 2026) if kind == "newborn" else rnd.randint(1935, 2015)
        birth = f"{year}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}" if kind != "newborn" else f"2026-{rnd.randint(1, 10):02d}-{rnd.randint(1, 28):02d}"
        family = fake.last_name()
        given = fake.first_name_male() if gender == "male" else fake.first_name_female()
        people.append({"i": i, "kind": kind, "gender": gender, "birth": birth, "name": (family, given),
                       "rid": resident_id(rnd.choice(regions), birth, i, gender),
                       "mother": resident_id(rnd.choice(regions), f"{rnd.randint(1975, 2000)}-0{rnd.randint(1, 9)}-1{rnd.randint(0, 9)}", i, "female"),
                       "phone": fake.phone_number(), "province": fake.province(), "city": fake.city(), "district": fake.district(),
                       "street": fake.street_address(), "postcode": fake.postcode()})
    return people, rnd


def corrupt(r, rnd):
    """The city hospital's record of resident r."""
    family, given = r["name"]
    birth, rid = r["birth"], (r["rid"] if rnd.random() < 0.5 else None)
    kind = r["kind"]
    if kind == "homophone":
        chars = list(given)
        options = [k for k, c in enumerate(chars) if c in HOMOPHONE_OF]
        if options:
            k = rnd.choice(options)
            chars[k] = rnd.choice([c for c in HOMOPHONE_OF[chars[k]] if c != chars[k]])
        else:
            chars[-1] = rnd.choice([c for c in "玮炜维莉俐晶菁君均" if c != chars[-1]])
        given = "".join(chars)
    elif kind == "typo":
        chars = list(given)
        chars[rnd.randrange(len(chars))] = rnd.choice("安邦昌达德丰光海浩辉嘉金凯乐力龙茂宁奇荣盛胜顺泰文翔信耀永宇振志")
        given = "".join(chars)
    elif kind == "swapped":
        family, given = given, family
    elif kind == "missing_id":
        rid = None
    elif kind == "bad_check_digit":
        good = r["rid"]
        rid = good[:17] + rnd.choice([c for c in "0123456789X" if c != good[17]])
    elif kind == "transposed_date":
        y, m, d = birth.split("-")
        birth = f"{y}-{d}-{m}" if int(d) <= 12 and d != m else f"{y}-{m}-{d[1]}{d[0]}" if d[0] != d[1] and int(d[1] + d[0]) <= 28 and d[1] != "0" else birth
    return (family, given), birth, rid


def clusters(base):
    out, url = [], f"{base}/Person?_count=1000"
    while url:
        with urllib.request.urlopen(url, timeout=600) as r:
            page = json.loads(r.read())
        for e in page.get("entry", []):
            links = [l["target"]["reference"].split("/", 1)[1] for l in e["resource"].get("link", []) if l["target"]["reference"].startswith("Patient/")]
            if len(links) > 1:
                out.append(links)
        url = next((l["url"] for l in page.get("link", []) if l["relation"] == "next"), None)
    return out


def review_items(base):
    """Patients with an open possible-match review item."""
    focus, url = set(), f"{base}/Task?code=https://huitong.health/fhir/CodeSystem/empi|possible-match&status=requested&_count=1000"
    while url:
        with urllib.request.urlopen(url, timeout=600) as r:
            page = json.loads(r.read())
        for e in page.get("entry", []):
            focus.add(e["resource"]["focus"]["reference"].split("/", 1)[1])
        url = next((l["url"] for l in page.get("link", []) if l["relation"] == "next"), None)
    return focus


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--residents", type=int, default=2000)
    ap.add_argument("--namesakes", type=int, default=200)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--rules", help="a rules file (default: the built-in rules)")
    args = ap.parse_args()
    people, rnd = population(args.residents, args.seed)
    county, city, kind_of = [], [], {}
    for r in people:
        newborn = r["kind"] == "newborn"
        name = (r["name"][0], "某之子" if r["gender"] == "male" else "某之女") if newborn else r["name"]
        county.append(patient(f"c-{r['i']}", "county", r, name, r["birth"], None if newborn else r["rid"], r["mother"] if newborn else None))
        if newborn:
            city.append(patient(f"h-{r['i']}", "city", r, name, r["birth"], None, r["mother"]))
        else:
            cname, birth, rid = corrupt(r, rnd)
            # People move and change phones: the city hospital has another phone or street for some.
            moved = dict(r)
            if rnd.random() < 0.3:
                moved["phone"] = f"13{rnd.randint(100000000, 999999999)}"
            if rnd.random() < 0.3:
                moved["street"], moved["postcode"] = f"建设路{rnd.randint(1, 300)}号", f"{rnd.randint(100000, 899999)}"
            city.append(patient(f"h-{r['i']}", "city", moved, cname, birth, rid))
        kind_of[r["i"]] = r["kind"]
    # Namesakes: other residents with the same name and birth date (and their own ID, phone, address).
    namesakes = []
    for k, r in enumerate(rnd.sample([p for p in people if p["kind"] != "newborn"], args.namesakes)):
        other = dict(r, i=f"n{k}", phone=f"139{rnd.randint(10000000, 99999999)}", street=f"幸福路{rnd.randint(1, 999)}号",
                     rid=resident_id("440305", r["birth"], 500 + k, r["gender"]), postcode=f"{rnd.randint(100000, 899999)}")
        namesakes.append(patient(f"n-{k}", "clinic", other, r["name"], r["birth"], other["rid"] if k % 2 else None))

    work = tempfile.mkdtemp(prefix="huitong-empi-zh-")
    port = free_port()
    server = start([BINARY, "serve", "--dev", "--host", "127.0.0.1", "--port", str(port), "--data", work]
                   + (["--match-rules", args.rules] if args.rules else []), f"http://127.0.0.1:{port}/ready")
    base = f"http://127.0.0.1:{port}/fhir"
    try:
        t0 = time.perf_counter()
        load(base, county)
        load(base, city)
        load(base, namesakes)
        elapsed = time.perf_counter() - t0
        found = clusters(base)
        in_review = review_items(base)
    finally:
        stop(server)
    predicted = {tuple(sorted(p)) for c in found for p in itertools.combinations(c, 2)}

    def resident(pid):
        return pid.split("-", 1)[1]

    per_type = collections.defaultdict(lambda: {"true": 0, "found": 0, "false_links": 0, "review": 0})
    for i, kind in kind_of.items():
        pair = tuple(sorted((f"c-{i}", f"h-{i}")))
        per_type[kind]["true"] += 1
        per_type[kind]["found"] += pair in predicted
        per_type[kind]["review"] += pair not in predicted and f"h-{i}" in in_review
    namesake_links = 0
    for x, y in predicted:
        if resident(x) != resident(y):
            if x.startswith("n-") or y.startswith("n-"):
                namesake_links += 1
            for pid in (x, y):
                if not pid.startswith("n-"):
                    per_type[kind_of[int(resident(pid))]]["false_links"] += 1
    report = {}
    for kind in TYPES:
        t = per_type[kind]
        precision = t["found"] / (t["found"] + t["false_links"]) if t["found"] + t["false_links"] else 1.0
        recall = t["found"] / t["true"] if t["true"] else 1.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        report[kind] = {"pairs": t["true"], "linked": t["found"], "false_links": t["false_links"], "missed_but_in_review": t["review"],
                        "precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}
        log(f"{kind:16s} {report[kind]}")
    log(f"namesakes linked to someone else's record: {namesake_links} (of {len(namesakes)})")
    save("empi-chinese", {"residents": args.residents, "records": len(county) + len(city) + len(namesakes),
                          "seconds_with_http_ingest": round(elapsed, 2), "per_corruption": report,
                          "namesake_false_links": namesake_links, "namesakes": len(namesakes),
                          "rules": "trained: " + args.rules if args.rules else "built-in defaults", "cores": os.cpu_count()})


if __name__ == "__main__":
    main()
