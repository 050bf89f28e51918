"""A seeded generator of Chinese patient registrations for master-index safety tests: households
with twins or siblings who share surname, address and phone (and, for twins, birth date), each
child registered at several facilities, one of the family's records lacking a resident ID number
or carrying a corrupted one; and unrelated residents registered more than once. Every record's
id says which person it belongs to (`<facility>-<person>`), so true pairs are known.

The errors are those of Chinese registration desks: a given-name character replaced by another
with the same pinyin (a pinyin input method's wrong pick), an ID number with one digit wrong or
two neighbours swapped, no ID number at all (a child, or a clinic that did not ask), a phone
number missing or replaced by the resident's own, an address written without its postal code.
Twins' names differ in a syllable (that is how a family calls them apart); twins named alike but
for a tone are a limit of matching, not generated here."""
import random

RESIDENT_ID = "urn:oid:2.16.156.10011.1.3"
WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
CHECK = "10X98765432"

SURNAMES = ["王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高",
            "林", "罗", "郑", "梁", "谢", "宋", "唐", "韩", "冯", "邓", "曹", "彭", "曾", "肖", "田", "董", "袁", "潘",
            "蒋", "蔡", "余", "杜", "叶", "程", "苏", "魏", "吕", "丁", "任", "沈", "姚", "卢", "欧阳", "司马", "诸葛"]
# Groups of characters read alike (same syllable and tone): a pinyin input method offers them
# together, and a registration desk picks the wrong one.
SOUNDS = [["涵", "寒", "含", "晗"], ["轩", "宣", "萱", "暄"], ["伟", "玮", "炜"], ["静", "婧", "靖"], ["丽", "莉", "俐"],
          ["明", "铭", "鸣", "茗"], ["华", "桦", "骅"], ["杰", "洁", "婕"], ["芳", "方"], ["婷", "亭", "庭", "霆"],
          ["浩", "昊", "皓"], ["宇", "雨", "羽", "语"], ["思", "斯", "丝"], ["怡", "宜", "仪"], ["欣", "鑫", "馨", "昕"],
          ["晨", "辰", "宸"], ["阳", "扬", "洋"], ["梓", "紫"], ["依", "伊"], ["瑞", "睿"], ["佳", "嘉"],
          ["宏", "弘", "鸿"], ["林", "琳", "霖"], ["诺"], ["博"], ["泽"], ["天"], ["文"], ["凯"], ["涛"], ["强"], ["军"],
          ["敏"], ["磊"], ["勇"], ["峰"], ["慧"], ["娜"], ["颖"], ["倩"], ["悦"], ["可"], ["安"], ["乐"], ["然"], ["航"]]
CHAR_SOUND = {c: i for i, g in enumerate(SOUNDS) for c in g}
DISTRICTS = [("510104", "锦江区", "610021"), ("510105", "青羊区", "610031"), ("510106", "金牛区", "610036"),
             ("510107", "武侯区", "610041"), ("510108", "成华区", "610051"), ("510112", "龙泉驿区", "610100"),
             ("510113", "青白江区", "610300"), ("510114", "新都区", "610500"), ("510115", "温江区", "611130"),
             ("510116", "双流区", "610200")]
STREETS = ["人民南路", "蜀都大道", "建设路", "一环路北", "春熙路", "天府大道", "科华北路", "红星路", "青华路", "玉林路",
           "抚琴西路", "府青路", "双林路", "羊市街", "草市街", "光华大道", "航空路", "东大街", "金沙路", "驿都大道"]


def check_digit(first17):
    return CHECK[sum(int(c) * w for c, w in zip(first17, WEIGHTS)) % 11]


def resident_id(area, birth, sequence):
    first17 = f"{area}{birth.replace('-', '')}{sequence:03d}"
    return first17 + check_digit(first17)


def unique_id(rng, used, area, birth, gender):
    """A resident ID number nobody else has (the sequence code is odd for men, even for women)."""
    while True:
        value = resident_id(area, birth, 2 * rng.randint(0, 400) + (1 if gender == "male" else 2))
        if value not in used:
            used.add(value)
            return value


def corrupt_id(rng, value):
    """One digit wrong or two neighbours swapped, in the part after the area code."""
    chars = list(value)
    if rng.random() < 0.5:
        i = rng.randrange(6, 17)
        chars[i] = rng.choice([d for d in "0123456789" if d != chars[i]])
    else:
        i = rng.choice([i for i in range(6, 16) if chars[i] != chars[i + 1]] or [6])
        chars[i], chars[i + 1] = chars[i + 1], chars[i]
    return "".join(chars)


def misspell(rng, given):
    """A character of the given name replaced by one read alike."""
    spots = [i for i, c in enumerate(given) if len(SOUNDS[CHAR_SOUND.get(c, 0)]) > 1 and c in CHAR_SOUND]
    if not spots:
        return given
    i = rng.choice(spots)
    group = SOUNDS[CHAR_SOUND[given[i]]]
    return given[:i] + rng.choice([c for c in group if c != given[i]]) + given[i + 1:]


def given_name(rng, first=None, avoid=None):
    """Two characters; `avoid`: a sibling's name, whose second syllable must not be repeated."""
    while True:
        a = first or rng.choice(rng.choice(SOUNDS))
        b = rng.choice(rng.choice(SOUNDS))
        if avoid is None or (CHAR_SOUND.get(b) != CHAR_SOUND.get(avoid[-1]) and
                             (first is not None or CHAR_SOUND.get(a) != CHAR_SOUND.get(avoid[0]))):
            return a + b


