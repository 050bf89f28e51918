import Access
import FHIRModel
import Foundation
import Store

/// Archiving the audit trail (retention ≥ 180 days, then export and prune): events recorded
/// before a date are written to an NDJSON file — exact stored bytes with their chain hashes, and
/// each as a FHIR AuditEvent for reading — then removed from the store in one transaction that
/// records the last archived event as the chain's anchor. `verify` recomputes the chain across
/// the archive files and checks that it ends exactly at the store's anchor, so the whole trail
/// stays verifiable from the first event on.
///
/// File `audit-<first>-<last>.ndjson`: a header line `{"archive":"huitong-audit","version":1,
/// "first":F,"last":L,"previous":"<hash before F>"}`, one line per event `{"seq","recorded",
/// "hash","content" (base64 of the stored bytes),"event" (the AuditEvent)}`, and a trailer
/// `{"end":L,"head":"<hash of L>","events":N}`.
public enum AuditArchive {
    public struct Report: Sendable, Equatable {
        public let file: String?
        public let first: Int
        public let last: Int
        public var events: Int { file == nil ? 0 : last - first + 1 }
    }

    public enum Failure: Error, CustomStringConvertible {
        case brokenChain(seq: Int, reason: String)
        case badArchive(file: String, reason: String)

        public var description: String {
            switch self {
            case .brokenChain(let seq, let reason): "the audit chain is broken at AuditEvent/\(seq) (\(reason)); nothing was archived"
            case .badArchive(let file, let reason): "\(file): \(reason)"
            }
        }
    }

    /// Archives every event recorded before `before` (µs since the epoch) into `folder` and prunes
    /// them; nil file when there is nothing to archive. The events are verified as they are
    /// written: a broken chain archives and prunes nothing.
    public static func archive(_ store: any ResourceStore, before: Int64, folder: String,
                               progress: @Sendable (Int) -> Void = { _ in }) async throws -> Report {
        let anchor = try await store.auditAnchor()
        let cut = try await store.auditArchiveCut(before: before)
        guard cut > anchor.seq else { return Report(file: nil, first: anchor.seq + 1, last: anchor.seq) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let name = "audit-\(pad(anchor.seq + 1))-\(pad(cut)).ndjson"
        let path = (folder as NSString).appendingPathComponent(name)
        let partial = path + ".part"
        guard FileManager.default.createFile(atPath: partial, contents: nil) else { throw Failure.badArchive(file: partial, reason: "cannot create") }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: partial))
        var previous = anchor.hash
        var seq = anchor.seq
        do {
            try out.write(contentsOf: line(JSONObject([
                ("archive", .string("huitong-audit")), ("version", .number("1")), ("first", .number(String(anchor.seq + 1))),
                ("last", .number(String(cut))), ("previous", .string(anchor.hash)),
            ])))
            while seq < cut {
                let events = try await store.auditEvents(after: seq, limit: min(5_000, cut - seq))
                guard !events.isEmpty else { throw Failure.brokenChain(seq: seq + 1, reason: "missing") }
                var chunk = Data()
                for event in events {
                    guard event.seq == seq + 1 else { throw Failure.brokenChain(seq: seq + 1, reason: "missing") }
                    let hash = AuditChain.link(previous: previous, seq: event.seq, content: event.content)
                    guard hash == event.hash else { throw Failure.brokenChain(seq: event.seq, reason: "changed") }
                    chunk.append(line(entry(event)))
                    previous = hash
                    seq = event.seq
                }
                try out.write(contentsOf: chunk)
                progress(seq - anchor.seq)
            }
            try out.write(contentsOf: line(JSONObject([("end", .number(String(cut))), ("head", .string(previous)),
                                                       ("events", .number(String(cut - anchor.seq)))])))
            try out.synchronize()
            try out.close()
        } catch {
            try? out.close()
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
        // The file is complete and on disk before anything leaves the store.
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: partial, toPath: path)
        syncDirectory(folder)
        try await store.pruneAudit(through: cut, hash: previous, archive: name)
        return Report(file: path, first: anchor.seq + 1, last: cut)
    }

    /// Recomputes the chain through the archive files in `folder` (from the first event) and
    /// checks that it ends at the store's anchor. Returns the number of archived events checked.
    public static func verify(folder: String, anchor: (seq: Int, hash: String)) throws -> Int {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasPrefix("audit-") && $0.hasSuffix(".ndjson") }.sorted()
        var previous = AuditChain.genesis
        var seq = 0
        for name in names {
            let path = (folder as NSString).appendingPathComponent(name)
            func bad(_ reason: String) -> Failure { .badArchive(file: name, reason: reason) }
            let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n", omittingEmptySubsequences: true)
            guard let header = lines.first.flatMap({ try? JSONParser.parse(Array($0.utf8)) }),
                  header["archive"]?.stringValue == "huitong-audit" else { throw bad("not an audit archive") }
            guard header["previous"]?.stringValue == previous, Int(header["first"]?.numberText ?? "") == seq + 1 else {
                throw bad("does not continue the previous archive (expected events from \(seq + 1) after hash \(previous.prefix(12))…)")
            }
            for text in lines.dropFirst() {
                guard let item = try? JSONParser.parse(Array(text.utf8)) else { throw bad("unreadable line after AuditEvent/\(seq)") }
                if let end = item["end"] {
                    guard Int(end.numberText ?? "") == seq, item["head"]?.stringValue == previous else {
                        throw bad("its trailer does not match its events (ends at \(seq))")
                    }
                    continue
                }
                guard let s = item["seq"]?.numberText.flatMap({ Int($0) }), s == seq + 1 else {
                    throw bad("AuditEvent/\(seq + 1) is missing")
                }
                guard let content = item["content"]?.stringValue.flatMap({ Data(base64Encoded: $0) }),
                      AuditChain.link(previous: previous, seq: s, content: Array(content)) == item["hash"]?.stringValue else {
                    throw bad("AuditEvent/\(s) was changed after it was archived")
                }
                previous = item["hash"]?.stringValue ?? ""
                seq = s
            }
        }
        guard seq == anchor.seq, previous == anchor.hash else {
            throw Failure.badArchive(file: folder, reason: "the archives end at AuditEvent/\(seq), but the store's chain continues from AuditEvent/\(anchor.seq)")
        }
        return seq
    }

    static func entry(_ event: StoredAuditEvent) -> JSONObject {
        let rendered = AuditEventBuilder.render(event.content, seq: event.seq, hash: event.hash)
        return JSONObject([
            ("seq", .number(String(event.seq))), ("recorded", .number(String(event.recorded))), ("hash", .string(event.hash)),
            ("content", .string(Data(event.content).base64EncodedString())), ("event", rendered),
        ])
    }

    static func line(_ object: JSONObject) -> Data {
        Data(JSONWriter.bytes(.object(object)) + [UInt8(ascii: "\n")])
    }

    static func pad(_ n: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    static func syncDirectory(_ folder: String) {
        let fd = open(folder, O_RDONLY)
        if fd >= 0 { fsync(fd); close(fd) }
    }
}
