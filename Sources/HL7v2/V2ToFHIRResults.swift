import FHIRModel
import Foundation

/// Results: ORU^R01 → one DiagnosticReport per OBR with its Observations (OBX, by value type) and
/// Specimens (SPM, or OBR-15).
extension V2ToFHIR {
    // MARK: results (OBR, OBX, SPM)

    func resultEntries(_ m: HL7Message, patient: String) throws(HL7Problem) -> [JSON] {
        var entries: [JSON] = []
        var obrSeq = 0, obxSeq = 0, spmSeq = 0
        var report: (fields: [(String, JSON?)], key: String, url: String, results: [JSON], specimens: [JSON], statuses: [String])?
        func close() {
            guard var r = report else { return }
            if !r.results.isEmpty { r.fields.append(("result", .array(r.results))) }
            if !r.specimens.isEmpty { r.fields.append(("specimen", .array(r.specimens))) }
            if !r.fields.contains(where: { $0.0 == "status" }) {
                let status = r.statuses.contains("preliminary") ? "preliminary" : (r.statuses.contains("amended") ? "amended" : "final")
                r.fields.insert(("status", .string(status)), at: 2)
            }
            entries.append(entry(r.url, obj(r.fields), method: "PUT", url: "DiagnosticReport?identifier=\(query(orderSystem))|\(query(r.key))"))
            report = nil
        }
        for segment in m.segments {
            switch segment.id {
            case "OBR":
                close()
                obrSeq += 1
                guard let key = segment[3].value ?? segment[2].value else {
                    throw HL7Problem(.error, "101", "OBR-3 (filler order number) or OBR-2 (placer order number) is required", at: ("OBR", obrSeq, 3))
                }
                guard let code = codeableConcept(segment[4]) else {
                    throw HL7Problem(.error, "101", "OBR-4 (universal service identifier) is required", at: ("OBR", obrSeq, 4))
                }
                var fields: [(String, JSON?)] = [("resourceType", "DiagnosticReport"),
                                                 ("identifier", .array([obj(("system", .string(orderSystem)), ("value", .string(key)))]))]
                if let s = segment[25].value {
                    guard let status = HL7Tables.reportStatus[s] else {
                        throw HL7Problem(.error, "103", "OBR-25 '\(s)' is not an HL7 table 0123 result status", at: ("OBR", obrSeq, 25))
                    }
                    fields.append(("status", .string(status)))
                }
                fields += [("code", code), ("subject", obj(("reference", .string(patient))))]
                if let t = segment[7].value { fields.append(("effectiveDateTime", .string(try dateTime(t, at: ("OBR", obrSeq, 7))))) }
                if let t = segment[22].value { fields.append(("issued", .string(try instant(t, at: ("OBR", obrSeq, 22))))) }
                fields.append(("performer", .array([obj(("reference", .string("Organization/" + facility)))])))
                report = (fields, key, "urn:uuid:" + RandomUUID.make(), [], [], [])
                if let source = segment[15].component(1) {
                    let specimen = specimenEntry(id: key + "-" + source, type: obj(("text", .string(source))), collected: nil, patient: patient)
                    entries.append(specimen.entry)
                    report?.specimens.append(obj(("reference", .string(specimen.url))))
                }
            case "OBX":
                obxSeq += 1
                guard report != nil else { throw HL7Problem(.error, "100", "OBX before any OBR", at: ("OBX", obxSeq, 0)) }
                let (observation, status) = try observationEntry(segment, seq: obxSeq, reportKey: report!.key, patient: patient,
                                                                 effective: report!.fields.first { $0.0 == "effectiveDateTime" }?.1)
                entries.append(observation.entry)
                report?.results.append(obj(("reference", .string(observation.url))))
                report?.statuses.append(status)
            case "SPM":
                spmSeq += 1
                guard report != nil else { continue }
                let id = segment[2].component(1) ?? (report!.key + "-spm-\(spmSeq)")
                let collected = try segment[17].component(1).map { v throws(HL7Problem) in try dateTime(v, at: ("SPM", spmSeq, 17)) }
                let specimen = specimenEntry(id: id, type: codeableConcept(segment[4]), collected: collected, patient: patient)
                entries.append(specimen.entry)
                report?.specimens.append(obj(("reference", .string(specimen.url))))
            default:
                continue
            }
        }
        close()
        guard obrSeq > 0 else { throw HL7Problem(.error, "100", "ORU^R01 needs at least one OBR segment", at: ("OBR", 1, 0)) }
        return entries
    }

    func specimenEntry(id: String, type: JSON?, collected: String?, patient: String) -> (entry: JSON, url: String) {
        let url = "urn:uuid:" + RandomUUID.make()
        let specimen = obj(("resourceType", "Specimen"), ("identifier", .array([obj(("system", .string(specimenSystem)), ("value", .string(id)))])),
                           ("type", type), ("subject", obj(("reference", .string(patient)))),
                           ("collection", collected.map { obj(("collectedDateTime", .string($0))) }))
        return (entry(url, specimen, method: "PUT", url: "Specimen?identifier=\(query(specimenSystem))|\(query(id))"), url)
    }

