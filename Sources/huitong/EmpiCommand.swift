import Access
import ArgumentParser
import Foundation
import Identity
import Logging
import Platform
import Store

/// The master patient index's maintenance commands.
struct Empi: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "empi",
        abstract: "Master patient index (居民主索引): train the matching rules, re-match every Patient.",
        subcommands: [EmpiTrain.self, EmpiRebuild.self])
}

struct EmpiTrain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Estimate the matching rules from the stored Patients (EM, no labels needed) and write them as JSON.")

    @Option(help: "Where to write the rules.")
    var out: String = "match-rules.json"

    @Option(help: "At most this many Patients are read for training.")
    var sample: Int = 100_000

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var matchingOptions: MatchingOptions

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        let store = try await storeOptions.open(logger: logger)
        let start = try matchingOptions.rules() ?? .defaults
        let began = Date()
        let protection = try await storeOptions.identifierProtection(for: store)
        let (rules, report) = try await MatchTraining.train(store: store, protection: protection, start: start, sample: sample) { line in
            ProgressLine.draw(line)
        }
        try await store.close()
        try rules.write(path: out)
        ProgressLine.end()
        print("Trained on \(report.patients) Patients (\(report.candidatePairs) candidate pairs, \(report.randomPairs) random pairs, "
              + "\(report.iterations) EM iterations) in \(String(format: "%.1f", Date().timeIntervalSince(began))) s; wrote \(out)")
        print("Serve with: huitong serve --match-rules \(out); re-match the stored Patients with: huitong empi rebuild --match-rules \(out)")
    }
}

struct EmpiRebuild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebuild",
        abstract: "Match every stored Patient again with the current rules (MANUAL links and reviewers' decisions stay).")

    @OptionGroup var storeOptions: StoreOptions
    @OptionGroup var matchingOptions: MatchingOptions

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        guard let rules = try matchingOptions.rules() else { throw ValidationError("--no-matching and rebuild contradict each other") }
        let store = try await storeOptions.open(logger: logger)
        let began = Date()
        let pipeline = IngestPipeline(protection: try await storeOptions.identifierProtection(for: store))
        let report = try await MasterIndexRebuild(service: FHIRService(store: store, pipeline: pipeline, matching: rules, principal: .platform)).run { line in
            ProgressLine.draw("\(line)  \(String(format: "%.0f", Date().timeIntervalSince(began))) s")
        }
        try await store.analyze()
        try await store.close()
        ProgressLine.end()
        let seconds = Date().timeIntervalSince(began)
        let outcomes = report.outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print("Re-matched \(report.patients) Patients in \(String(format: "%.1f", seconds)) s (\(Int(Double(report.patients) / max(seconds, 0.001))) Patients/s); "
              + "cleared the automatic links of \(report.personsCleared) Persons; \(outcomes)")
    }
}
