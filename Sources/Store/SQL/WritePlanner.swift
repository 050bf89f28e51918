import FHIRModel

/// The current state of a stored resource as a commit sees it.
package struct ResourceState: Sendable {
    package var rid: Int
    package var version: Int
    package var deleted: Bool

    package init(rid: Int, version: Int, deleted: Bool) {
        self.rid = rid
        self.version = version
        self.deleted = deleted
    }
}

/// Rows a commit will write, collected by `WritePlanner` and written by the backend's writer.
package struct PendingRows: Sendable {
    package struct Resource: Sendable {
        package var rid: Int, key: ResourceKey, version: Int, time: Int64, deleted: Bool, hid: Int
        /// The patient compartment this version belongs to (see `WritePlanner.compartment`).
        package var compartment: String?
        /// What the access decision reads of the row (ADR 016): its facility and sensitive labels.
        package var facility: String?
        package var sensitive: String?

        package init(rid: Int, key: ResourceKey, version: Int, time: Int64, deleted: Bool, hid: Int, compartment: String?,
                     facility: String? = nil, sensitive: String? = nil) {
            (self.rid, self.key, self.version, self.time, self.deleted, self.hid, self.compartment) = (rid, key, version, time, deleted, hid, compartment)
            (self.facility, self.sensitive) = (facility, sensitive)
        }
    }
    package struct History: Sendable {
        package var hid: Int, rid: Int, version: Int, time: Int64, method: String, content: [UInt8]?
        package var compartment: String?

        package init(hid: Int, rid: Int, version: Int, time: Int64, method: String, content: [UInt8]?, compartment: String?) {
            (self.hid, self.rid, self.version, self.time, self.method, self.content, self.compartment) = (hid, rid, version, time, method, content, compartment)
        }
    }
    package var resources: [Resource] = []
    package var history: [History] = []
    /// Index rows per resource row id (empty for deletions).
    package var index: [Int: (type: String, entries: [IndexEntry])] = [:]
    /// Row ids whose old index rows must go first.
    package var clearIndex: Set<Int> = []
    /// Change-feed consumer positions to save.
    package var consumers: [String: Int] = [:]
    /// Audit events appended to the chain, with the patients each concerns.
    package var audit: [(event: StoredAuditEvent, patients: [String])] = []
    package var isEmpty: Bool { resources.isEmpty && consumers.isEmpty && audit.isEmpty }

    package init() {}
}

/// Turns a `WriteUnit` into versions, outcomes and rows, the same for every backend: checks
/// `If-Match` and create-never-overwrites against the current states, numbers versions, renders
/// content. A unit that fails a precondition records nothing.
package enum WritePlanner {
    /// - Parameters:
    ///   - states: current states of the unit's keys (absent: never stored); updated on success.
    ///   - fresh: row ids created by this commit (no old index rows to clear); grows on success.
    ///   - time: the lastUpdated of every version this unit writes (microseconds).
    package static func apply(_ unit: WriteUnit, states: inout [ResourceKey: ResourceState], pending: inout PendingRows,
                              fresh: inout Set<Int>, time: Int64,
                              newRid: () -> Int, newHid: () -> Int) throws(StoreError) -> [WriteOutcome] {
        var local = states
        var planned: [(write: PreparedWrite, state: ResourceState, created: Bool, changed: Bool)] = []
        var created = Set<Int>()
        for write in unit.writes {
            let current = local[write.key]
            if let expected = write.ifMatch, current == nil || current!.deleted || current!.version != expected {
                throw .versionConflict(key: write.key, expected: expected, current: current.flatMap { $0.deleted ? nil : $0.version })
            }
            switch write.action {
            case .create, .update:
                if write.mustNotExist, let current, !current.deleted { throw .alreadyExists(write.key) }
                let state: ResourceState
                if let current {
                    state = ResourceState(rid: current.rid, version: current.version + 1, deleted: false)
                } else {
                    state = ResourceState(rid: newRid(), version: 1, deleted: false)
                    created.insert(state.rid)
                }
                local[write.key] = state
                planned.append((write, state, current == nil || current!.deleted, true))
            case .delete:
                guard let current, !current.deleted else {
                    planned.append((write, ResourceState(rid: current?.rid ?? 0, version: current?.version ?? 0, deleted: true), false, false))
                    continue
                }
                let state = ResourceState(rid: current.rid, version: current.version + 1, deleted: true)
                local[write.key] = state
                planned.append((write, state, false, true))
            }
        }
        states = local
        fresh.formUnion(created)
        var outcomes: [WriteOutcome] = []
        for p in planned {
            guard p.changed else {
                outcomes.append(WriteOutcome(key: p.write.key, version: p.state.version, lastUpdated: time, created: false, content: nil, changed: false))
                continue
            }
            let content = p.state.deleted ? nil : p.write.template?.render(version: p.state.version, lastUpdated: time)
            let hid = newHid()
            let access = p.state.deleted ? AccessColumns(facility: nil, compartment: nil, sensitive: nil)
                : AccessColumns(key: p.write.key, index: p.write.index)
            let compartment = access.compartment
            pending.resources.append(.init(rid: p.state.rid, key: p.write.key, version: p.state.version, time: time,
                                           deleted: p.state.deleted, hid: hid, compartment: compartment,
                                           facility: access.facility, sensitive: access.sensitive))
            pending.history.append(.init(hid: hid, rid: p.state.rid, version: p.state.version, time: time, method: p.write.method,
                                         content: content, compartment: compartment))
            if !fresh.contains(p.state.rid) { pending.clearIndex.insert(p.state.rid) }
            pending.index[p.state.rid] = (p.write.key.type, p.state.deleted ? [] : p.write.index)
            outcomes.append(WriteOutcome(key: p.write.key, version: p.state.version, lastUpdated: time,
                                         created: p.created, content: content, changed: true))
        }
        return outcomes
    }

    /// The id of the patient whose compartment a version belongs to: a Patient's own id, else the
    /// Patient its `patient` (or else `subject`) parameter references; nil for shared resources
    /// (Practitioner, Organization, ...). The PostgreSQL store keeps it as the future sharding
    /// key (ADR 007). A deletion keeps the key of the version it deletes unknown (nil).
    package static func compartment(of write: PreparedWrite) -> String? {
        write.action == .delete ? nil : compartment(of: write.key, index: write.index)
    }

    package static func compartment(of key: ResourceKey, index: [IndexEntry]) -> String? {
        AccessColumns(key: key, index: index).compartment
    }
}
