import FHIRModel
import HTTPTypes
import Platform
@_spi(WritePipeline) import Store
import XCTest

/// Ids of the matches (search.mode = match) of a search.
func searchIDs(_ server: TestServer, _ query: String, headers: [String: String] = [:]) async throws -> Set<String> {
    let r = try await server.request(.get, "/fhir/" + query, headers: headers)
    XCTAssertEqual(r.status, 200, "\(query): \(r.bodyText)")
    return Set((r.json["entry"]?.arrayValue ?? [])
        .filter { $0["search"]?["mode"]?.stringValue == "match" }
        .compactMap { $0["resource"]?["id"]?.stringValue })
}

func putResource(_ server: TestServer, _ type: String, _ id: String, _ body: String) async throws {
    let json = "{\"resourceType\":\"\(type)\",\"id\":\"\(id)\"," + body.dropFirst()
    let r = try await server.request(.put, "/fhir/\(type)/\(id)", json)
    XCTAssertTrue(r.status == 201 || r.status == 200, r.bodyText)
}


/// Search semantics per parameter type and modifier: each test stores resources that must
/// and must not match, and checks the exact set returned.
final class SearchTests: XCTestCase {
    func test_string_defaultIsCaseAndAccentInsensitiveStartsWith_includingChinese() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "zw", #"{"name":[{"family":"张","given":["伟"],"text":"张伟"}]}"#)
            try await putResource(server, "Patient", "zwm", #"{"name":[{"family":"张","given":["伟明"],"text":"张伟明"}]}"#)
            try await putResource(server, "Patient", "lw", #"{"name":[{"family":"李","given":["伟"]}]}"#)
            try await putResource(server, "Patient", "eric", #"{"name":[{"family":"Éric","given":["Müller"]}]}"#)
            var r = try await searchIDs(server, "Patient?name=张伟")
            XCTAssertEqual(r, ["zw", "zwm"])
            r = try await searchIDs(server, "Patient?name:exact=张伟")
            XCTAssertEqual(r, ["zw"])
            r = try await searchIDs(server, "Patient?given=伟")
            XCTAssertEqual(r, ["zw", "zwm", "lw"])
            r = try await searchIDs(server, "Patient?given:contains=明")
            XCTAssertEqual(r, ["zwm"])
            r = try await searchIDs(server, "Patient?family=eric")
            XCTAssertEqual(r, ["eric"])
            r = try await searchIDs(server, "Patient?name=MULL")
            XCTAssertEqual(r, ["eric"])
            r = try await searchIDs(server, "Patient?family:exact=eric")
            XCTAssertEqual(r, [])
            // `phonetic` has `name`'s path and reads its rows (folded): the same matches, modifiers too.
            r = try await searchIDs(server, "Patient?phonetic=张伟")
            XCTAssertEqual(r, ["zw", "zwm"])
            r = try await searchIDs(server, "Patient?phonetic:exact=张伟")
            XCTAssertEqual(r, ["zw"])
            r = try await searchIDs(server, "Patient?phonetic=mull&_sort=phonetic")
            XCTAssertEqual(r, ["eric"])
        }
    }

    /// A comma separates values (any may match); `\,` is a comma inside a value (FHIR search §escaping).
    func test_commaMeansOr_andAnEscapedCommaIsLiteral() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "sj", #"{"name":[{"family":"Smith,Jones"}]}"#)
            try await putResource(server, "Patient", "s", #"{"name":[{"family":"Smith"}]}"#)
            try await putResource(server, "Patient", "j", #"{"name":[{"family":"Jones"}]}"#)
            try await putResource(server, "Patient", "zs", #"{"name":[{"family":"张"}]}"#)
            var r = try await searchIDs(server, "Patient?family:exact=Smith,Jones")
            XCTAssertEqual(r, ["s", "j"])
            r = try await searchIDs(server, "Patient?family:exact=Smith%5C,Jones")
            XCTAssertEqual(r, ["sj"])
            r = try await searchIDs(server, "Patient?family:exact=Smith,,")
            XCTAssertEqual(r, ["s"])
            r = try await searchIDs(server, "Patient?family:exact=%E5%BC%A0,Jones")
            XCTAssertEqual(r, ["zs", "j"])
        }
    }

    func test_string_wildcardsAndInjectionAreLiteral() async throws {
        try await TestServer.run { server, store in
            try await putResource(server, "Patient", "a", #"{"name":[{"family":"100%_safe"}]}"#)
            try await putResource(server, "Patient", "b", #"{"name":[{"family":"100x"}]}"#)
            var r = try await searchIDs(server, "Patient?family:contains=%25_")
            XCTAssertEqual(r, ["a"])
            r = try await searchIDs(server, "Patient?family:contains=_")
            XCTAssertEqual(r, ["a"])
            r = try await searchIDs(server, "Patient?family='%3B%20DROP%20TABLE%20resource%3B%20--")
            XCTAssertEqual(r, [])
            let counts = try await store.resourceCounts()
            XCTAssertEqual(counts["Patient"], 2)
        }
    }

    func test_token_systemAndCodeForms_notAndMissing() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Observation", "loinc", #"{"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8480-6"}]}}"#)
            try await putResource(server, "Observation", "local", #"{"status":"final","code":{"coding":[{"system":"urn:local","code":"8480-6"}]}}"#)
            try await putResource(server, "Observation", "nosys", #"{"status":"preliminary","code":{"coding":[{"code":"8480-6"}]}}"#)
            try await putResource(server, "Observation", "other", #"{"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8462-4"}]},"category":[{"coding":[{"code":"vital-signs"}]}]}"#)
            var r = try await searchIDs(server, "Observation?code=8480-6")
            XCTAssertEqual(r, ["loinc", "local", "nosys"])
            r = try await searchIDs(server, "Observation?code=http://loinc.org|8480-6")
            XCTAssertEqual(r, ["loinc"])
            r = try await searchIDs(server, "Observation?code=|8480-6")
            XCTAssertEqual(r, ["nosys"])
            r = try await searchIDs(server, "Observation?code=http://loinc.org|")
            XCTAssertEqual(r, ["loinc", "other"])
            r = try await searchIDs(server, "Observation?code=8480-6,8462-4&status=final")
            XCTAssertEqual(r, ["loinc", "local", "other"])
            r = try await searchIDs(server, "Observation?status:not=final")
            XCTAssertEqual(r, ["nosys"])
            r = try await searchIDs(server, "Observation?category:missing=true")
            XCTAssertEqual(r, ["loinc", "local", "nosys"])
            r = try await searchIDs(server, "Observation?category:missing=false")
            XCTAssertEqual(r, ["other"])
        }
    }

    func test_comboParameters_matchTheCodeOrAComponent_countedOnce() async throws {
        try await TestServer.run { server, _ in
            func obs(_ code: String, components: [(String, Double)], value: Double? = nil) -> String {
                let parts = components.map { #"{"code":{"coding":[{"system":"http://loinc.org","code":"\#($0.0)"}],"text":"分量"},"valueQuantity":{"value":\#($0.1)}}"# }
                return #"{"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"\#(code)"}],"text":"血压"}"#
                    + (value.map { #","valueQuantity":{"value":\#($0)}"# } ?? "")
                    + (parts.isEmpty ? "" : #","component":["# + parts.joined(separator: ",") + "]") + "}"
            }
            try await putResource(server, "Observation", "own", obs("8480-6", components: [], value: 6))
            try await putResource(server, "Observation", "part", obs("85354-9", components: [("8480-6", 7)]))
            try await putResource(server, "Observation", "both", obs("8480-6", components: [("8480-6", 2)]))
            try await putResource(server, "Observation", "other", obs("8462-4", components: [("9999-1", 1)], value: 3))
            let code = "http://loinc.org|8480-6"
            func expect(_ query: String, _ ids: Set<String>) async throws {
                let found = try await searchIDs(server, query)
                XCTAssertEqual(found, ids, query)
            }
            try await expect("Observation?combo-code=\(code)", ["own", "part", "both"])
            try await expect("Observation?code=\(code)", ["own", "both"])
            try await expect("Observation?component-code=\(code)", ["part", "both"])
            try await expect("Observation?combo-code:not=\(code)", ["other"])
            try await expect("Observation?combo-code:text=分量", ["part", "both", "other"])
            try await expect("Observation?combo-value-quantity=gt5", ["own", "part"])
            try await expect("Observation?combo-value-quantity:missing=true", [])
            try await expect("Observation?_has:Observation:has-member:combo-code=\(code)", [])
            let total = try await server.request(.get, "/fhir/Observation?combo-code=\(code)&_summary=count")
            XCTAssertEqual(total.json["total"]?.numberText, "3", "a resource matching by its code and a component counts once")
            let sorted = try await server.request(.get, "/fhir/Observation?_sort=combo-code&_elements=id")
            XCTAssertEqual(sorted.status, 200, sorted.bodyText)
        }
    }

    func test_token_textAndOfTypeModifiers() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Condition", "c1", #"{"subject":{"reference":"Patient/p"},"code":{"coding":[{"system":"http://hl7.org/fhir/sid/icd-10","code":"I10","display":"原发性高血压"}],"text":"高血压"}}"#)
            try await putResource(server, "Condition", "c2", #"{"subject":{"reference":"Patient/p"},"code":{"coding":[{"code":"E11","display":"2型糖尿病"}]}}"#)
            try await putResource(server, "Patient", "p", #"{"identifier":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:h1","value":"M-001"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"NI"}]},"value":"110101"}]}"#)
            var r = try await searchIDs(server, "Condition?code:text=高血压")
            XCTAssertEqual(r, ["c1"])
            r = try await searchIDs(server, "Condition?code:text=原发")
            XCTAssertEqual(r, ["c1"], "Coding.display counts as text")
            r = try await searchIDs(server, "Condition?code:text=2型")
            XCTAssertEqual(r, ["c2"])
            r = try await searchIDs(server, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|M-001")
            XCTAssertEqual(r, ["p"])
            r = try await searchIDs(server, "Patient?identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|NI|M-001")
            XCTAssertEqual(r, [])
        }
    }

    func test_token_onIdentifierBooleanAndFilteredContactPoint() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "p1", #"{"active":true,"identifier":[{"system":"urn:oid:2.16.156.10011.1.1","value":"110101199003071234"}],"telecom":[{"system":"phone","value":"13800138000"},{"system":"email","value":"a@b.cn"}]}"#)
            try await putResource(server, "Patient", "p2", #"{"active":false,"telecom":[{"system":"email","value":"13800138000"}]}"#)
            var r = try await searchIDs(server, "Patient?identifier=urn:oid:2.16.156.10011.1.1|110101199003071234")
            XCTAssertEqual(r, ["p1"])
            r = try await searchIDs(server, "Patient?active=false")
            XCTAssertEqual(r, ["p2"])
            r = try await searchIDs(server, "Patient?phone=13800138000")
            XCTAssertEqual(r, ["p1"], "phone only matches telecom with system=phone")
            r = try await searchIDs(server, "Patient?telecom=13800138000")
            XCTAssertEqual(r, ["p1", "p2"])
        }
    }

    func test_date_prefixesAndPrecision() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "d0301", #"{"birthDate":"2024-03-01"}"#)
            try await putResource(server, "Patient", "d0331", #"{"birthDate":"2024-03-31"}"#)
            try await putResource(server, "Patient", "d0401", #"{"birthDate":"2024-04-01"}"#)
            try await putResource(server, "Patient", "m03", #"{"birthDate":"2024-03"}"#)
            try await putResource(server, "Patient", "y2024", #"{"birthDate":"2024"}"#)
            try await putResource(server, "Patient", "d0229", #"{"birthDate":"2024-02-29"}"#)
            var r = try await searchIDs(server, "Patient?birthdate=2024-03")
            XCTAssertEqual(r, ["d0301", "d0331", "m03"], "eq: the value's range lies within March")
            r = try await searchIDs(server, "Patient?birthdate=2024-03-31")
            XCTAssertEqual(r, ["d0331"])
            r = try await searchIDs(server, "Patient?birthdate=gt2024-03-31")
            XCTAssertEqual(r, ["d0401", "y2024"], "the year 2024 extends past March 31")
            r = try await searchIDs(server, "Patient?birthdate=lt2024-03-01")
            XCTAssertEqual(r, ["d0229", "y2024"])
            r = try await searchIDs(server, "Patient?birthdate=ge2024-03-31")
            XCTAssertEqual(r, ["d0331", "d0401", "y2024"])
            r = try await searchIDs(server, "Patient?birthdate=le2024-03-01")
            XCTAssertEqual(r, ["d0301", "d0229", "y2024"])
            r = try await searchIDs(server, "Patient?birthdate=sa2024-03")
            XCTAssertEqual(r, ["d0401"])
            r = try await searchIDs(server, "Patient?birthdate=eb2024-03")
            XCTAssertEqual(r, ["d0229"])
            r = try await searchIDs(server, "Patient?birthdate=ge2024-03-01&birthdate=le2024-03-31")
            XCTAssertTrue(r.isSuperset(of: ["d0301", "d0331", "m03"]))
            XCTAssertFalse(r.contains("d0401") || r.contains("d0229"))
            let bad = try await server.request(.get, "/fhir/Patient?birthdate=2024-13")
            XCTAssertEqual(bad.status, 400)
            let badPrefix = try await server.request(.get, "/fhir/Patient?birthdate=xx2024")
            XCTAssertEqual(badPrefix.status, 400)
        }
    }

    func test_date_onPeriodsAndDateTimesWithZones() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Encounter", "e1", #"{"status":"finished","class":{"code":"AMB"},"period":{"start":"2024-03-05T08:00:00+08:00","end":"2024-03-05T09:00:00+08:00"}}"#)
            try await putResource(server, "Encounter", "open", #"{"status":"in-progress","class":{"code":"IMP"},"period":{"start":"2024-03-01"}}"#)
            var r = try await searchIDs(server, "Encounter?date=2024-03-05")
            XCTAssertEqual(r, ["e1"])
            r = try await searchIDs(server, "Encounter?date=gt2025-01-01")
            XCTAssertEqual(r, ["open"], "an open period extends forever")
            r = try await searchIDs(server, "Encounter?date=lt2024-03-05T00:30:00Z")
            XCTAssertEqual(r, ["e1", "open"], "08:00+08:00 is 00:00Z")
        }
    }

    func test_reference_forms_typeModifier_andUnknownChainIsRefused() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Observation", "o1", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p1"}}"#)
            try await putResource(server, "Observation", "o2", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Group/p1"}}"#)
            try await putResource(server, "Observation", "o3", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p2"}}"#)
            var r = try await searchIDs(server, "Observation?subject=Patient/p1")
            XCTAssertEqual(r, ["o1"])
            r = try await searchIDs(server, "Observation?subject=p1")
            XCTAssertEqual(r, ["o1", "o2"])
            r = try await searchIDs(server, "Observation?subject:Patient=p1")
            XCTAssertEqual(r, ["o1"])
            r = try await searchIDs(server, "Observation?patient=p1")
            XCTAssertEqual(r, ["o1"], "patient only follows references to Patient")
            r = try await searchIDs(server, "Observation?subject=http://example.org/fhir/Patient/p2")
            XCTAssertEqual(r, ["o3"])
            let unknownChain = try await server.request(.get, "/fhir/Observation?subject.shoe-size=x")
            XCTAssertEqual(unknownChain.status, 400)
        }
    }

    func test_reference_identifierModifier_andTimingDates() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Observation", "by-id", #"{"status":"final","code":{"text":"x"},"subject":{"identifier":{"system":"urn:oid:2.16.156.10011.1.1","value":"110101199003071234"}}}"#)
            try await putResource(server, "Observation", "by-ref", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p"}}"#)
            var r = try await searchIDs(server, "Observation?subject:identifier=urn:oid:2.16.156.10011.1.1|110101199003071234")
            XCTAssertEqual(r, ["by-id"])
            try await putResource(server, "Observation", "timed", #"{"status":"final","code":{"text":"x"},"effectiveTiming":{"event":["2024-05-01T08:00:00Z","2024-05-02T08:00:00Z"]}}"#)
            r = try await searchIDs(server, "Observation?date=2024-05-02")
            XCTAssertEqual(r, ["timed"])
        }
    }

    func test_quantityAndNumber_prefixesUnitsAndPrecision() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Observation", "q54", #"{"status":"final","code":{"text":"x"},"valueQuantity":{"value":5.4,"system":"http://unitsofmeasure.org","code":"mg"}}"#)
            try await putResource(server, "Observation", "q546", #"{"status":"final","code":{"text":"x"},"valueQuantity":{"value":5.46,"system":"http://unitsofmeasure.org","code":"mg"}}"#)
            try await putResource(server, "Observation", "q6g", #"{"status":"final","code":{"text":"x"},"valueQuantity":{"value":6,"system":"http://unitsofmeasure.org","code":"g"}}"#)
            var r = try await searchIDs(server, "Observation?value-quantity=5.4")
            XCTAssertEqual(r, ["q54"], "5.4 means [5.35, 5.45)")
            r = try await searchIDs(server, "Observation?value-quantity=gt5.4|http://unitsofmeasure.org|mg")
            XCTAssertEqual(r, ["q546"])
            r = try await searchIDs(server, "Observation?value-quantity=ge5||mg")
            XCTAssertEqual(r, ["q54", "q546"])
            r = try await searchIDs(server, "Observation?value-quantity=lt10")
            XCTAssertEqual(r, ["q54", "q546", "q6g"])
            let bad = try await server.request(.get, "/fhir/Observation?value-quantity=abc")
            XCTAssertEqual(bad.status, 400)
        }
    }

    func test_uri_exactAndBelow() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "ValueSet", "v1", #"{"status":"active","url":"http://hl7.org/fhir/ValueSet/gender"}"#)
            try await putResource(server, "ValueSet", "v2", #"{"status":"active","url":"http://example.cn/fhir/ValueSet/x"}"#)
            var r = try await searchIDs(server, "ValueSet?url=http://hl7.org/fhir/ValueSet/gender")
            XCTAssertEqual(r, ["v1"])
            r = try await searchIDs(server, "ValueSet?url:below=http://hl7.org/fhir")
            XCTAssertEqual(r, ["v1"])
        }
    }

    func test_commonParameters_idLastUpdatedTagProfile() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "a", #"{"meta":{"tag":[{"system":"urn:t","code":"vip"}],"profile":["http://example.cn/p"]}}"#)
            let stamp = try await server.request(.get, "/fhir/Patient/a").json["meta"]!["lastUpdated"]!.stringValue!
            try await Task.sleep(for: .milliseconds(5))
            try await putResource(server, "Patient", "b", #"{"gender":"male"}"#)
            var r = try await searchIDs(server, "Patient?_id=a,b")
            XCTAssertEqual(r, ["a", "b"])
            r = try await searchIDs(server, "Patient?_tag=urn:t|vip")
            XCTAssertEqual(r, ["a"])
            r = try await searchIDs(server, "Patient?_profile=http://example.cn/p")
            XCTAssertEqual(r, ["a"])
            r = try await searchIDs(server, "Patient?_lastUpdated=gt\(stamp)")
            XCTAssertEqual(r, ["b"])
        }
    }

    func test_unknownParameter_lenientWarnsStrictRefuses() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "a", #"{"gender":"male"}"#)
            let lenient = try await server.request(.get, "/fhir/Patient?shoe-size=42")
            XCTAssertEqual(lenient.status, 200)
            let outcome = lenient.json["entry"]?.arrayValue?.first { $0["search"]?["mode"]?.stringValue == "outcome" }
            XCTAssertEqual(outcome?["resource"]?["issue"]?.arrayValue?.first?["severity"]?.stringValue, "warning")
            let strict = try await server.request(.get, "/fhir/Patient?shoe-size=42", headers: ["Prefer": "handling=strict"])
            XCTAssertEqual(strict.status, 400)
        }
    }

    func test_sort_multipleKeysAndDescending() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "a", #"{"name":[{"family":"Wang"}],"birthDate":"1990-01-01"}"#)
            try await putResource(server, "Patient", "b", #"{"name":[{"family":"Li"}],"birthDate":"1980-01-01"}"#)
            try await putResource(server, "Patient", "c", #"{"name":[{"family":"Li"}],"birthDate":"2000-01-01"}"#)
            try await putResource(server, "Patient", "d", #"{"gender":"male"}"#)
            func order(_ q: String) async throws -> [String] {
                let r = try await server.request(.get, "/fhir/Patient?" + q)
                return (r.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue }
            }
            var o = try await order("_sort=birthdate")
            XCTAssertEqual(o, ["b", "a", "c", "d"], "missing values sort last")
            o = try await order("_sort=-birthdate")
            XCTAssertEqual(o, ["c", "a", "b", "d"])
            o = try await order("_sort=family,-birthdate")
            XCTAssertEqual(o, ["c", "b", "a", "d"])
            let bad = try await server.request(.get, "/fhir/Patient?_sort=shoe-size")
            XCTAssertEqual(bad.status, 400)
        }
    }

    func test_paging_1050Results_withWritesBetweenPages_eachResourceExactlyOnce() async throws {
        try await TestServer.run { server, store in
            let pipeline = IngestPipelineForTests()
            try await pipeline.load(store, count: 1050)
            var seen: [String] = []
            var next: String? = "/fhir/Patient?gender=female&_count=100"
            var pages = 0
            while let url = next {
                let page = try await server.request(.get, url)
                XCTAssertEqual(page.status, 200, page.bodyText)
                seen += (page.json["entry"]?.arrayValue ?? []).compactMap { $0["resource"]?["id"]?.stringValue }
                // Writes between pages: new matches, deletions of resources already seen, updates.
                _ = try await server.request(.post, "/fhir/Patient", #"{"resourceType":"Patient","gender":"female"}"#)
                if let first = seen.first { _ = try await server.request(.delete, "/fhir/Patient/\(first)") }
                if let last = seen.last {
                    _ = try await server.request(.put, "/fhir/Patient/\(last)", "{\"resourceType\":\"Patient\",\"id\":\"\(last)\",\"gender\":\"female\",\"active\":true}")
                }
                next = page.json["link"]?.arrayValue?.first { $0["relation"]?.stringValue == "next" }?["url"]?.stringValue
                    .map { String($0[$0.range(of: "/fhir/")!.lowerBound...]) }
                pages += 1
            }
            XCTAssertEqual(pages, 11)
            XCTAssertEqual(seen.count, 1050)
            XCTAssertEqual(Set(seen).count, 1050)
        }
    }

    func test_totalAndSummaryCount() async throws {
        try await TestServer.run { server, store in
            try await IngestPipelineForTests().load(store, count: 30)
            let count = try await server.request(.get, "/fhir/Patient?gender=female&_summary=count")
            XCTAssertEqual(count.json["total"]?.numberText, "30")
            XCTAssertNil(count.json["entry"]?.arrayValue?.first)
            let accurate = try await server.request(.get, "/fhir/Patient?_count=5&_total=accurate")
            XCTAssertEqual(accurate.json["total"]?.numberText, "30")
            XCTAssertEqual(accurate.json["entry"]?.arrayValue?.count, 5)
            let none = try await server.request(.get, "/fhir/Patient?_total=none")
            XCTAssertNil(none.json["total"])
        }
    }

    func test_summaryCount_countsResourcesNotIndexRows() async throws {
        try await TestServer.run { server, _ in
            // Two systems carry the same MRN for one patient: a search by value alone matches it once.
            try await putResource(server, "Patient", "two", #"{"identifier":[{"system":"urn:a","value":"123"},{"system":"urn:b","value":"123"}]}"#)
            try await putResource(server, "Patient", "one", #"{"identifier":[{"system":"urn:a","value":"123"}]}"#)
            try await putResource(server, "Observation", "o1", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/two"}}"#)
            try await putResource(server, "Observation", "o2", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/two"},"performer":[{"reference":"Patient/two"}]}"#)
            func total(_ query: String) async throws -> String? {
                let r = try await server.request(.get, "/fhir/" + query + "&_summary=count")
                XCTAssertEqual(r.status, 200, r.bodyText)
                return r.json["total"]?.numberText
            }
            var n = try await total("Patient?identifier=123")
            XCTAssertEqual(n, "2")
            n = try await total("Patient?identifier=urn:a|123")
            XCTAssertEqual(n, "2")
            n = try await total("Patient?identifier=urn:b|123")
            XCTAssertEqual(n, "1")
            n = try await total("Observation?subject=Patient/two")
            XCTAssertEqual(n, "2")
            n = try await total("Observation?subject=two")
            XCTAssertEqual(n, "2")
            n = try await total("Observation?status=final")
            XCTAssertEqual(n, "2")
            // After an update drops a match, the count follows.
            try await putResource(server, "Observation", "o1", #"{"status":"amended","code":{"text":"x"},"subject":{"reference":"Patient/two"}}"#)
            n = try await total("Observation?status=final")
            XCTAssertEqual(n, "1")
        }
    }

    func test_includeRevincludeAndIterate() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Organization", "org", #"{"name":"医院"}"#)
            try await putResource(server, "Practitioner", "dr", #"{"name":[{"family":"李"}]}"#)
            try await putResource(server, "Patient", "p", #"{"managingOrganization":{"reference":"Organization/org"}}"#)
            try await putResource(server, "Encounter", "e", #"{"status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/p"},"participant":[{"individual":{"reference":"Practitioner/dr"}}]}"#)
            try await putResource(server, "Observation", "o", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Patient/p"},"encounter":{"reference":"Encounter/e"}}"#)
            func modes(_ q: String) async throws -> [String: String] {
                let r = try await server.request(.get, "/fhir/" + q)
                XCTAssertEqual(r.status, 200, r.bodyText)
                var out: [String: String] = [:]
                for e in r.json["entry"]?.arrayValue ?? [] {
                    if let t = e["resource"]?["resourceType"]?.stringValue, let id = e["resource"]?["id"]?.stringValue {
                        out["\(t)/\(id)"] = e["search"]?["mode"]?.stringValue
                    }
                }
                return out
            }
            var m = try await modes("Encounter?_include=Encounter:subject&_include=Encounter:participant")
            XCTAssertEqual(m, ["Encounter/e": "match", "Patient/p": "include", "Practitioner/dr": "include"])
            m = try await modes("Encounter?_include=Encounter:subject:Practitioner")
            XCTAssertEqual(m, ["Encounter/e": "match"])
            m = try await modes("Patient?_revinclude=Observation:subject")
            XCTAssertEqual(m, ["Patient/p": "match", "Observation/o": "include"])
            m = try await modes("Observation?_include=Observation:encounter&_include:iterate=Encounter:subject&_include:iterate=Patient:organization")
            XCTAssertEqual(m, ["Observation/o": "match", "Encounter/e": "include", "Patient/p": "include", "Organization/org": "include"])
            m = try await modes("Observation?_include=*")
            XCTAssertEqual(m, ["Observation/o": "match", "Encounter/e": "include", "Patient/p": "include"])
        }
    }

    func test_chaining_oneAndTwoHops_andReverseChainingHas() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Organization", "h1", #"{"name":"第一人民医院"}"#)
            try await putResource(server, "Organization", "h2", #"{"name":"中医院"}"#)
            try await putResource(server, "Patient", "zw", #"{"name":[{"family":"张","given":["伟"]}],"managingOrganization":{"reference":"Organization/h1"}}"#)
            try await putResource(server, "Patient", "lw", #"{"name":[{"family":"李","given":["伟"]}],"managingOrganization":{"reference":"Organization/h2"}}"#)
            try await putResource(server, "Group", "g", #"{"type":"person","actual":true,"name":"张家"}"#)
            try await putResource(server, "Observation", "o-zw", #"{"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"1234-5"}]},"subject":{"reference":"Patient/zw"}}"#)
            try await putResource(server, "Observation", "o-lw", #"{"status":"final","code":{"coding":[{"system":"http://loinc.org","code":"9999-9"}]},"subject":{"reference":"Patient/lw"}}"#)
            try await putResource(server, "Observation", "o-g", #"{"status":"final","code":{"text":"x"},"subject":{"reference":"Group/g"}}"#)
            var r = try await searchIDs(server, "Observation?subject:Patient.name=张")
            XCTAssertEqual(r, ["o-zw"])
            r = try await searchIDs(server, "Observation?patient.family=李")
            XCTAssertEqual(r, ["o-lw"])
            r = try await searchIDs(server, "Observation?subject.name=张")
            XCTAssertEqual(r, ["o-zw"], "without a type, every target type with a 'name' parameter (R4 Group has none)")
            r = try await searchIDs(server, "Observation?subject:Patient.organization.name=中医")
            XCTAssertEqual(r, ["o-lw"])
            r = try await searchIDs(server, "Patient?_has:Observation:patient:code=1234-5")
            XCTAssertEqual(r, ["zw"])
            r = try await searchIDs(server, "Organization?_has:Patient:organization:_has:Observation:patient:code=http://loinc.org|9999-9")
            XCTAssertEqual(r, ["h2"])
            let bad = try await server.request(.get, "/fhir/Observation?code.name=x")
            XCTAssertEqual(bad.status, 400)
        }
    }

    /// Malformed and unbounded chains are 400s with an OperationOutcome, however they arrive
    /// (a search, a conditional header, a transaction's conditional URL); the server keeps serving.
    func test_malformedOrUnboundedChains_andHugeOffsets_areRefused() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "p", #"{"name":[{"family":"王"}]}"#)
            let longName = String(repeating: "subject:Patient.", count: 20) + "name"
            for query in ["Patient?.x=1", "Observation?subject.=1", "Observation?subject..name=1", "Patient?_has:Observation:subject:.x=1",
                          "Observation?subject:Patient.organization:Organization.partof:Organization.partof.name=x",
                          "Observation?subject.organization.name=x",
                          "Patient?_has:Observation:subject:_has:Observation:subject:_has:Observation:subject:_has:Observation:subject:code=x",
                          "Observation?" + longName + "=x", "Patient?_offset=9223372036854775807"] {
                let r = try await server.request(.get, "/fhir/" + query)
                XCTAssertEqual(r.status, 400, "\(query): \(r.bodyText)")
                XCTAssertEqual(r.json["resourceType"]?.stringValue, "OperationOutcome", query)
            }
            let history = try await server.request(.get, "/fhir/Patient/_history?_offset=9223372036854775807")
            XCTAssertEqual(history.status, 400, history.bodyText)
            let conditional = try await server.request(.post, "/fhir/Patient", #"{"resourceType":"Patient"}"#, headers: ["If-None-Exist": ".x=1"])
            XCTAssertEqual(conditional.status, 400, conditional.bodyText)
            let bundle = #"{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"PUT","url":"Patient?.x=1"},"resource":{"resourceType":"Patient"}},"#
                + #"{"request":{"method":"POST","url":"Observation"},"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient?subject.=1"}}}]}"#
            let transaction = try await server.request(.post, "/fhir", bundle)
            XCTAssertEqual(transaction.status, 400, transaction.bodyText)
            // Still serving, and nothing was stored.
            let ids = try await searchIDs(server, "Patient?family=王")
            XCTAssertEqual(ids, ["p"])
            let all = try await server.request(.get, "/fhir/Patient?_summary=count")
            XCTAssertEqual(all.json["total"]?.numberText, "1")
        }
    }

    func test_postSearch_formEncoded_andElements() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "a", #"{"gender":"female","birthDate":"1990-01-01","name":[{"family":"王"}]}"#)
            let r = try await server.request(.post, "/fhir/Patient/_search", "gender=female&_elements=birthDate",
                                             headers: ["Content-Type": "application/x-www-form-urlencoded"])
            XCTAssertEqual(r.status, 200, r.bodyText)
            let resource = r.json["entry"]?.arrayValue?.first?["resource"]
            XCTAssertEqual(resource?["birthDate"]?.stringValue, "1990-01-01")
            XCTAssertNil(resource?["name"])
            XCTAssertEqual(resource?["meta"]?["tag"]?.arrayValue?.last?["code"]?.stringValue, "SUBSETTED")
        }
    }

    func test_summaryModes_onSearchAndRead() async throws {
        try await TestServer.run { server, _ in
            try await putResource(server, "Patient", "s", #"{"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">王芳</div>"},"gender":"female","birthDate":"1990-01-01","name":[{"family":"王"}],"maritalStatus":{"text":"已婚"},"contact":[{"name":{"family":"李"}}],"link":[{"other":{"reference":"Patient/x"},"type":"seealso"}]}"#)
            try await putResource(server, "Observation", "o", #"{"status":"final","category":[{"text":"lab"}],"code":{"text":"血糖"},"subject":{"reference":"Patient/s"},"valueQuantity":{"value":5.1},"note":[{"text":"空腹"}]}"#)
            func only(_ query: String) async throws -> JSON? {
                let r = try await server.request(.get, "/fhir/" + query)
                XCTAssertEqual(r.status, 200, r.bodyText)
                return r.json["entry"]?.arrayValue?.first?["resource"] ?? (r.json["resourceType"] != nil ? r.json : nil)
            }
            // true: the elements marked Σ (gender, birthDate, name, link with its Σ children), not text/maritalStatus/contact.
            var p = try await only("Patient?_id=s&_summary=true")
            XCTAssertEqual(p?["gender"]?.stringValue, "female")
            XCTAssertNotNil(p?["name"])
            XCTAssertEqual(p?["link"]?.arrayValue?.first?["type"]?.stringValue, "seealso")
            XCTAssertNil(p?["text"]); XCTAssertNil(p?["maritalStatus"]); XCTAssertNil(p?["contact"])
            XCTAssertEqual(p?["meta"]?["tag"]?.arrayValue?.last?["code"]?.stringValue, "SUBSETTED")
            XCTAssertNotNil(p?["meta"]?["versionId"])
            var o = try await only("Observation?_id=o&_summary=true")
            XCTAssertNotNil(o?["valueQuantity"]); XCTAssertNotNil(o?["code"])
            XCTAssertNil(o?["note"]); XCTAssertNil(o?["category"])
            // text: text, id, meta and mandatory top-level elements (Observation.status, code).
            o = try await only("Observation?_id=o&_summary=text")
            XCTAssertNotNil(o?["status"]); XCTAssertNotNil(o?["code"])
            XCTAssertNil(o?["valueQuantity"]); XCTAssertNil(o?["subject"])
            // data: everything but the narrative.
            p = try await only("Patient/s?_summary=data")
            XCTAssertNil(p?["text"]); XCTAssertNotNil(p?["maritalStatus"]); XCTAssertNotNil(p?["contact"])
            // false: the resource as stored, not tagged.
            p = try await only("Patient/s?_summary=false")
            XCTAssertNotNil(p?["text"]); XCTAssertNil(p?["meta"]?["tag"])
            // _elements keeps mandatory elements too.
            o = try await only("Observation?_id=o&_elements=note")
            XCTAssertNotNil(o?["note"]); XCTAssertNotNil(o?["status"]); XCTAssertNil(o?["subject"])
            let bad = try await server.request(.get, "/fhir/Patient?_summary=maybe")
            XCTAssertEqual(bad.status, 400)
        }
    }
}

/// Loads many small resources straight through the store (faster than HTTP for setup).
struct IngestPipelineForTests {
    func load(_ store: any ResourceStore, count: Int) async throws {
        let pipeline = Platform.IngestPipeline()
        var writes: [PreparedWrite] = []
        for i in 0..<count {
            let json = try JSONParser.parse("{\"resourceType\":\"Patient\",\"gender\":\"female\",\"name\":[{\"family\":\"F\(i)\"}]}")
            writes.append(try pipeline.prepare(json, type: "Patient", id: "bulk-\(i)", method: "PUT"))
        }
        _ = try await store.commit(WriteUnit(writes: writes))
    }
}