    func observationEntry(_ obx: HL7Segment, seq: Int, reportKey: String, patient: String,
                          effective: JSON?) throws(HL7Problem) -> ((entry: JSON, url: String), String) {
        guard let code = codeableConcept(obx[3]) else {
            throw HL7Problem(.error, "101", "OBX-3 (observation identifier) is required", at: ("OBX", seq, 3))
        }
        guard let s = obx[11].value else { throw HL7Problem(.error, "101", "OBX-11 (result status) is required", at: ("OBX", seq, 11)) }
        guard let status = HL7Tables.observationStatus[s] else {
            throw HL7Problem(.error, "103", "OBX-11 '\(s)' is not an HL7 table 0085 result status", at: ("OBX", seq, 11))
        }
        let setID = obx[1].value ?? String(seq)
        let key = reportKey + "-" + setID + (obx[4].value.map { "-" + $0 } ?? "")
        var fields: [(String, JSON?)] = [("resourceType", "Observation"),
                                         ("identifier", .array([obj(("system", .string(resultSystem)), ("value", .string(key)))])),
                                         ("status", .string(status)), ("code", code), ("subject", obj(("reference", .string(patient)))),
                                         ("effectiveDateTime", effective)]
        if let t = obx[14].value { fields[5] = ("effectiveDateTime", .string(try dateTime(t, at: ("OBX", seq, 14)))) }
        let valueType = obx[2].value ?? (obx[5].isEmpty ? "" : "ST")
        let unit = obx[6]
        if !obx[5].isEmpty {
            switch valueType {
            case "NM":
                guard let text = obx[5].value, let number = Self.decimal(text) else {
                    throw HL7Problem(.error, "102", "OBX-5 '\(obx[5].value ?? "")' is not a number (OBX-2 is NM)", at: ("OBX", seq, 5))
                }
                fields.append(("valueQuantity", quantity(number, unit)))
            case "SN":
                // Structured numeric: comparator^num1^separator/suffix^num2.
                let comparator = obx[5].component(1)
                guard let n1 = obx[5].component(2).flatMap(Self.decimal) else {
                    throw HL7Problem(.error, "102", "OBX-5 is not a structured numeric (comparator^number^separator^number)", at: ("OBX", seq, 5))
                }
                if let separator = obx[5].component(3), let n2 = obx[5].component(4).flatMap(Self.decimal) {
                    if separator == "-" {
                        fields.append(("valueRange", obj(("low", quantity(n1, unit)), ("high", quantity(n2, unit)))))
                    } else {
                        fields.append(("valueRatio", obj(("numerator", obj(("value", .number(n1)))), ("denominator", obj(("value", .number(n2)))))))
                    }
                } else {
                    var q = quantity(n1, unit).objectValue ?? JSONObject()
                    if let comparator, ["<", "<=", ">", ">="].contains(comparator) { q.set("comparator", .string(comparator), insertingAt: 1) }
                    fields.append(("valueQuantity", .object(q)))
                }
            case "ST", "TX", "FT":
                let text = obx[5].repetitions.indices.compactMap { obx[5].component(1, repetition: $0) }.joined(separator: "\n")
                fields.append(("valueString", .string(text)))
            case "CE", "CWE", "CNE":
                fields.append(("valueCodeableConcept", codeableConcept(obx[5])))
            case "DT", "TS", "DTM":
                fields.append(("valueDateTime", .string(try dateTime(obx[5].value ?? "", at: ("OBX", seq, 5)))))
            default:
                throw HL7Problem(.error, "102", "OBX-2 value type '\(valueType)' is not supported (NM, SN, ST, TX, FT, CE, CWE, CNE, DT, TS)", at: ("OBX", seq, 2))
            }
        }
        if let flag = obx[8].value {
            let display = HL7Tables.interpretationDisplay
            fields.append(("interpretation", .array([obj(("coding", .array([obj(("system", "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"),
                                                                                   ("code", .string(flag)), ("display", display[flag].map(JSON.string)))])))])))
        }
        if let range = obx[7].value { fields.append(("referenceRange", .array([referenceRange(range, unit)]))) }
        if let performer = obx[23].component(1) {
            fields.append(("performer", .array([obj(("display", .string(performer)))])))
        }
        let url = "urn:uuid:" + RandomUUID.make()
        return ((entry(url, obj(fields), method: "PUT", url: "Observation?identifier=\(query(resultSystem))|\(query(key))"), url), status)
    }

    func quantity(_ value: String, _ unit: HL7Field) -> JSON {
        let code = unit.component(1)
        let ucum = unit.component(3).map { $0.uppercased() == "UCUM" || $0 == "http://unitsofmeasure.org" } ?? false
        return obj(("value", .number(value)), ("unit", (unit.component(2) ?? code).map(JSON.string)),
                   ("system", ucum ? "http://unitsofmeasure.org" : nil), ("code", ucum ? code.map(JSON.string) : nil))
    }

    /// `3.9-6.1`, `<5`, `>=10`, or free text.
    func referenceRange(_ text: String, _ unit: HL7Field) -> JSON {
        let parts = text.split(separator: "-", maxSplits: 1).map { String($0.trimmingSpaces()) }
        if parts.count == 2, let low = Self.decimal(parts[0]), let high = Self.decimal(parts[1]) {
            return obj(("low", quantity(low, unit)), ("high", quantity(high, unit)), ("text", .string(text)))
        }
        if text.hasPrefix("<"), let high = Self.decimal(String(text.drop { $0 == "<" || $0 == "=" })) {
            return obj(("high", quantity(high, unit)), ("text", .string(text)))
        }
        if text.hasPrefix(">"), let low = Self.decimal(String(text.drop { $0 == ">" || $0 == "=" })) {
            return obj(("low", quantity(low, unit)), ("text", .string(text)))
        }
        return obj(("text", .string(text)))
    }
}
