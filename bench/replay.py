"""The raw-SQLite baseline of a write benchmark: the rows a huitong store holds, inserted again into a
fresh database with the same schema and the writer's settings (WAL, synchronous=NORMAL, 256 MB
page cache, checkpoints every 16,000 pages), a given number of messages per transaction, with
nothing else running. It is the storage engine's own cost of those rows: what any server that
keeps the same rows and indexes in SQLite on this machine could reach at best.

A run is cut into segments with `marks` (taken on the live store before and after each workload).
Every table's rows are replayed in the order they were inserted (rowid; `seq` for the audit's
patient rows; control id for the gateway's message records), each segment's share split evenly
over its transactions. Rows written before the first segment are replayed untimed first, so that
each segment meets the indexes as large as the server met them. Only the rows still present are
replayed: an index row that an update replaced is replayed once, as its final version.

Run on its own, it measures what a different row set or index layout would cost (ADR 015):

    python3 bench/mllp.py --workloads ADT^A04 --keep /tmp/mllp-store   # keeps the gateway's store
    python3 bench/replay.py /tmp/mllp-store/huitong.sqlite --per-transaction 16 \
        [--one-btree] [--without Patient:huitong-empi-block --without Person:*]
"""
import argparse
import json
import os
import re
import shutil
import sqlite3
import tempfile
import time

# Tables without a rowid: ordered by insertion by a column of theirs, or (platform records, of
# several kinds) placed by the first mark that holds their key.
ORDER = {"audit_patient": "seq"}
KEYED = {"platform_record": ("kind", "id"), "document_stream_pending": ("id",)}
SKIP = {"schema_migrations", "audit_head", "change_consumer"}


def _tables(db):
    return [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            if name not in SKIP]


def one_btree_schema(schema):
    """The schema with every index table keyed by its lookup columns and then its other columns
    (so that only rows equal in every column collapse), NULL stored as ''."""
    lookup = {}
    for sql in schema:
        m = re.match(r"CREATE INDEX \w+_lookup ON (idx_\w+)\((.*)\)", sql)
        if m:
            lookup[m.group(1)] = m.group(2)
    out = []
    for sql in schema:
        m = re.match(r"CREATE TABLE (idx_\w+) \((.*)\)\s*$", sql, re.S)
        if m:
            key = [c.strip() for c in lookup[m.group(1)].split(",")]
            columns = [c.strip().split()[0] for c in m.group(2).split(",")]
            key += [c for c in columns if c not in key]
            out.append(f"CREATE TABLE {m.group(1)} ({m.group(2)}, PRIMARY KEY ({', '.join(key)})) WITHOUT ROWID")
        elif not re.match(r"CREATE INDEX idx_\w+_(lookup|rid) ON", sql):
            out.append(sql)
    return out


