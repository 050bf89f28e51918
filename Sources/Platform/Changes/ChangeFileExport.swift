#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import FHIRModel
import Foundation
import Store

/// A change consumer that appends every committed change to a file for systems downstream (a
/// data centre, a warehouse loader): `serve --export-changes DIR` writes one JSON object a line —
/// `resourceType`, `id`, `versionId`, `lastUpdated`, `deleted` — to `DIR/changes-YYYY-MM-DD.ndjson`
/// (UTC day of the export). It carries references only, no content: a receiver reads what it
/// needs through the API with its own credentials (and the access decision).
///
/// A batch is written with one `write` and synced before the feed's position moves, so a change
/// is in the file at least once; after a crash the last batch may come again (and a line cut by
/// the crash may precede it), so receivers keep the newest `versionId` per resource. On a shared
/// folder, nodes append to the same files one at a time: one node serves the consumer at a time.
public struct ChangeFileExport: Sendable {
    public static let consumerName = "file-export"
    public let folder: String

    public init(folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        self.folder = folder
    }

    public var consumer: ChangeConsumer {
        ChangeConsumer(name: Self.consumerName) { changes in try append(changes) }
    }

    static func line(_ change: ResourceChange) -> String {
        let object = JSONObject([
            ("resourceType", .string(change.key.type)),
            ("id", .string(change.key.id)),
            ("versionId", .string(String(change.version))),
            ("lastUpdated", .string(FHIRDateTime.formatInstant(micros: change.lastUpdated))),
            ("deleted", .bool(change.deleted)),
        ])
        return JSONWriter.string(.object(object))
    }

    func append(_ changes: [ResourceChange], now: Date = Date()) throws {
        guard !changes.isEmpty else { return }
        let day = ISO8601DateFormatter.string(from: now, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate, .withDashSeparatorInDate])
        let path = (folder as NSString).appendingPathComponent("changes-\(day).ndjson")
        let text = changes.map(Self.line).joined(separator: "\n") + "\n"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw ChangeExportError(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 {
                if errno == EINTR { continue }
                throw ChangeExportError(path: path, reason: String(cString: strerror(errno)))
            }
            bytes = bytes.dropFirst(written)
        }
        guard fsync(fd) == 0 else { throw ChangeExportError(path: path, reason: String(cString: strerror(errno))) }
    }
}

struct ChangeExportError: Error, CustomStringConvertible {
    let path: String
    let reason: String
    var description: String { "Cannot append the change export \(path): \(reason)" }
}
