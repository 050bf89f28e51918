import Access
import FHIRModel
import Foundation
import Platform
import HealthCard
import Identity
import Store

/// Why a card code was refused (`details.coding` of the OperationOutcome, and the audit event's
/// outcome).
enum CardRefusal: String {
    case malformed, unknownCard = "unknown-card", tampered, expired, overUsed = "over-used", revoked, suspended, cancelled
    case madeBeforeRestart = "made-before-restart"

    static let system = "https://huitong.health/fhir/CodeSystem/card-verification"

    var issueCode: String {
        switch self {
        case .malformed: "invalid"
        case .unknownCard: "not-found"
        case .tampered: "security"
        case .expired, .revoked, .madeBeforeRestart: "expired"
        case .overUsed, .suspended, .cancelled: "business-rule"
        }
    }
}

extension HealthCardService {
    /// `POST /card/verify` (a facility's scanner): `{"code": <QR text>, "scene": <用卡环节 code>,
    /// "createPatient": true}`. Accepts a static, dynamic or offline code of a normal card; answers
    /// with the resident's identity summary, the master Person and the facility's own Patient (made
    /// from the Person, and linked by the master index, when the facility has none). Every outcome,
    /// accepted or refused, is audited with the card and the scene.
    public func verify(_ body: JSON) async throws -> JSON {
        try await service.authorize(.operation("card-verify"), "Person")
        guard let text = body["code"]?.stringValue, !text.isEmpty else {
            throw FHIRError(.invalid, code: "required", "'code' is the text of the scanned QR code", at: "code")
        }
        guard let scene = body["scene"]?.stringValue, CardScene.isValid(scene) else {
            throw FHIRError(.invalid, code: "required", "'scene' is the seven-digit scene code (用卡环节, e.g. 0101011 预约挂号)", at: "scene")
        }
        var query = "scene=\(scene)"
        func refuse(_ refusal: CardRefusal, _ message: String, card: CardRecord? = nil) async -> FHIRError {
            let patients = card.map { [$0.person.description] } ?? []
            try? await service.trail.append(.operation("card-verify"), type: "Person", entities: card.map { [$0.person] } ?? [],
                                            patients: patients, query: query, outcome: .denied(refusal.rawValue + ": " + message))
            var issue = Issue(code: refusal.issueCode, message, at: refusal == .malformed ? "code" : nil)
            issue.details = (CardRefusal.system, refusal.rawValue)
            return FHIRError(refusal == .malformed ? .invalid : .businessRule, [issue])
        }

        // What the code says: the card, and for dynamic and offline codes their expiry.
        let cardID: String
        var kind: CodeKind
        var expires: Int?
        var dynamic: CardCode?
        if OfflineCardKeys.looksLikeToken(text) {
            kind = .offline
            do {
                (cardID, expires) = try keys.offline.verify(text)
            } catch {
                throw await refuse(.tampered, "The offline code's signature does not verify with the platform's keys (\(error))")
            }
        } else {
            guard let code = try? CardCode(text: text) else {
                throw await refuse(.malformed, "Not an e-health card code (<card id>:1, <card id>:0:<validity>, or a signed offline code)")
            }
            cardID = code.cardID
            kind = code == .staticCode(cardID: code.cardID) ? .static : .dynamic
            dynamic = kind == .dynamic ? code : nil
        }
        query = "card=\(cardID)&code=\(kind.rawValue)&" + query
        guard let card = try await record(cardID) else {
            throw await refuse(.unknownCard, "No e-health card \(cardID) was issued here")
        }
        switch card.status {
        case .normal: break
        case .suspended: throw await refuse(.suspended, "The card is suspended (挂失): the resident reported it lost", card: card)
        case .cancelled: throw await refuse(.cancelled, "The card is cancelled (注销)", card: card)
        }
        if let dynamic {
            let userKey = try await keys.root.userKey(diversificationFactor: card.factor)
            guard let until = dynamic.expires(userKey: userKey) else {
                throw await refuse(.tampered, "The dynamic code's validity does not decrypt under this card's key: altered or forged", card: card)
            }
            expires = until
        }
        if let expires {
            guard expires >= now else {
                throw await refuse(.expired, "The code expired at \(CardRecord.instant(expires)); show a new one", card: card)
            }
            let lifetime = kind == .offline ? settings.offlineLifetime : settings.dynamicLifetime
            if let reissued = card.reissued, expires <= reissued + lifetime {
                throw await refuse(.revoked, "The code was made before the card was re-issued at \(CardRecord.instant(reissued))", card: card)
            }
        }

        let (person, personJSON) = try await holder(card)
        var usesLeft: Int?
        if let dynamic, let expires {
            usesLeft = try await takeUse(dynamic.text, cardID: cardID, expires: expires, person: person, query: query) { refusal, message in
                await refuse(refusal, message, card: card)
            }
        } else {
            try await service.trail.append(.operation("card-verify"), type: "Person", entities: [person], patients: [person.description],
                                           query: query)
        }
        // Accepted (and recorded): the facility's own Patient, made if it has none (its creation
        // is audited as a create of that facility).
        var patient: String?
        var created = false
        if let facility = service.principal.facility {
            patient = try await facilityPatient(person: personJSON, facility: facility)
            if patient == nil, body["createPatient"]?.boolValue ?? true, service.policy.mayWrite(service.principal, "Patient") {
                patient = try await createPatient(from: personJSON, cardID: cardID)
                created = patient != nil
            }
        }
        return summary(card: card, kind: kind, expires: expires, usesLeft: usesLeft, scene: scene, person: person,
                       json: personJSON, patient: patient, created: created)
    }

