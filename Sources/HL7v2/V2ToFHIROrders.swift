import FHIRModel
import Foundation

/// Orders, appointments, documents and merges: ORM^O01 / OML^O21 → ServiceRequest, SIU^S12–S15 and
/// S26 → Appointment, MDM^T02 → DocumentReference + Binary, and ADT^A40 (merge).
extension V2ToFHIR {
    public var placerSystem: String { "urn:huitong:order-placer:" + facility }
    public var appointmentSystem: String { "urn:huitong:appointment:" + facility }
    public var documentSystem: String { "urn:huitong:document:" + facility }

    // MARK: ORM^O01, OML^O21

    func orderEntries(_ m: HL7Message, patient: String) throws(HL7Problem) -> [JSON] {
        var entries: [JSON] = []
        let orcs = m.all("ORC"), obrs = m.all("OBR")
        guard !orcs.isEmpty || !obrs.isEmpty else { throw HL7Problem(.error, "100", "An order needs ORC and OBR segments", at: ("ORC", 1, 0)) }
        for (i, obr) in obrs.enumerated() {
            let orc = i < orcs.count ? orcs[i] : (orcs.last ?? HL7Segment("ORC"))
            guard let placer = orc[2].value ?? obr[2].value else {
                throw HL7Problem(.error, "101", "ORC-2 or OBR-2 (placer order number) is required", at: ("ORC", min(i, max(orcs.count - 1, 0)) + 1, 2))
            }
            guard let code = codeableConcept(obr[4]) else {
                throw HL7Problem(.error, "101", "OBR-4 (universal service identifier) is required", at: ("OBR", i + 1, 4))
            }
            let control = orc[1].value ?? "NW"
            let status: String
            switch control {
            case "NW", "XO", "RL", "SN", "OK": status = "active"
            case "CA", "DC", "OC", "CR", "DR": status = "revoked"
            case "HD", "OH": status = "on-hold"
            case "SC":
                status = HL7Tables.orderStatus[orc[5].value ?? ""] ?? "active"
            default:
                throw HL7Problem(.error, "103", "ORC-1 '\(control)' is not a supported order control (NW, XO, CA, DC, HD, SC, ...)", at: ("ORC", i + 1, 1))
            }
            var identifiers = [obj(("type", obj(("coding", .array([obj(("system", "http://terminology.hl7.org/CodeSystem/v2-0203"), ("code", "PLAC"))])))),
                                   ("system", .string(placerSystem)), ("value", .string(placer)))]
            if let filler = orc[3].value ?? obr[3].value {
                identifiers.append(obj(("type", obj(("coding", .array([obj(("system", "http://terminology.hl7.org/CodeSystem/v2-0203"), ("code", "FILL"))])))),
                                       ("system", .string(orderSystem)), ("value", .string(filler))))
            }
            var fields: [(String, JSON?)] = [("resourceType", "ServiceRequest"), ("identifier", .array(identifiers)),
                                             ("status", .string(status)), ("intent", "order"), ("code", code),
                                             ("subject", obj(("reference", .string(patient))))]
            if let priority = obr[27].component(6) ?? m["TQ1"]?[9].component(1) {
                fields.append(("priority", .string(HL7Tables.priority[priority] ?? "routine")))
            }
            if let t = orc[9].value { fields.append(("authoredOn", .string(try dateTime(t, at: ("ORC", i + 1, 9))))) }
            if let who = orc[12].each.first ?? obr[16].each.first, let display = practitionerName(who) {
                fields.append(("requester", obj(("display", .string(display)))))
            }
            if let reason = codeableConcept(obr[31]) { fields.append(("reasonCode", .array([reason]))) }
            fields.append(("performer", .array([obj(("reference", .string("Organization/" + facility)))])))
            let url = "urn:uuid:" + RandomUUID.make()
            entries.append(entry(url, obj(fields), method: "PUT", url: "ServiceRequest?identifier=\(query(placerSystem))|\(query(placer))"))
        }
        guard !entries.isEmpty else { throw HL7Problem(.error, "100", "An order needs an OBR segment", at: ("OBR", 1, 0)) }
        return entries
    }

    func practitionerName(_ xcn: HL7Field) -> String? {
        let name = [xcn.component(2), xcn.component(3)].compactMap { $0 }.joined()
        return name.isEmpty ? xcn.component(1) : name
    }

    // MARK: SIU

