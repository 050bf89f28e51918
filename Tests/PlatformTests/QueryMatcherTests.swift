import Access
import FHIRModel
import Foundation
import NIOCore
import Platform
import Store
import StoreTestSupport
import XCTest

/// `QueryMatcher` (ADR 023) decides from a resource's own index entries what the stores' SQL
/// decides over the whole store: for every query here, the resources it matches are exactly those
/// the search finds, on both stores.
final class QueryMatcherTests: XCTestCase {
    static let resources: [(String, String)] = [
        ("o1", #"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"718-7"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2024-03-05T08:00:00+08:00","valueQuantity":{"value":132,"unit":"g/L","system":"http://unitsofmeasure.org","code":"g/L"},"category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}]}"#),
        ("o2", #"{"resourceType":"Observation","id":"o2","status":"preliminary","code":{"coding":[{"system":"http://loinc.org","code":"718-7"}],"text":"血红蛋白"},"subject":{"reference":"Patient/p2"},"effectiveDateTime":"2024-04-01","valueQuantity":{"value":98.5,"unit":"g/L","system":"http://unitsofmeasure.org","code":"g/L"}}"#),
        ("o3", #"{"resourceType":"Observation","id":"o3","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"subject":{"reference":"Patient/p1"},"effectivePeriod":{"start":"2024-01-01","end":"2024-06-30"},"valueString":"阴性"}"#),
        ("o4", #"{"resourceType":"Observation","id":"o4","status":"final","code":{"text":"无编码"},"performer":[{"reference":"Practitioner/d1"}]}"#),
    ]

    static let queries = [
        "code=http://loinc.org|718-7", "code=718-7", "code=http://loinc.org|", "code:not=http://loinc.org|718-7",
        "status=final,amended", "status:not=final", "subject=Patient/p1", "patient=p2", "subject:missing=true",
        "date=2024-03-05", "date=ge2024-03-06", "date=lt2024-02", "date=ap2024-04-01", "date=sa2023-12-31", "date=eb2024-07-01",
        "value-quantity=gt100", "value-quantity=le98.5", "value-quantity=132|http://unitsofmeasure.org|g/L", "value-quantity=ne132",
        "code=http://loinc.org|718-7&status=final", "category=laboratory", "category:missing=false",
        "combo-code=718-7", "_id=o3", "_id=o3,o4", "performer=Practitioner/d1",
        "value-string=阴", "value-string:exact=阴性", "value-string:contains=性",
    ]

    func test_matcherAgreesWithTheStoresSearch() async throws {
        try await withEachBackend { test in
            let service = FHIRService(store: test.store, matching: nil, principal: .platform)
            for (id, text) in Self.resources {
                _ = try await service.update("Observation", id, body: try JSONParser.parse(Array(text.utf8)))
            }
            let searches = SearchService(store: test.store).acting(as: .platform)
            let extractor = IndexExtractor()
            var records: [(String, Int64, [IndexEntry])] = []
            for (id, _) in Self.resources {
                let record = try await test.store.read(ResourceKey("Observation", id))!
                let object = try JSONParser.parse(Array(record.content!.readableBytesView)).objectValue!
                records.append((id, record.lastUpdated, extractor.entries(for: object, type: "Observation")))
            }
            var decisive = 0, keyed = 0
            for text in Self.queries {
                let parsed = try searches.parse(type: "Observation", query: text, strict: true)
                let found = Set(try await searches.run(parsed).matches.map(\.key.id))
                let matcher = QueryMatcher(parsed.query)
                XCTAssertTrue(matcher.isLocal, text)
                let matched = Set(records.filter { matcher.matches(type: "Observation", id: $0.0, lastUpdated: $0.1, entries: $0.2) == true }.map(\.0))
                XCTAssertEqual(matched, found, text)
                // Filed under its keys, a query is still tried on every resource it matches: each
                // such resource has one of those keys.
                if let keys = matcher.keys {
                    let filed = Set(records.filter { !QueryMatcher.Entries($0.2).keys.isDisjoint(with: keys) }.map(\.0))
                    XCTAssertTrue(found.isSubset(of: filed), text)
                    keyed += 1
                }
                if !found.isEmpty && found.count < Self.resources.count { decisive += 1 }
            }
            XCTAssertGreaterThan(decisive, 20, "most queries match some of the resources, not none or all")
            XCTAssertGreaterThan(keyed, 8, "queries on codes and references are filed under keys")
            XCTAssertNil(QueryMatcher(try searches.parse(type: "Observation", query: "status:not=final", strict: true).query).keys)
            XCTAssertNil(QueryMatcher(try searches.parse(type: "Observation", query: "date=ge2024", strict: true).query).keys)
            // Chains are left to the store.
            let chain = try searches.parse(type: "Observation", query: "subject:Patient.name=x", strict: true)
            XCTAssertNil(QueryMatcher(chain.query).matches(type: "Observation", id: "o1", lastUpdated: 0, entries: records[0].2))
        }
    }
}
