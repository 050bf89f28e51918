import Access
import FHIRModel
import Foundation
import Platform
import Store

/// Loads files of FHIR data through the ingest pipeline: transaction/batch Bundles go
/// through `BundleProcessor` exactly as `POST /fhir` would; collection Bundles and NDJSON
/// become creates (no id) or create-on-update writes (with id), committed in chunks.
public struct BulkImporter: Sendable {
    public struct FileResult: Sendable {
        public let path: String
        /// Resources committed from the file, those before a failure included.
        public let resources: Int
        public let error: String?
    }

    /// A failure after part of a file was committed: what is in, and where to go on from.
    struct Stopped: Error {
        let error: any Error
        /// Resources committed before the failure.
        let committed: Int
        /// What the committed ones are (`lines 1-1000`, `Bundle.entry[0..<500]`), nil when none are.
        let range: String?
        /// Where the rest starts: the first line not committed (NDJSON).
        let resumeLine: Int?

        func description(path: String) -> String {
            let reason = (error as? FHIRError)?.description ?? "\(error)"
            guard committed > 0, let range else { return reason + "; nothing from this file was committed" }
            var text = reason + "; committed before it: \(committed) resources (\(range))"
            if let resumeLine { text += ", nothing from line \(resumeLine) on: import the rest from `tail -n +\(resumeLine) \(path)`" }
            return text
        }
    }

    let service: FHIRService
    let bundles: BundleProcessor
    /// Resources per atomic chunk of an NDJSON file or collection Bundle.
    let chunkSize: Int

    /// 2,000: a commit writes every index page its rows touch to the WAL, and a chunk of results
    /// touches about one page per distinct code; 500 per chunk wrote 1.6 GB of WAL for a 234 MB
    /// store of 100,000 results, 2,000 about 1 GB (docs/performance.md, "Import chunk size").
    public static let defaultChunkSize = 2_000

    public init(service: FHIRService, chunkSize: Int = BulkImporter.defaultChunkSize) {
        precondition(chunkSize > 0)
        self.service = service
        self.bundles = BundleProcessor(service: service)
        self.chunkSize = chunkSize
    }

