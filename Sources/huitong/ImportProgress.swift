import BulkImport
import Foundation
import Platform
import Synchronization

/// The progress line of `huitong import`: files, resources, rate and ETA, redrawn at most once a second.
final class ImportProgress: Sendable {
    private struct State {
        var files = 0
        var failed = 0
        var resources = 0
        var lastDraw: Double = 0
    }

    private let totalFiles: Int
    private let start = Date()
    private let state = Mutex(State())

    init(totalFiles: Int) {
        self.totalFiles = totalFiles
    }

    func record(_ result: BulkImporter.FileResult) {
        let line: String? = state.withLock { s in
            s.files += 1
            s.resources += result.resources
            if result.error != nil { s.failed += 1 }
            let elapsed = Date().timeIntervalSince(start)
            guard elapsed - s.lastDraw >= 1, s.files < totalFiles else { return nil }
            s.lastDraw = elapsed
            return Self.describe(s, totalFiles: totalFiles, elapsed: elapsed)
        }
        if let line { ProgressLine.draw(line) }
    }

    func finish() {
        let elapsed = Date().timeIntervalSince(start)
        let s = state.withLock { $0 }
        var err = FileHandleOutputStream.standardError
        print((ProgressLine.terminal ? "\r" : "") + Self.describe(s, totalFiles: totalFiles, elapsed: elapsed), to: &err)
        print("Imported \(s.resources) resources from \(s.files - s.failed) of \(totalFiles) files in \(String(format: "%.1f", elapsed)) s "
              + "(\(Int(Double(s.resources) / max(elapsed, 0.001))) resources/s); \(s.failed) failed")
    }

    private static func describe(_ s: State, totalFiles: Int, elapsed: Double) -> String {
        let rate = Double(s.resources) / max(elapsed, 0.001)
        let eta = s.files > 0 ? elapsed / Double(s.files) * Double(totalFiles - s.files) : 0
        return "files \(s.files)/\(totalFiles)  resources \(s.resources)  \(Int(rate))/s  ETA \(Int(eta)) s  failed \(s.failed)"
    }
}

/// A progress line on standard error: redrawn in place on a terminal; in a log (where `\r` would
/// pile every redraw onto one line) a line of its own at most every 10 seconds.
enum ProgressLine {
    static let terminal = isatty(STDERR_FILENO) != 0
    private static let lastLogged = Mutex<Double>(0)

    static func draw(_ line: String) {
        var err = FileHandleOutputStream.standardError
        if terminal {
            print("\r" + line, terminator: "", to: &err)
            return
        }
        let now = Date().timeIntervalSinceReferenceDate
        guard lastLogged.withLock({ last in
            guard now - last >= 10 else { return false }
            last = now
            return true
        }) else { return }
        print(line, to: &err)
    }

    /// Ends a redrawn line.
    static func end() {
        guard terminal else { return }
        var err = FileHandleOutputStream.standardError
        print("", to: &err)
    }
}

/// `print(..., to:)` target for standard error.
struct FileHandleOutputStream: TextOutputStream {
    let handle: FileHandle
    static var standardError: FileHandleOutputStream { FileHandleOutputStream(handle: .standardError) }
    mutating func write(_ string: String) { handle.write(Data(string.utf8)) }
}

/// An exclusive lock on the data folder, so a second process (a server and an import at
/// once) cannot open the same database: the store's writer assumes it is the only one.
enum DataLock {
    nonisolated(unsafe) private static var descriptor: Int32 = -1

    static func acquire(folder: String) throws {
        let path = (folder as NSString).appendingPathComponent("huitong.lock")
        let fd = open(path, O_CREAT | O_RDWR, 0o644)
        guard fd >= 0 else { throw LockError(message: "cannot open \(path)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            throw LockError(message: "\(folder) is in use by another huitong process (stop it first, or import through its HTTP API)")
        }
        descriptor = fd
    }

    struct LockError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}
