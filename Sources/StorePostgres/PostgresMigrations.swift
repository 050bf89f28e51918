import Store

/// Numbered schema migrations for the PostgreSQL store (append only). The logical schema is
/// the SQLite store's (ADR 005), so the shared search SQL runs on both; text columns use the
/// "C" collation so that prefix ranges compare code points, as SQLite does. See ADR 007 for
/// the sharding key and the change feed.
enum PostgresMigrations {
    static let all: [(version: Int, name: String, statements: [String])] = [
        (1, "resources, history, search indexes, change feed", [
            """
            CREATE TABLE resource (
                rid bigint PRIMARY KEY,
                type text COLLATE "C" NOT NULL,
                id text COLLATE "C" NOT NULL,
                version bigint NOT NULL,
                last_updated bigint NOT NULL,
                deleted smallint NOT NULL,
                hid bigint NOT NULL,
                compartment text COLLATE "C"
            )
            """,
            "CREATE UNIQUE INDEX resource_key ON resource (type, id)",
            "CREATE INDEX resource_type_updated ON resource (type, last_updated)",
            "CREATE SEQUENCE resource_rid",
            "CREATE SEQUENCE history_hid",
            """
            CREATE TABLE resource_history (
                hid bigint PRIMARY KEY,
                rid bigint NOT NULL,
                version bigint NOT NULL,
                last_updated bigint NOT NULL,
                method text NOT NULL,
                content bytea,
                compartment text COLLATE "C",
                txid xid8 NOT NULL DEFAULT pg_current_xact_id()
            )
            """,
            "CREATE UNIQUE INDEX history_version ON resource_history (rid, version)",
            "CREATE INDEX history_time ON resource_history (last_updated)",
            "CREATE INDEX history_feed ON resource_history (txid, hid)",
            """
            CREATE TABLE idx_token (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                system text COLLATE "C", code text COLLATE "C" NOT NULL)
            """,
            "CREATE INDEX idx_token_lookup ON idx_token (type, param, code, system, rid)",
            "CREATE INDEX idx_token_rid ON idx_token (rid)",
            """
            CREATE TABLE idx_string (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                value text COLLATE "C" NOT NULL, exact text COLLATE "C")
            """,
            "CREATE INDEX idx_string_lookup ON idx_string (type, param, value, rid)",
            "CREATE INDEX idx_string_rid ON idx_string (rid)",
            """
            CREATE TABLE idx_reference (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                target_type text COLLATE "C", target_id text COLLATE "C", url text COLLATE "C")
            """,
            "CREATE INDEX idx_reference_lookup ON idx_reference (target_id, target_type, param, type, rid)",
            "CREATE INDEX idx_reference_rid ON idx_reference (rid)",
            """
            CREATE TABLE idx_date (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                low bigint NOT NULL, high bigint NOT NULL)
            """,
            "CREATE INDEX idx_date_lookup ON idx_date (type, param, low, high, rid)",
            "CREATE INDEX idx_date_rid ON idx_date (rid)",
            """
            CREATE TABLE idx_uri (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                value text COLLATE "C" NOT NULL)
            """,
            "CREATE INDEX idx_uri_lookup ON idx_uri (type, param, value, rid)",
            "CREATE INDEX idx_uri_rid ON idx_uri (rid)",
            """
            CREATE TABLE idx_quantity (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                value double precision NOT NULL, system text COLLATE "C", code text COLLATE "C")
            """,
            "CREATE INDEX idx_quantity_lookup ON idx_quantity (type, param, value, rid)",
            "CREATE INDEX idx_quantity_rid ON idx_quantity (rid)",
            """
            CREATE TABLE export_progress (source text PRIMARY KEY, last_rid bigint NOT NULL, finished boolean NOT NULL DEFAULT false,
                updated_at timestamptz NOT NULL DEFAULT now())
            """,
            """
            CREATE TABLE change_consumer (name text PRIMARY KEY, txid xid8 NOT NULL, hid bigint NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())
            """,
        ]),
        (2, "platform records (OAuth clients, users, one-time ids)", [
            """
            CREATE TABLE platform_record (kind text COLLATE "C" NOT NULL, id text COLLATE "C" NOT NULL, content text NOT NULL,
                expires bigint, PRIMARY KEY (kind, id))
            """,
        ]),
        (3, "hash-chained audit events", [
            "CREATE TABLE audit_event (seq bigint PRIMARY KEY, recorded bigint NOT NULL, content bytea NOT NULL, hash text NOT NULL)",
            "CREATE TABLE audit_patient (patient text COLLATE \"C\" NOT NULL, seq bigint NOT NULL, PRIMARY KEY (patient, seq))",
            "CREATE TABLE audit_head (id int PRIMARY KEY CHECK (id = 1), seq bigint NOT NULL, hash text NOT NULL)",
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '\(String(repeating: "0", count: 64))')",
        ]),
        (4, "audit archive anchors", [
            "CREATE TABLE audit_anchor (seq bigint PRIMARY KEY, hash text NOT NULL, archived_at bigint NOT NULL, archive text NOT NULL)",
        ]),
        (5, "expiring platform records, for the sweep", [
            "CREATE INDEX platform_record_expires ON platform_record(expires) WHERE expires IS NOT NULL",
        ]),
        (6, "the access decision inside the query: a row's facility and sensitive labels; consent rules", [
            "ALTER TABLE resource ADD COLUMN facility text COLLATE \"C\"",
            "ALTER TABLE resource ADD COLUMN sensitive text COLLATE \"C\"",
            """
            CREATE TABLE idx_consent (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                patient text COLLATE "C" NOT NULL, facility text COLLATE "C" NOT NULL, class text COLLATE "C" NOT NULL,
                label text COLLATE "C" NOT NULL, verdict int NOT NULL, rank int NOT NULL, low bigint NOT NULL, high bigint NOT NULL)
            """,
            "CREATE INDEX idx_consent_lookup ON idx_consent (patient, label, rid)",
            "CREATE INDEX idx_consent_rid ON idx_consent (rid)",
            "CREATE INDEX idx_token_care ON idx_token (system, code) WHERE param = '_care'",
            "INSERT INTO platform_record (kind, id, content) SELECT '\(PlatformRecordSQL.pendingKind)', 'reindex', 'access columns (migration 6)'"
                + " WHERE EXISTS (SELECT 1 FROM resource)",
        ]),
        (7, "terminology: a code system's concepts and the closure of its hierarchy", [
            """
            CREATE TABLE idx_concept (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                system text COLLATE "C" NOT NULL, version text COLLATE "C" NOT NULL, code text COLLATE "C" NOT NULL,
                display text, detail text NOT NULL)
            """,
            "CREATE INDEX idx_concept_lookup ON idx_concept (system, code, version)",
            "CREATE INDEX idx_concept_rid ON idx_concept (rid)",
            """
            CREATE TABLE idx_closure (rid bigint NOT NULL, type text COLLATE "C" NOT NULL, param text COLLATE "C" NOT NULL,
                system text COLLATE "C" NOT NULL, ancestor text COLLATE "C" NOT NULL, code text COLLATE "C" NOT NULL)
            """,
            "CREATE INDEX idx_closure_below ON idx_closure (system, ancestor, code)",
            "CREATE INDEX idx_closure_above ON idx_closure (system, code, ancestor)",
            "CREATE INDEX idx_closure_rid ON idx_closure (rid)",
            "INSERT INTO platform_record (kind, id, content) SELECT '\(PlatformRecordSQL.pendingKind)', 'reindex', 'terminology rows (migration 7)'"
                + " WHERE EXISTS (SELECT 1 FROM resource WHERE type = 'CodeSystem') ON CONFLICT DO NOTHING",
        ]),
        (8, "document streams: large documents kept apart from their resource (ADR 029)", [
            "CREATE TABLE document_chunk (stream text COLLATE \"C\" NOT NULL, seq int NOT NULL, bytes bytea NOT NULL, PRIMARY KEY (stream, seq))",
            "ALTER TABLE document_chunk ALTER COLUMN bytes SET STORAGE EXTERNAL",
            "CREATE TABLE document_stream (id text COLLATE \"C\" PRIMARY KEY, size bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now())",
        ]),
        (9, "pending document streams: marked until a version names them, swept when abandoned (ADR 029)", [
            "CREATE TABLE document_stream_pending (id text COLLATE \"C\" PRIMARY KEY, touched_at timestamptz NOT NULL DEFAULT now())",
        ]),
    ]
}