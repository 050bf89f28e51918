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
"""
import os
import shutil
import sqlite3
import tempfile
import time

# How each table's rows are ordered by insertion, and how far a table has got (its mark).
ORDER = {"audit_patient": "seq", "platform_record": "id"}
SKIP = {"schema_migrations", "audit_head", "change_consumer"}


def _tables(db):
    return [name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
            if name not in SKIP]


def marks(path):
    """How many rows of each table there are so far, as positions in insertion order."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] if t in ORDER else
                db.execute(f"SELECT COALESCE(MAX(rowid), 0) FROM {t}").fetchone()[0] for t in _tables(db)}
    finally:
        db.close()


def replay(path, segments):
    """`segments`: (marks before, marks after, messages, messages per transaction), in run order.
    Returns, per segment, messages/s and the CPU milliseconds per message of the replay."""
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    schema = [sql for (sql,) in src.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
                                            "AND tbl_name != 'schema_migrations' ORDER BY type = 'index'")]
    rows = {}
    for t in _tables(src):
        columns = [c[1] for c in src.execute(f"PRAGMA table_info({t})")]
        select = f"SELECT {', '.join(columns)} FROM {t}"
        if t in ORDER:
            found = src.execute(f"{select} ORDER BY {ORDER[t]}").fetchall()
            rows[t] = (columns, [(i + 1, r) for i, r in enumerate(found)])
        else:
            rows[t] = (columns, src.execute(f"SELECT rowid, {', '.join(columns)} FROM {t} ORDER BY rowid").fetchall())
            rows[t] = (columns, [(r[0], r[1:]) for r in rows[t][1]])
    src.close()

    work = tempfile.mkdtemp(prefix="huitong-replay-")
    db = sqlite3.connect(os.path.join(work, "replay.sqlite"), isolation_level=None)
    try:
        for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "cache_size = -262144", "temp_store = MEMORY",
                       "wal_autocheckpoint = 16000"):
            db.execute(f"PRAGMA {pragma}")
        for sql in schema:
            db.execute(sql)
        inserts = {t: f"INSERT INTO {t} ({', '.join(c)}) VALUES ({', '.join('?' * len(c))})" for t, (c, _) in rows.items()}

        def between(t, low, high):
            return [r for position, r in rows[t][1] if low < position <= high]

        def insert(parts):
            db.execute("BEGIN IMMEDIATE")
            for t, part in parts.items():
                if part:
                    db.executemany(inserts[t], part)
            db.execute("COMMIT")

        insert({t: between(t, 0, segments[0][0].get(t, 0)) for t in rows})
        results = []
        for before, after, messages, per_transaction in segments:
            share = {t: between(t, before.get(t, 0), after.get(t, 0)) for t in rows}
            transactions = max(1, -(-messages // per_transaction))
            t0, c0 = time.perf_counter(), time.process_time()
            for k in range(transactions):
                insert({t: part[len(part) * k // transactions:len(part) * (k + 1) // transactions] for t, part in share.items()})
            elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
            results.append({"messages_per_s": round(messages / elapsed, 1), "cpu_ms_per_message": round(cpu / messages * 1000, 3),
                            "rows_per_message": round(sum(len(p) for p in share.values()) / messages, 1),
                            "messages_per_transaction": per_transaction})
        return results
    finally:
        db.close()
        shutil.rmtree(work, ignore_errors=True)