def birth_date(rng, start=1950, end=2024):
    y = rng.randint(start, end)
    m = rng.randint(1, 12)
    d = rng.randint(1, 28)
    return f"{y:04d}-{m:02d}-{d:02d}"


def phone(rng):
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def person(rng, family, given, gender, birth, id_value, address, tel):
    return {"family": family, "given": given, "gender": gender, "birth": birth, "id": id_value,
            "address": address, "phone": tel}


def household_address(rng):
    area, district, postal = rng.choice(DISTRICTS)
    return {"area": area, "line": f"{rng.choice(STREETS)}{rng.randint(1, 300)}号{rng.randint(1, 30)}栋{rng.randint(1, 6)}单元",
            "district": district, "postal": postal}


def record(rng, facility, pid, p, id_mode="valid", noisy=False):
    """The Patient one facility registers for person `p`. id_mode: valid | missing | corrupt."""
    given = p["given"]
    tel = p["phone"]
    postal = p["address"]["postal"]
    if noisy:
        if rng.random() < 0.12:
            given = misspell(rng, given)
        r = rng.random()
        if r < 0.15:
            tel = None
        elif r < 0.25:
            tel = phone(rng)
        if rng.random() < 0.2:
            postal = None
    patient = {"resourceType": "Patient", "id": f"{facility}-{pid}",
               "identifier": [{"system": f"urn:huitong:mrn:{facility}", "value": pid,
                               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]}}],
               "name": [{"family": p["family"], "given": [given]}],
               "gender": p["gender"], "birthDate": p["birth"]}
    if id_mode == "valid":
        patient["identifier"].append({"system": RESIDENT_ID, "value": p["id"]})
    elif id_mode == "corrupt":
        patient["identifier"].append({"system": RESIDENT_ID, "value": corrupt_id(rng, p["id"])})
    if tel:
        patient["telecom"] = [{"system": "phone", "value": tel}]
    address = {"line": [p["address"]["line"]], "district": p["address"]["district"], "city": "成都市", "state": "四川省"}
    if postal:
        address["postalCode"] = postal
    patient["address"] = [address]
    return patient


def generate(seed=20261206, families=520, residents=500):
    """Patients and the facts about them: `records` (list of Patient resources), `twins` (pairs
    of person ids, twins or siblings), `risky` (pairs of record ids of two siblings where one lacks
    its ID number or carries a corrupted one: the pairs that must not be linked)."""
    rng = random.Random(seed)
    records, pairs, risky, used = [], [], [], set()
    for h in range(families):
        family = rng.choice(SURNAMES)
        address = household_address(rng)
        tel = phone(rng)
        twins = rng.random() < 0.7
        first_birth = birth_date(rng, 1975, 2016)
        children = []
        shared = rng.choice(rng.choice(SOUNDS)) if rng.random() < 0.6 else None
        for c in range(2):
            if twins or c == 0:
                birth = first_birth
            else:
                y = int(first_birth[:4]) + rng.randint(1, 6)
                birth = f"{y:04d}{first_birth[4:]}"
            gender = rng.choice(["male", "female"]) if c == 0 or rng.random() < 0.4 else children[0]["gender"]
            given = given_name(rng, first=shared, avoid=children[0]["given"] if children else None)
            children.append(person(rng, family, given, gender, birth, unique_id(rng, used, address["area"], birth, gender), address, tel))
        pids = [f"h{h}c{c}" for c in range(2)]
        pairs.append(tuple(pids))
        # At the family's clinic: the first child with its ID number; the second without one, or with
        # a corrupted one (the case that must not link), or with its own.
        mode = rng.choices(["missing", "corrupt", "valid"], [0.5, 0.3, 0.2])[0]
        records.append(record(rng, "clinic", pids[0], children[0]))
        records.append(record(rng, "clinic", pids[1], children[1], id_mode=mode))
        if mode != "valid":
            risky.append((f"clinic-{pids[0]}", f"clinic-{pids[1]}"))
        # At the hospital (and for some, a third place): the same children again, with errors.
        for c, p in enumerate(children):
            for facility in ["hospital"] + (["district"] if rng.random() < 0.3 else []):
                m = rng.choices(["valid", "missing", "corrupt"], [0.45, 0.35, 0.2])[0]
                records.append(record(rng, facility, pids[c], p, id_mode=m, noisy=True))
                if m != "valid":
                    other = f"clinic-{pids[1 - c]}"
                    risky.append(tuple(sorted((other, f"{facility}-{pids[c]}"))))
    for r in range(residents):
        address = household_address(rng)
        gender = rng.choice(["male", "female"])
        birth = birth_date(rng)
        p = person(rng, rng.choice(SURNAMES), given_name(rng), gender, birth, unique_id(rng, used, address["area"], birth, gender),
                   address, phone(rng))
        pid = f"r{r}"
        records.append(record(rng, "clinic", pid, p))
        for facility in ["hospital"] + (["district"] if rng.random() < 0.3 else []):
            records.append(record(rng, facility, pid, p, id_mode=rng.choices(["valid", "missing", "corrupt"], [0.5, 0.3, 0.2])[0],
                                  noisy=True))
    return {"records": records, "pairs": pairs, "risky": risky}


def person_of(record_id):
    return record_id.split("-", 1)[1]


def true_pairs(ids):
    by_person = {}
    for i in ids:
        by_person.setdefault(person_of(i), []).append(i)
    return {tuple(sorted((a, b))) for g in by_person.values() for a in g for b in g if a < b}
