import Access
import ArgumentParser
import FHIRModel
import Foundation
import Logging
import Platform
import Sharing
import Store

/// Record sharing (调阅, 互认): the region's recognition catalogue and its facilities' QC passes.
struct SharingCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sharing",
        abstract: "Record sharing (互认): load the recognition catalogue and the facilities' QC passes.",
        subcommands: [LoadCatalogue.self, LoadQC.self])
}

/// Prints a refusal's issues (one line each: the bad rows) to standard error and exits 1.
func reportRefusal(_ file: String, _ error: FHIRError) -> ExitCode {
    var err = FileHandleOutputStream.standardError
    for issue in error.issues { print("\(file): \(issue.diagnostics)", to: &err) }
    print("\(file): nothing loaded", to: &err)
    return ExitCode(1)
}

/// Reads a list file, opens the store, loads it (`load` says what it did), closes the store; a
/// refusal prints its bad rows and exits 1 with nothing loaded.
func loadList(_ file: String, _ storeOptions: StoreOptions,
              _ load: (String, any ResourceStore) async throws -> String) async throws {
    var logger = Logger(label: "huitong")
    logger.logLevel = .warning
    let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: file)), as: UTF8.self)
    let store = try await storeOptions.open(logger: logger)
    do {
        print("\(file): " + (try await load(text, store)))
    } catch let error as FHIRError {
        try await store.close()
        throw reportRefusal(file, error)
    } catch {
        try await store.close()
        throw error
    }
    try await store.close()
}

struct LoadCatalogue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load-catalogue",
        abstract: "Load the recognition catalogue (互认项目目录) from CSV: system,code,display,category,validity_days,scope,price. "
            + "Items are added or replaced (by system and code); loading the same file again changes nothing.")

    @Argument(help: "The CSV file (UTF-8, header first).")
    var file: String

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        try await loadList(file, storeOptions) { text, store in
            let items = try RecognitionCatalogue.parse(csv: text)
            let pipeline = IngestPipeline(protection: try await storeOptions.identifierProtection(for: store))
            let service = FHIRService(store: store, pipeline: pipeline, matching: nil, principal: .platform)
            let (count, changed) = try await RecognitionCatalogue.load(items, service: service)
            return "\(items.count) rows; the catalogue has \(count) items\(changed ? "" : " (unchanged)")"
        }
    }
}

struct LoadQC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load-qc",
        abstract: "Load facilities' QC passes (室间质评) from CSV: facility,system,code,scope,valid_from,valid_to "
            + "(facility: the Organization id its client writes as; dates inclusive). Idempotent.")

    @Argument(help: "The CSV file (UTF-8, header first).")
    var file: String

    @Flag(help: "The list is the whole of each facility it names: their passes not in it are removed (results already marked keep their marks).")
    var replace = false

    @OptionGroup var storeOptions: StoreOptions

    func run() async throws {
        try await loadList(file, storeOptions) { text, store in
            let passes = try QualityPass.parse(csv: text, catalogue: try await RecognitionCatalogue.stored(in: store))
            let removed = try await QualityPass.load(passes, replacing: replace, store: store)
            return "\(passes.count) QC passes loaded" + (replace ? ", \(removed) removed" : "")
        }
    }
}
