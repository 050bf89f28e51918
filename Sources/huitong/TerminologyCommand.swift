import Access
import ArgumentParser
import FHIRModel
import Foundation
import Logging
import Platform
import Store
import Terminology

/// Terminology maintenance (术语注册): load code systems, value sets and concept maps.
struct TerminologyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "terminology",
        abstract: "Terminology (术语): load CodeSystems, ValueSets and ConceptMaps.",
        subcommands: [TerminologyLoad.self])
}

struct TerminologyLoad: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Load FHIR JSON files (a CodeSystem, ValueSet or ConceptMap, or a Bundle of them) through the ingest pipeline; "
            + "idempotent by url and version (unchanged content is left alone).")

    @Argument(help: "FHIR JSON files.")
    var files: [String]

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        let store = try await storeOptions.open(logger: logger)
        let pipeline = IngestPipeline(protection: try await storeOptions.identifierProtection(for: store))
        let loader = TerminologyLoader(service: FHIRService(store: store, pipeline: pipeline, matching: nil, principal: .platform))
        var failed = 0
        for file in files {
            do {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                let started = Date()
                for resource in try TerminologyLoader.resources(in: try pipeline.parse(Array(bytes))) {
                    let outcome = try await loader.load(resource)
                    print("\(file): \(outcome.description) in \(String(format: "%.1f", Date().timeIntervalSince(started))) s")
                }
            } catch {
                failed += 1
                var err = FileHandleOutputStream.standardError
                print("\(file): \(error)", to: &err)
            }
        }
        try await store.close()
        if failed > 0 { throw ExitCode(1) }
    }
}