    func appointmentEntry(_ m: HL7Message, event: String, patient: String) throws(HL7Problem) -> JSON {
        guard let sch = m["SCH"] else { throw HL7Problem(.error, "100", "SIU needs an SCH segment", at: ("SCH", 1, 0)) }
        guard let id = sch[1].value ?? sch[2].value else {
            throw HL7Problem(.error, "101", "SCH-1 or SCH-2 (appointment id) is required", at: ("SCH", 1, 1))
        }
        let status: String
        switch event {
        case "S15": status = "cancelled"
        case "S26": status = "noshow"
        default:
            status = ["Booked": "booked", "Pending": "pending", "Cancelled": "cancelled", "Complete": "fulfilled", "Noshow": "noshow",
                      "Waitlist": "waitlist", "Started": "arrived"][sch[25].component(1) ?? "Booked"] ?? "booked"
        }
        // SCH-11 (TQ): start in component 4, end in 5; or TQ1-7/TQ1-8 (v2.5).
        let startText = sch[11].component(4) ?? m["TQ1"]?[7].value ?? m["AIS"]?[4].value
        guard let startText else { throw HL7Problem(.error, "101", "The appointment's start (SCH-11.4 or TQ1-7) is required", at: ("SCH", 1, 11)) }
        let start = try instant(startText, at: ("SCH", 1, 11))
        var fields: [(String, JSON?)] = [("resourceType", "Appointment"),
                                         ("identifier", .array([obj(("system", .string(appointmentSystem)), ("value", .string(id)))])),
                                         ("status", .string(status))]
        if let reason = codeableConcept(sch[7]) { fields.append(("reasonCode", .array([reason]))) }
        if let type = codeableConcept(sch[8]) { fields.append(("appointmentType", type)) }
        fields.append(("start", .string(start)))
        if let endText = sch[11].component(5) ?? m["TQ1"]?[8].value {
            fields.append(("end", .string(try instant(endText, at: ("SCH", 1, 11)))))
        } else if let minutes = sch[9].value.flatMap({ Int($0) }) {
            fields.append(("minutesDuration", .number(String(minutes))))
        }
        var participants = [obj(("actor", obj(("reference", .string(patient)))), ("status", "accepted"))]
        for aip in m.all("AIP") {
            if let who = aip[3].each.first, let display = practitionerName(who) {
                participants.append(obj(("actor", obj(("display", .string(display)))), ("status", "accepted")))
            }
        }
        for ail in m.all("AIL") {
            if let place = ail[3].component(1) {
                participants.append(obj(("actor", obj(("display", .string(place)))), ("status", "accepted")))
            }
        }
        fields.append(("participant", .array(participants)))
        return entry("urn:uuid:" + RandomUUID.make(), obj(fields), method: "PUT",
                     url: "Appointment?identifier=\(query(appointmentSystem))|\(query(id))")
    }

    // MARK: MDM^T02

    func documentEntries(_ m: HL7Message, patient: String) throws(HL7Problem) -> [JSON] {
        guard let txa = m["TXA"] else { throw HL7Problem(.error, "100", "MDM needs a TXA segment", at: ("TXA", 1, 0)) }
        guard let number = txa[12].component(1) else {
            throw HL7Problem(.error, "101", "TXA-12 (unique document number) is required", at: ("TXA", 1, 12))
        }
        // The content: an OBX of type ED (source^type^subtype^encoding^data), or TX/ST lines.
        var contentType = "text/plain", data = Data()
        var lines: [String] = []
        for (i, obx) in m.all("OBX").enumerated() {
            switch obx[2].value {
            case "ED"?:
                let type = (obx[5].component(2) ?? "text").lowercased(), subtype = (obx[5].component(3) ?? "plain").lowercased()
                contentType = Self.mimeType(type: type, subtype: subtype)
                let encoded = obx[5].component(5) ?? ""
                switch obx[5].component(4)?.uppercased() {
                case "BASE64"?:
                    guard let bytes = Data(base64Encoded: encoded, options: .ignoreUnknownCharacters) else {
                        throw HL7Problem(.error, "102", "OBX-5 data is not valid Base64", at: ("OBX", i + 1, 5))
                    }
                    data = bytes
                case "HEX"?:
                    var bytes = [UInt8]()
                    var chars = Array(encoded)
                    if chars.count % 2 == 1 { chars.insert("0", at: 0) }
                    for j in stride(from: 0, to: chars.count, by: 2) {
                        guard let b = UInt8(String(chars[j...j + 1]), radix: 16) else {
                            throw HL7Problem(.error, "102", "OBX-5 data is not valid hexadecimal", at: ("OBX", i + 1, 5))
                        }
                        bytes.append(b)
                    }
                    data = Data(bytes)
                case "A"?, nil:
                    data = Data(encoded.utf8)
                case let other?:
                    throw HL7Problem(.error, "103", "OBX-5 encoding '\(other)' is not supported (Base64, Hex, A)", at: ("OBX", i + 1, 5))
                }
            case "TX"?, "ST"?, "FT"?, nil:
                lines += obx[5].repetitions.indices.compactMap { obx[5].component(1, repetition: $0) }
            default:
                continue
            }
        }
        if data.isEmpty && !lines.isEmpty { data = Data(lines.joined(separator: "\n").utf8) }
        guard !data.isEmpty else { throw HL7Problem(.error, "101", "MDM^T02 carries its document in OBX-5 (ED, TX)", at: ("OBX", 1, 5)) }
        let binaryURL = "urn:uuid:" + RandomUUID.make()
        let binary = obj(("resourceType", "Binary"), ("contentType", .string(contentType)), ("data", .string(data.base64EncodedString())))
        let docStatus = HL7Tables.documentStatus[txa[17].value ?? "AU"] ?? "final"
        var fields: [(String, JSON?)] = [("resourceType", "DocumentReference"),
                                         ("masterIdentifier", obj(("system", .string(documentSystem)), ("value", .string(number)))),
                                         ("status", .string(txa[17].value == "OB" || txa[17].value == "CA" ? "superseded" : "current")),
                                         ("docStatus", .string(docStatus))]
        if let type = txa[2].value { fields.append(("type", obj(("coding", .array([obj(("system", "http://terminology.hl7.org/CodeSystem/v2-0270"), ("code", .string(type)))])), ("text", .string(type))))) }
        fields.append(("subject", obj(("reference", .string(patient)))))
        if let t = txa[4].value ?? txa[6].value { fields.append(("date", .string(try instant(t, at: ("TXA", 1, 4))))) }
        if let author = txa[9].each.first, let display = practitionerName(author) { fields.append(("author", .array([obj(("display", .string(display)))]))) }
        fields.append(("custodian", obj(("reference", .string("Organization/" + facility)))))
        let attachment = obj(("contentType", .string(contentType)), ("url", .string(binaryURL)), ("size", .number(String(data.count))),
                             ("title", txa[23].value.map(JSON.string)))
        fields.append(("content", .array([obj(("attachment", attachment))])))
        return [entry(binaryURL, binary, method: "POST", url: "Binary"),
                entry("urn:uuid:" + RandomUUID.make(), obj(fields), method: "PUT",
                      url: "DocumentReference?identifier=\(query(documentSystem))|\(query(number))")]
    }

