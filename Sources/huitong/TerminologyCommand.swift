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

    @Argument(help: "FHIR JSON files, or CSV tables (.csv) of one code system each.")
    var files: [String] = []

    @Flag(help: "Also load the national tables the platform ships: sex (GB/T 2261.1), marital status (GB/T 2261.2), ethnicity (GB/T 3304), identity document type (CV02.01.101).")
    var national = false

    @Option(help: "CSV: the code system's canonical URL (required for a CSV file).")
    var url: String?

    @Option(help: "CSV: the code system's version.")
    var version: String?

    @Option(help: "CSV: the code system's name (default: from the URL).")
    var name: String?

    @Option(help: "CSV: the code system's title (e.g. 性别代码 GB/T 2261.1).")
    var title: String?

    @Option(help: "CSV: ROLE=HEADER, ROLE one of code, display, parent, zh, en, definition, property:NAME (default: a header named as the role).")
    var column: [String] = []

    @OptionGroup var storeOptions: StoreOptions

    func validate() throws {
        if files.isEmpty && !national { throw ValidationError("Name the files to load, or --national") }
    }

    func run() async throws {
        var logger = Logger(label: "huitong")
        logger.logLevel = .warning
        let store = try await storeOptions.open(logger: logger)
        let pipeline = IngestPipeline(protection: try await storeOptions.identifierProtection(for: store))
        let loader = TerminologyLoader(service: FHIRService(store: store, pipeline: pipeline, matching: nil, principal: .platform))
        var failed = 0
        if national {
            for outcome in try await ShippedTerminology.load(service: loader.service) { print("national: \(outcome.description)") }
        }
        for file in files {
            do {
                let bytes = try Data(contentsOf: URL(fileURLWithPath: file))
                let started = Date()
                let resources: [JSONObject]
                if file.lowercased().hasSuffix(".csv") {
                    guard let url else { throw ValidationError("\(file) is a CSV table: give the code system's --url") }
                    let table = CSVCodeSystem(url: url, version: version, name: name, title: title, columns: try CSVCodeSystem.columns(column))
                    resources = [try table.codeSystem(String(decoding: bytes, as: UTF8.self))]
                } else {
                    resources = try TerminologyLoader.resources(in: try pipeline.parse(Array(bytes)))
                }
                for resource in resources {
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