    /// Expands folders into the `.json` and `.ndjson` files below them, sorted.
    public static func files(in paths: [String]) -> [String] {
        var result: [String] = []
        let fm = FileManager.default
        for path in paths {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: path, isDirectory: &isDir) else { result.append(path); continue }
            if isDir.boolValue {
                let found = (fm.enumerator(atPath: path)?.allObjects as? [String] ?? [])
                    .filter { $0.hasSuffix(".json") || $0.hasSuffix(".ndjson") }
                    .map { (path as NSString).appendingPathComponent($0) }
                result.append(contentsOf: found.sorted())
            } else {
                result.append(path)
            }
        }
        return result
    }

    /// Imports one file; never throws: failures are reported in the result.
    public func importFile(_ path: String) async -> FileResult {
        do {
            guard let data = FileManager.default.contents(atPath: path) else {
                return FileResult(path: path, resources: 0, error: "cannot read file")
            }
            let bytes = [UInt8](data)
            let count = path.hasSuffix(".ndjson") ? try await importNDJSON(bytes) : try await importJSON(bytes)
            return FileResult(path: path, resources: count, error: nil)
        } catch let stopped as Stopped {
            return FileResult(path: path, resources: stopped.committed, error: stopped.description(path: path))
        } catch let error as FHIRError {
            return FileResult(path: path, resources: 0, error: error.description)
        } catch {
            return FileResult(path: path, resources: 0, error: "\(error)")
        }
    }

    func importJSON(_ bytes: [UInt8]) async throws -> Int {
        let json = try service.pipeline.parse(bytes)
        guard let type = json["resourceType"]?.stringValue else { throw FHIRError(.invalid, code: "structure", "Missing resourceType") }
        if type == "Bundle", let bundleType = json["type"]?.stringValue {
            switch bundleType {
            case "transaction", "batch":
                let result = try await bundles.process(json, returnRepresentation: false)
                let failed = result.entries.enumerated().filter { !$0.element.status.hasPrefix("2") }
                if let first = failed.first {
                    let error = FHIRError(.invalid, code: "processing", "\(failed.count) batch entries failed; first: entry[\(first.offset)] \(first.element.status)")
                    // A batch's entries stand alone: the others are in. A transaction's failure is whole.
                    let committed = result.entries.count - failed.count
                    guard bundleType == "batch", committed > 0 else { throw error }
                    throw Stopped(error: error, committed: committed, range: "the batch's other entries", resumeLine: nil)
                }
                return result.entries.count
            default:
                let resources = (json["entry"]?.arrayValue ?? []).compactMap { $0["resource"] }
                return try await importResources(resources, location: "Bundle.entry")
            }
        }
        return try await importResources([json], location: nil)
    }

    /// One resource per line, committed in chunks, each one atomic. A bad line stops the file
    /// after the chunks before its own; issues name the line by its number in the file
    /// (`line[73456].status`), not by its place in its chunk, and the error says which lines are
    /// in (`Stopped`): sent again whole, the resources without an `id` would be stored twice.
    ///
    /// Chunks commit in file order, one after the other; the next chunk is read and prepared
    /// (validated, labelled, enriched, its index rows extracted) while one commits, when nothing its
    /// preparation reads is written by that one (`independent`): a file of results uses both cores,
    /// a file of Patients (the master index reads what the chunk before wrote) goes one by one.
    func importNDJSON(_ bytes: [UInt8]) async throws -> Int {
        let pipeline = service.writePipeline
        var resources: [JSON] = []
        var lines: [Int] = []
        var total = 0
        var lineNumber = 0
        var committedThrough = 0
        var inFlight: InFlight?
        func stopped(_ error: any Error) -> Stopped {
            Stopped(error: error, committed: total, range: committedThrough > 0 ? "lines 1-\(committedThrough)" : nil, resumeLine: committedThrough + 1)
        }
        /// Waits for the chunk being committed; its failure stops the file.
        func settle() async throws {
            guard let flight = inFlight else { return }
            inFlight = nil
            do {
                total += try await flight.commit.value
            } catch {
                throw stopped(error)
            }
            committedThrough = flight.lastLine
        }
        /// Prepares the chunk read, then commits it after the one before.
        func submit() async throws {
            guard let lastLine = lines.last else { return }
            let pending: WritePipeline.PendingUnit
            do {
                let writes = try Self.requests(resources[...], location: "line", numbers: lines)
                if let flight = inFlight, !Self.independent(writes, of: flight, pipeline) { try await settle() }
                pending = try await pipeline.prepareUnit(writes, as: .operation("import"))
            } catch let error as Stopped {
                throw error
            } catch {
                // The chunk before is committed or not: say which, then why this one is not.
                try await settle()
                throw stopped(error)
            }
            try await settle()
            let count = resources.count
            inFlight = InFlight(commit: Task { _ = try await pipeline.commit(pending); return count },
                                types: pending.writtenTypes, keys: pending.keys, lastLine: lastLine)
            resources.removeAll(keepingCapacity: true)
            lines.removeAll(keepingCapacity: true)
        }
        for line in bytes.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x0D || $0 == 0x09 }) { continue }
            do {
                resources.append(try service.pipeline.parse(line))
                lines.append(lineNumber)
            } catch {
                try await settle()
                throw stopped(FHIRError(.invalid, error.issues.map { Issue(code: $0.code, "line \(lineNumber): \($0.diagnostics)") }))
            }
            if resources.count == chunkSize { try await submit() }
        }
        try await submit()
        try await settle()
        return total
    }

    /// A chunk being committed: what it writes, and its last line.
    struct InFlight {
        let commit: Task<Int, any Error>
        let types: Set<String>
        let keys: Set<ResourceKey>
        let lastLine: Int
    }

    /// Whether `writes` may be prepared while `flight` commits: none of them is one of its
    /// resources, and preparing them reads no type it writes (`WritePipeline.reads(preparing:)`;
    /// a type whose reads a domain does not declare never overlaps).
    static func independent(_ writes: [WriteRequest], of flight: InFlight, _ pipeline: WritePipeline) -> Bool {
        independent(writes, writtenTypes: flight.types, writtenKeys: flight.keys, reads: pipeline.reads(preparing:))
    }

    static func independent(_ writes: [WriteRequest], writtenTypes: Set<String>, writtenKeys: Set<ResourceKey>,
                            reads: (String) -> Set<String>?) -> Bool {
        guard !writes.contains(where: { writtenKeys.contains($0.key) }) else { return false }
        for type in Set(writes.map(\.key.type)) {
            guard let read = reads(type), read.isDisjoint(with: writtenTypes) else { return false }
        }
        return true
    }

    /// Commits resources (a collection Bundle's, one resource) in chunks, each chunk one atomic
    /// unit. Issues are located at `location[i]`, `i` the resource's index.
    func importResources(_ resources: [JSON], location: String?) async throws -> Int {
        for start in stride(from: 0, to: resources.count, by: chunkSize) {
            do {
                let chunk = resources[start..<min(start + chunkSize, resources.count)]
                _ = try await service.writePipeline.write(try Self.requests(chunk, location: location, numbers: nil), as: .operation("import"))
            } catch where start > 0 {
                // The chunks before this one are in.
                throw Stopped(error: error, committed: start, range: "\(location ?? "resource")[0..<\(start)]", resumeLine: nil)
            }
        }
        return resources.count
    }

    /// The writes of the resources at `chunk`'s indices: a create without an `id`, else a
    /// create-on-update.
    static func requests(_ chunk: ArraySlice<JSON>, location: String?, numbers: [Int]?) throws(FHIRError) -> [WriteRequest] {
        var writes: [WriteRequest] = []
        for (i, r) in zip(chunk.indices, chunk) {
            let at = location.map { "\($0)[\(numbers?[i] ?? i)]" }
            guard let type = r["resourceType"]?.stringValue else {
                throw FHIRError(.invalid, code: "structure", "Missing resourceType", at: at)
            }
            let id = r["id"]?.stringValue
            writes.append(WriteRequest(key: ResourceKey(type, id ?? IngestPipeline.newID()), method: id == nil ? "POST" : "PUT",
                                       resource: r, location: at))
        }
        return writes
    }
}
