import ArgumentParser
import Foundation
import Logging
import Platform
import Store

/// The audit trail (全程留痕).
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check and archive the tamper-evident audit trail.",
        subcommands: [AuditVerify.self, AuditArchiveCommand.self])
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Recompute the audit hash chain; exit 1 naming the first event that was changed, removed or inserted.")

    @Option(help: "Also verify the archive files in this folder (huitong audit archive --to): the chain from the first event on.")
    var archive: String?

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        let store = try await storeOptions.open(logger: Logger(label: "huitong"))
        let began = Date()
        if let archive {
            do {
                let archived = try AuditArchive.verify(folder: archive, anchor: try await store.auditAnchor())
                print("archives intact: \(archived) events in \(archive)")
            } catch let failure as AuditArchive.Failure {
                try await store.close()
                var err = FileHandleOutputStream.standardError
                print("audit archive BROKEN: \(failure)", to: &err)
                throw ExitCode(1)
            }
        }
        let report = try await store.verifyAuditChain { checked in
            var err = FileHandleOutputStream.standardError
            print("  \(checked) events checked", to: &err)
        }
        try await store.close()
        let seconds = String(format: "%.1f", Date().timeIntervalSince(began))
        if let broken = report.broken {
            var err = FileHandleOutputStream.standardError
            print("audit chain BROKEN at AuditEvent/\(broken.seq): \(broken.reason) (\(report.checked) events before it verified)", to: &err)
            throw ExitCode(1)
        }
        let archived = report.archivedThrough > 0 ? " (events 1…\(report.archivedThrough) archived)" : ""
        print("audit chain intact: \(report.checked) events in \(seconds) s, head \(report.head ?? "(empty)")\(archived)")
    }
}

struct AuditArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Export the audit events recorded before a date to an archive file, then remove them from the store (the chain keeps its anchor).")

    /// The shortest retention the plans allow (等保三级: audit logs kept at least six months).
    static let minimumRetentionDays = 180

    @Option(help: "Archive events recorded before this date (YYYY-MM-DD, UTC); it must lie at least the retention period in the past.")
    var before: String

    @Option(help: "Folder of the archive files (created if missing).")
    var to: String

    @Option(help: "Days of audit events kept in the store (at least 180).")
    var retentionDays = minimumRetentionDays

    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        if retentionDays < Self.minimumRetentionDays {
            throw ValidationError("--retention-days must be at least \(Self.minimumRetentionDays): audit events are kept six months or more")
        }
        guard let date = Self.date(before) else { throw ValidationError("--before must be a date, YYYY-MM-DD") }
        let limit = Date().addingTimeInterval(-Double(retentionDays) * 86_400)
        if date > limit {
            throw ValidationError("--before \(before) is within the \(retentionDays)-day retention period; the latest allowed is \(Self.format(limit))")
        }
    }

    /// YYYY-MM-DD in UTC.
    static func dayFormatter() -> DateFormatter {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd"
        return f
    }

    static func date(_ text: String) -> Date? { dayFormatter().date(from: text) }
    static func format(_ date: Date) -> String { dayFormatter().string(from: date) }

    func run() async throws {
        let store = try await storeOptions.open(logger: Logger(label: "huitong"))
        let before = Int64(Self.date(self.before)!.timeIntervalSince1970 * 1_000_000)
        do {
            let report = try await AuditArchive.archive(store, before: before, folder: to) { done in
                var err = FileHandleOutputStream.standardError
                print("  \(done) events archived", to: &err)
            }
            try await store.close()
            if let file = report.file {
                print("archived AuditEvent/\(report.first)…\(report.last) (\(report.events) events) to \(file); removed from the store, chain anchored at \(report.last)")
            } else {
                print("nothing recorded before \(self.before) is left to archive")
            }
        } catch let failure as AuditArchive.Failure {
            try await store.close()
            var err = FileHandleOutputStream.standardError
            print("audit archive FAILED: \(failure)", to: &err)
            throw ExitCode(1)
        }
    }
}