def marks(path):
    """How far each table has got: a position in insertion order, or the set of keys it holds."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        def mark(t):
            if t in KEYED:
                return set(db.execute(f"SELECT {', '.join(KEYED[t])} FROM {t}").fetchall())
            if t in ORDER:
                return db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
            return db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {t}").fetchone()[0]
        return {t: mark(t) for t in _tables(db)}
    finally:
        db.close()


def replay(path, segments, without=(), one_btree=False):
    """`segments`: (marks before, marks after, messages, messages per transaction), in run order.
    Returns, per segment, messages/s and the CPU milliseconds per message of the replay.
    `without`: (type, parameter) pairs ("*" for any) whose index rows are left out. `one_btree`:
    each index table `WITHOUT ROWID` with its lookup key as primary key and no rid index."""
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    schema = [sql for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                                            "AND tbl_name != 'schema_migrations' ORDER BY type = 'index'")]
    rows = {}
    for t in _tables(src):
        columns = [c[1] for c in src.execute(f"PRAGMA table_info({t})")]
        select = f"SELECT {', '.join(columns)} FROM {t}"
        if t.startswith("idx_") and without:
            ignored = " OR ".join("((type = ? OR ? = '*') AND (param = ? OR ? = '*'))" for _ in without)
            select += f" WHERE NOT ({ignored})"
        binds = [v for pair in without for v in (pair[0], pair[0], pair[1], pair[1])] if t.startswith("idx_") else []
        if t in KEYED:
            # Mark k of the run (before_0, after_0, before_1, ...) is position k + 1: a record is at
            # the first mark that holds it, so it falls in the segment that made it.
            bounds = [m.get(t, set()) for before, after, _, _ in segments for m in (before, after)]
            where = [columns.index(c) for c in KEYED[t]]
            def position(r):
                key = tuple(r[i] for i in where)
                return next((k + 1 for k, b in enumerate(bounds) if key in b), len(bounds) + 1)
            rows[t] = (columns, sorted(((position(r), r) for r in src.execute(select, binds)), key=lambda x: x[0]))
        elif t in ORDER:
            found = src.execute(f"{select} ORDER BY {ORDER[t]}", binds).fetchall()
            rows[t] = (columns, [(i + 1, r) for i, r in enumerate(found)])
        else:
            rows[t] = (columns, src.execute(select.replace("SELECT ", "SELECT rowid, ", 1) + " ORDER BY rowid", binds).fetchall())
            rows[t] = (columns, [(r[0], r[1:]) for r in rows[t][1]])
    src.close()

    work = tempfile.mkdtemp(prefix="huitong-replay-")
    db = sqlite3.connect(os.path.join(work, "replay.sqlite"), isolation_level=None)
    try:
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -262144", "temp_store = MEMORY",
                       "wal_autocheckpoint = 16000"):
            db.execute(f"PRAGMA {pragma}")
        if one_btree:
            schema = one_btree_schema(schema)
            rows = {t: (c, [(p, tuple("" if v is None else v for v in r)) for p, r in part]) if t.startswith("idx_") else (c, part)
                    for t, (c, part) in rows.items()}
        for sql in schema:
            db.execute(sql)
        verb = "INSERT OR IGNORE" if one_btree else "INSERT"
        inserts = {t: f"{verb} INTO {t} ({', '.join(c)}) VALUES ({', '.join('?' * len(c))})" for t, (c, _) in rows.items()}

        def bound(t, mark, k):
            # A keyed table's mark is its place among the run's marks (see above).
            return k + 1 if t in KEYED else mark.get(t, 0)

        def between(t, low, high):
            return [r for position, r in rows[t][1] if low < position <= high]

        inserted = [0]

        def insert(parts):
            db.execute("BEGIN IMMEDIATE")
            for t, part in parts.items():
                if part:
                    inserted[0] += db.executemany(inserts[t], part).rowcount
            db.execute("COMMIT")

        insert({t: between(t, 0, bound(t, segments[0][0], 0)) for t in rows})
        results = []
        for k, (before, after, messages, per_transaction) in enumerate(segments):
            share = {t: between(t, bound(t, before, 2 * k), bound(t, after, 2 * k + 1)) for t in rows}
            inserted[0] = 0
            transactions = max(1, -(-messages // per_transaction))
            t0, c0 = time.perf_counter(), time.process_time()
            for k in range(transactions):
                insert({t: part[len(part) * k // transactions:len(part) * (k + 1) // transactions] for t, part in share.items()})
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            results.append({"messages_per_s": round(messages / elapsed, 1), "cpu_ms_per_message": round(cpu / messages * 1000, 3),
                            "rows_per_message": round(inserted[0] / messages, 1),
                            "messages_per_transaction": per_transaction})
        return results
    finally:
        db.close()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description="Replay a store's rows with raw SQLite (ADR 015)")
    ap.add_argument("store", help="huitong.sqlite of a stopped server")
    ap.add_argument("--per-transaction", type=int, default=16)
    ap.add_argument("--one-btree", action="store_true")
    ap.add_argument("--without", action="append", default=[], help="TYPE:PARAM of index rows to leave out (* for any)")
    args = ap.parse_args()
    db = sqlite3.connect(f"file:{args.store}?mode=ro", uri=True)
    messages = db.execute("SELECT COUNT(*) FROM audit_event").fetchone()[0]
    db.close()
    if any(":" not in w for w in args.without):
        ap.error("--without takes TYPE:PARAM (* for any), e.g. Patient:huitong-empi-block")
    without = [tuple(w.split(":", 1)) for w in args.without]
    end = marks(args.store)
    result = replay(args.store, [({}, end, messages, args.per_transaction)], without=without, one_btree=args.one_btree)[0]
    print(json.dumps({"messages": messages, "one_btree": args.one_btree, "without": args.without, **result}))


if __name__ == "__main__":
    main()