    /// Records one successful use of a dynamic code with its audit event (durable before the
    /// answer) and returns how many uses are left; `refuse` makes the error when none is.
    func takeUse(_ code: String, cardID: String, expires: Int, person: ResourceKey, query: String,
                 refuse: (CardRefusal, String) async -> FHIRError) async throws -> Int {
        let max = settings.dynamicMaxUses
        let overUsed = "The code was used \(max) times already; show a new one"
        guard service.store.hasOtherWriters else {
            guard expires - settings.dynamicLifetime >= uses.started else {
                throw await refuse(.madeBeforeRestart, "The code was made before the platform restarted; show a new one")
            }
            guard let n = uses.take(code, max: max, expires: expires, now: now) else { throw await refuse(.overUsed, overUsed) }
            try await service.trail.append(.operation("card-verify"), type: "Person", entities: [person], patients: [person.description],
                                           query: query)
            return max - n
        }
        // Several nodes: one record per use, inserted only if new; over the limit no slot is free.
        var slot = uses.next(code)
        while true {
            guard slot <= max else { throw await refuse(.overUsed, overUsed) }
            let use = RecordWrite(PlatformRecord(kind: CardRecord.useKind, id: "\(cardID):\(code.suffix(32))#\(slot)", content: "",
                                                 expires: Int64(expires + 60) * 1_000_000), mode: .insertNew(now: Int64(now) * 1_000_000))
            let audit = service.auditing ? [service.trail.event(.operation("card-verify"), type: "Person", entities: [person],
                                                                patients: [person.description], query: query)] : []
            do {
                try await service.store.commitRecords([use], audit: audit)
                uses.used(code, slot, expires: expires)
                return max - slot
            } catch StoreError.recordExists {
                slot += 1
            }
        }
    }

    /// The card holder's master Person (in clear, for the summary and a new Patient).
    func holder(_ card: CardRecord) async throws -> (ResourceKey, JSONObject) {
        guard let stored = try await service.store.read(card.person), !stored.deleted,
              case .object(let person) = try service.pipeline.parseStored(stored.content) else {
            throw FHIRError(.conflict, code: "not-found", "The card's master Person \(card.person) is gone (merged?): re-issue the card")
        }
        return (card.person, person)
    }

    /// The facility's own Patient among the Person's links.
    func facilityPatient(person: JSONObject, facility: String) async throws -> String? {
        for link in person["link"]?.arrayValue ?? [] {
            guard let reference = link["target"]?["reference"]?.stringValue, let key = CardRecord.key(reference), key.type == "Patient",
                  let record = try await service.store.read(key), !record.deleted else { continue }
            if PatientDataGate.sourceFacility(record.content) == facility { return key.description }
        }
        return nil
    }

    /// A Patient for the verifying facility from the master Person's demographics and identifiers
    /// (resident ID, the card): written through the ingest pipeline, so the master index links it.
    func createPatient(from person: JSONObject, cardID: String) async throws -> String? {
        var patient = JSONObject([("resourceType", .string("Patient"))])
        var identifiers = (person["identifier"]?.arrayValue ?? []).filter { $0["system"]?.stringValue == IdentifierSystems.residentID }
        identifiers.append(.object(JSONObject([("type", Self.cardType), ("system", .string(IdentifierSystems.healthCard)),
                                                ("value", .string(cardID))])))
        patient["identifier"] = .array(identifiers)
        for member in ["name", "telecom", "gender", "birthDate", "address"] { patient[member] = person[member] }
        let result = try await service.create("Patient", body: .object(patient))
        return result.key?.description
    }

    func summary(card: CardRecord, kind: CodeKind, expires: Int?, usesLeft: Int?, scene: String, person: ResourceKey,
                 json: JSONObject, patient: String?, created: Bool) -> JSON {
        var resident = JSONObject()
        if let name = json["name"]?[0] {
            resident["name"] = name["text"] ?? .string(((name["family"]?.stringValue ?? "")
                + (name["given"]?.arrayValue ?? []).compactMap(\.stringValue).joined()))
        }
        resident["gender"] = json["gender"]
        resident["birthDate"] = json["birthDate"]
        if let id = (json["identifier"]?.arrayValue ?? []).first(where: { $0["system"]?.stringValue == IdentifierSystems.residentID })?["value"]?.stringValue {
            let clear = service.policy.seesIdentifiers(service.principal, type: "Person", sourceFacility: nil)
            resident["idNumber"] = .string(clear ? id : IdentifierProtection.masked(id, kind: "id"))
        }
        var code = JSONObject([("kind", .string(kind.rawValue))])
        if let expires { code["expires"] = .string(CardRecord.instant(expires)) }
        if let usesLeft { code["usesLeft"] = .number(String(usesLeft)) }
        var sceneJSON = JSONObject([("code", .string(scene))])
        if let names = CardScene.names[scene] { sceneJSON["display"] = .string(names.zh); sceneJSON["displayEn"] = .string(names.en) }
        var o = JSONObject()
        o["outcome"] = .string("accepted")
        o["card"] = .object(JSONObject([("id", .string(card.id)), ("status", .string(card.status.rawValue)), ("temporary", .bool(card.temporary))]))
        o["code"] = .object(code)
        o["scene"] = .object(sceneJSON)
        o["resident"] = .object(resident)
        o["person"] = .string(person.description)
        o["patient"] = patient.map { .string($0) } ?? .null
        o["patientCreated"] = .bool(created)
        return .object(o)
    }
}
