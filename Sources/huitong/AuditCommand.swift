import ArgumentParser
import Foundation
import Logging
import Store

/// The audit trail (全程留痕).
struct Audit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Check the tamper-evident audit trail.",
        subcommands: [AuditVerify.self])
}

struct AuditVerify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Recompute the audit hash chain; exit 1 naming the first event that was changed, removed or inserted.")

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        let store = try await storeOptions.open(logger: Logger(label: "huitong"))
        let began = Date()
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
        print("audit chain intact: \(report.checked) events in \(seconds) s, head \(report.head ?? "(empty)")")
    }
}