    static func mimeType(type: String, subtype: String) -> String {
        switch (type, subtype) {
        case ("application", "pdf"), ("ap", "pdf"): return "application/pdf"
        case ("text", "html"), ("tx", "html"): return "text/html"
        case ("text", "rtf"), ("tx", "rtf"): return "application/rtf"
        case ("image", "jpeg"), ("im", "jpeg"), ("im", "jpg"): return "image/jpeg"
        case ("image", "png"), ("im", "png"): return "image/png"
        case ("text", "xml"), ("tx", "xml"), ("application", "xml"): return "application/xml"
        case ("multipart", _): return "multipart/" + subtype
        default:
            let major = ["ap": "application", "tx": "text", "im": "image", "au": "audio", "vi": "video"][type] ?? type
            return major + "/" + subtype
        }
    }

    // MARK: ADT^A40

    /// A merge: the surviving registration (PID) `replaces` the merged one (MRG-1), which becomes
    /// inactive and `replaced-by` the survivor (FHIR's Patient.link). Both must be the sender's;
    /// an unknown MRG-1 is an error (AE), and nothing is written. The records of the merged
    /// registration stay where they are: the master index links both registrations to one
    /// resident, so the resident's `$everything` spans them.
    func mergeEntries(_ m: HL7Message, survivor: (entry: JSON, fullUrl: String)) throws(HL7Problem) -> [JSON] {
        guard let mrg = m["MRG"] else { throw HL7Problem(.error, "100", "ADT^A40 needs an MRG segment", at: ("MRG", 1, 0)) }
        guard let prior = mrg[1].each.first, let value = prior.component(1) else {
            throw HL7Problem(.error, "101", "MRG-1 (prior patient identifier) is required", at: ("MRG", 1, 1))
        }
        let (system, _) = identifierSystem(prior)
        let merged = "Patient?identifier=\(query(system))|\(query(value))&_source=\(query("urn:huitong:facility:" + facility))"
        guard case .object(var entry) = survivor.entry, case .object(var resource)? = entry["resource"] else { return [survivor.entry] }
        resource["link"] = .array([obj(("other", obj(("reference", .string(merged)))), ("type", "replaces"))])
        entry["resource"] = .object(resource)
        let patch = JSON.array([
            obj(("op", "add"), ("path", "/active"), ("value", .bool(false))),
            obj(("op", "add"), ("path", "/link"), ("value", .array([obj(("other", obj(("reference", .string(survivor.fullUrl)))), ("type", "replaced-by"))]))),
        ])
        let binary = obj(("resourceType", "Binary"), ("contentType", "application/json-patch+json"),
                         ("data", .string(Data(JSONWriter.bytes(patch)).base64EncodedString())))
        return [.object(entry), obj(("fullUrl", .string("urn:uuid:" + RandomUUID.make())), ("resource", binary),
                                    ("request", obj(("method", "PATCH"), ("url", .string(merged)))))]
    }
}
