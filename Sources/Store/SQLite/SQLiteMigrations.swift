/// Numbered schema migrations for the SQLite store. Append only: a released migration never changes.
/// (Lookup indexes end in `rid` so that searches read row ids from the index alone.)
enum SQLiteMigrations {
    static let all: [(version: Int, name: String, statements: [String])] = [
        (1, "resources, history and search indexes", [
            """
            CREATE TABLE resource (
                rid INTEGER PRIMARY KEY,
                type TEXT NOT NULL,
                id TEXT NOT NULL,
                version INTEGER NOT NULL,
                last_updated INTEGER NOT NULL,
                deleted INTEGER NOT NULL,
                hid INTEGER NOT NULL
            )
            """,
            "CREATE UNIQUE INDEX resource_key ON resource(type, id)",
            """
            CREATE TABLE resource_history (
                hid INTEGER PRIMARY KEY,
                rid INTEGER NOT NULL,
                version INTEGER NOT NULL,
                last_updated INTEGER NOT NULL,
                method TEXT NOT NULL,
                content BLOB
            )
            """,
            "CREATE UNIQUE INDEX history_version ON resource_history(rid, version)",
            "CREATE INDEX history_time ON resource_history(last_updated)",
            "CREATE TABLE idx_token (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, system TEXT, code TEXT NOT NULL)",
            "CREATE INDEX idx_token_lookup ON idx_token(type, param, code, system, rid)",
            "CREATE INDEX idx_token_rid ON idx_token(rid)",
            "CREATE TABLE idx_string (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL)",
            "CREATE INDEX idx_string_lookup ON idx_string(type, param, value, rid)",
            "CREATE INDEX idx_string_rid ON idx_string(rid)",
            """
            CREATE TABLE idx_reference (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
                target_type TEXT, target_id TEXT, url TEXT)
            """,
            "CREATE INDEX idx_reference_lookup ON idx_reference(target_id, target_type, param, type, rid)",
            "CREATE INDEX idx_reference_rid ON idx_reference(rid)",
            "CREATE TABLE idx_date (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL)",
            "CREATE INDEX idx_date_lookup ON idx_date(type, param, low, high, rid)",
            "CREATE INDEX idx_date_rid ON idx_date(rid)",
            "CREATE TABLE idx_uri (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, value TEXT NOT NULL)",
            "CREATE INDEX idx_uri_lookup ON idx_uri(type, param, value, rid)",
            "CREATE INDEX idx_uri_rid ON idx_uri(rid)",
        ]),
        (2, "number and quantity index; lookup of resources by last update", [
            """
            CREATE TABLE idx_quantity (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL,
                value REAL NOT NULL, system TEXT, code TEXT)
            """,
            "CREATE INDEX idx_quantity_lookup ON idx_quantity(type, param, value, rid)",
            "CREATE INDEX idx_quantity_rid ON idx_quantity(rid)",
            "CREATE INDEX resource_type_updated ON resource(type, last_updated)",
            "ALTER TABLE idx_string ADD COLUMN exact TEXT",
        ]),
        (3, "change-feed consumer positions", [
            "CREATE TABLE change_consumer (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
        ]),
        (4, "platform records (OAuth clients, users, one-time ids)", [
            """
            CREATE TABLE platform_record (kind TEXT NOT NULL, id TEXT NOT NULL, content TEXT NOT NULL, expires INTEGER,
                PRIMARY KEY (kind, id)) WITHOUT ROWID
            """,
        ]),
        (5, "hash-chained audit events", [
            "CREATE TABLE audit_event (seq INTEGER PRIMARY KEY, recorded INTEGER NOT NULL, content BLOB NOT NULL, hash TEXT NOT NULL)",
            "CREATE TABLE audit_patient (patient TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY (patient, seq)) WITHOUT ROWID",
            "CREATE TABLE audit_head (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL, hash TEXT NOT NULL)",
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\(String(repeating: "0", count: 64))')",
        ]),
        (6, "audit archive anchors", [
            "CREATE TABLE audit_anchor (seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, archived_at INTEGER NOT NULL, archive TEXT NOT NULL)",
        ]),
        (7, "expiring platform records, for the sweep", [
            "CREATE INDEX platform_record_expires ON platform_record(expires) WHERE expires IS NOT NULL",
        ]),
        (8, "the access decision inside the query: a row's facility, patient and sensitive labels; consent rules", [
            "ALTER TABLE resource ADD COLUMN facility TEXT",
            "ALTER TABLE resource ADD COLUMN compartment TEXT",
            "ALTER TABLE resource ADD COLUMN sensitive TEXT",
            """
            CREATE TABLE idx_consent (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, patient TEXT NOT NULL,
                facility TEXT NOT NULL, class TEXT NOT NULL, label TEXT NOT NULL, verdict INTEGER NOT NULL, rank INTEGER NOT NULL,
                low INTEGER NOT NULL, high INTEGER NOT NULL)
            """,
            "CREATE INDEX idx_consent_lookup ON idx_consent(patient, label, rid)",
            "CREATE INDEX idx_consent_rid ON idx_consent(rid)",
            // A facility's treatment relationships (`_care` rows), read once per query.
            "CREATE INDEX idx_token_care ON idx_token(system, code) WHERE param = '_care'",
            // Stored rows get their columns and rules from a reindex at the next start (ADR 016).
            "INSERT INTO platform_record (kind, id, content) SELECT '\(PlatformRecordSQL.pendingKind)', 'reindex', 'access columns (migration 8)'"
                + " WHERE EXISTS (SELECT 1 FROM resource)",
        ]),
        (9, "terminology: a code system's concepts and the closure of its hierarchy", [
            """
            CREATE TABLE idx_concept (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL,
                version TEXT NOT NULL, code TEXT NOT NULL, display TEXT, detail TEXT NOT NULL)
            """,
            "CREATE INDEX idx_concept_lookup ON idx_concept(system, code, version)",
            "CREATE INDEX idx_concept_rid ON idx_concept(rid)",
            """
            CREATE TABLE idx_closure (rid INTEGER NOT NULL, type TEXT NOT NULL, param TEXT NOT NULL, system TEXT NOT NULL,
                ancestor TEXT NOT NULL, code TEXT NOT NULL)
            """,
            "CREATE INDEX idx_closure_below ON idx_closure(system, ancestor, code)",
            "CREATE INDEX idx_closure_above ON idx_closure(system, code, ancestor)",
            "CREATE INDEX idx_closure_rid ON idx_closure(rid)",
            // Stored CodeSystems get their rows from a reindex at the next start.
            "INSERT OR IGNORE INTO platform_record (kind, id, content) SELECT '\(PlatformRecordSQL.pendingKind)', 'reindex', 'terminology rows (migration 9)'"
                + " WHERE EXISTS (SELECT 1 FROM resource WHERE type = 'CodeSystem')",
        ]),
        (10, "pending document streams: marked until a version names them, swept when abandoned (ADR 029)", [
            "CREATE TABLE document_stream_pending (id TEXT PRIMARY KEY, created INTEGER NOT NULL) WITHOUT ROWID",
        ]),
    ]
}
