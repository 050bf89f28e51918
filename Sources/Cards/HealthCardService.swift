import Access
import FHIRModel
import Foundation
import Platform
import HealthCard
import Identity
import Store
import Synchronization

/// E-health cards (电子健康卡, 一码通) for master Persons: issuance, status (loss report, resume,
/// cancel, re-issue), QR codes and verification at any facility (`verify`). Every call asks the
/// access decision (operations `card-*` on Person) and is audited; a card's record and its
/// Person change in one unit with the audit event.
///
/// Card ids follow the national scheme, so a resident's card id is fixed by their document and
/// the root key: re-issuing keeps the id and revokes the codes made before it.
public struct HealthCardService: Sendable {
    let service: FHIRService
    let keys: CardKeyring
    let settings: CardSettings
    let uses: CodeUses

    /// How often dynamic codes were used. With one writer process (the embedded store) the
    /// counts are kept here, exactly: every use is taken under a lock, and a code made before
    /// this process started is refused (its earlier uses are not known here), so no code is used
    /// more than allowed, also across a restart. With several nodes (PostgreSQL) the store counts
    /// (`health-card-use` records); then this only remembers where the next free slot probably is.
    public final class CodeUses: Sendable {
        /// Dynamic codes made before this second are refused when counted here. (A code made in
        /// this very second by a process that died in it would be counted afresh: validity times
        /// have whole seconds.)
        let started: Int
        let counts = Mutex<[String: (used: Int, expires: Int)]>([:])

        public init(now: Double = Date().timeIntervalSince1970) { started = Int(now) }

        /// Takes a use of `code` (valid until `expires`): its number, or nil when all are used.
        func take(_ code: String, max: Int, expires: Int, now: Int) -> Int? {
            counts.withLock { c in
                if c.count > 100_000 { c = c.filter { $0.value.expires >= now } }
                let used = c[code]?.used ?? 0
                guard used < max else { return nil }
                c[code] = (used + 1, expires)
                return used + 1
            }
        }

        func next(_ code: String) -> Int { counts.withLock { ($0[code]?.used ?? 0) + 1 } }
        func used(_ code: String, _ n: Int, expires: Int) { counts.withLock { $0[code] = (n, expires) } }
    }

    public init(service: FHIRService, keys: CardKeyring, settings: CardSettings = CardSettings(), uses: CodeUses) {
        self.service = service
        self.keys = keys
        self.settings = settings
        self.uses = uses
    }

    static let documentTypes: Set<String> = ["01", "02", "03", "04", "05", "06", "07", "99"]
    static let temporaryType = "99"
    var now: Int { Int(settings.clock()) }
    var actor: String { "\(service.principal.kind.rawValue)/\(service.principal.subject)" }

    // MARK: issuance

    /// `POST /card/issue`: `{"person": "Person/x"}` or `{"patient": "Patient/y"}` (its master Person),
    /// with `documentType` + `documentNumber` for a document other than the Person's resident ID,
    /// or `"temporary": true` (no document yet: newborns, some foreigners). Returns the card and
    /// whether it is new (an existing normal card is returned as it is).
    public func issue(_ body: JSON) async throws -> (card: JSON, created: Bool) {
        try await service.authorize(.operation("card-issue"), "Person")
        let personKey = try await person(of: body)
        for _ in 1...16 {
            guard let stored = try await service.store.read(personKey), !stored.deleted else { throw FHIRError.notFound(personKey) }
            guard case .object(let person) = try service.pipeline.parseStored(stored.content) else { throw FHIRError.notFound(personKey) }
            let temporary = body["temporary"]?.boolValue ?? false
            // A resident has one temporary card at a time.
            if temporary, let current = (person["identifier"]?.arrayValue ?? []).first(where: { Self.isIssuedCard($0) && $0["use"]?.stringValue == "temp" }),
               let id = current["value"]?.stringValue, let existing = try await record(id), existing.status != .cancelled {
                return (existing.json, false)
            }
            let document = try self.document(body, person: person, temporary: temporary)
            let cardID = try await document.cardID(userKey: keys.root.userKey(diversificationFactor: document.diversificationFactor))
            var card = CardRecord(id: cardID, person: personKey, document: document, temporary: temporary, issued: now, by: actor,
                                  issuer: service.principal.facility)
            if let existing = try await record(cardID) {
                guard existing.person == personKey else {
                    throw FHIRError(.conflict, code: "duplicate", "This document's card is issued to \(existing.person) already: "
                                    + "if both are the same resident, merge the Persons in the master index")
                }
                if existing.status == .normal { return (existing.json, false) }
                card = existing
                card.status = .normal
                card.reissued = now
                card.record("reissue", at: now, by: actor, reason: "issued again")
            }
            var records = [RecordWrite(card.stored)]
            var replaced: [String] = []
            var updated = person
            var identifiers = person["identifier"]?.arrayValue ?? []
            // A regular card replaces the resident's temporary one.
            for (i, identifier) in identifiers.enumerated() where Self.isIssuedCard(identifier) && identifier["use"]?.stringValue == "temp"
                && !temporary && identifier["value"]?.stringValue != cardID {
                guard let old = identifier["value"]?.stringValue, var oldCard = try await record(old) else { continue }
                oldCard.status = .cancelled
                oldCard.record("cancel", at: now, by: actor, reason: "replaced by card \(cardID)")
                records.append(RecordWrite(oldCard.stored))
                identifiers[i] = Self.retired(identifier, on: today)
                replaced.append(old)
            }
            identifiers.removeAll { $0["system"]?.stringValue == IdentifierSystems.healthCard && $0["value"]?.stringValue == cardID }
            identifiers.append(cardIdentifier(cardID, temporary: temporary))
            updated["identifier"] = .array(identifiers)
            do {
                try await commit(person: updated, key: personKey, version: stored.version, records: records, "card-issue", card: cardID)
            } catch StoreError.versionConflict {
                continue   // the master index rewrote the Person meanwhile: issue on its new state
            }
            var out = card.json
            if !replaced.isEmpty, case .object(var o) = out { o["replaced"] = .array(replaced.map { .string($0) }); out = .object(o) }
            return (out, true)
        }
        throw FHIRError(.conflict, code: "conflict", "The master Person kept changing while the card was issued; try again")
    }

    /// The document a card is derived from.
    func document(_ body: JSON, person: JSONObject, temporary: Bool) throws(FHIRError) -> CardDocument {
        do {
            if temporary {
                var rng = SystemRandomNumberGenerator()
                let number = "LS" + (0..<16).map { _ in String(Int.random(in: 0...9, using: &rng)) }.joined()
                return try CardDocument(type: Self.temporaryType, number: number)
            }
            let residentID = (person["identifier"]?.arrayValue ?? []).first { $0["system"]?.stringValue == IdentifierSystems.residentID }?["value"]?.stringValue
            let type = body["documentType"]?.stringValue ?? "01"
            guard Self.documentTypes.contains(type), type != Self.temporaryType else {
                throw FHIRError(.invalid, code: "code-invalid", "documentType must be one of 01 (居民身份证), 02-07 (CV02.01.101); "
                                + "use \"temporary\": true for a card without a document", at: "documentType")
            }
            guard let given = body["documentNumber"]?.stringValue ?? (type == "01" ? residentID : nil), !given.isEmpty else {
                throw FHIRError(.businessRule, code: "required", "The Person has no resident ID number: give documentType and documentNumber, "
                                + "or issue a temporary card", at: "documentNumber")
            }
            guard type == "01" else { return try CardDocument(type: type, number: given.uppercased()) }
            let number: String
            do { number = try ResidentID(given).value } catch {
                let masked = IdentifierProtection.masked(given, kind: "id")
                guard body["documentNumber"] != nil else {
                    throw FHIRError(.businessRule, code: "business-rule", "The Person's resident ID number \(masked) is not valid (GB 11643 check): "
                                    + "correct the registration, or give documentType and documentNumber", at: "person")
                }
                throw FHIRError(.invalid, code: "invalid", "'\(masked)' is not a valid resident ID number (GB 11643: length, birth date and check character)",
                                at: "documentNumber")
            }
            if let residentID, let recorded = try? ResidentID(residentID).value, recorded != number {
                throw FHIRError(.businessRule, code: "business-rule", "The document number is not the Person's resident ID number", at: "documentNumber")
            }
            return try CardDocument(type: type, number: number)
        } catch let error as CardIdentifiers.DerivationError {
            throw FHIRError(.invalid, code: "too-long", "The document type and number exceed 32 bytes (\(error))", at: "documentNumber")
        } catch let error as FHIRError {
            throw error
        } catch {
            throw FHIRError(.invalid, code: "invalid", "\(error)")
        }
    }

    func person(of body: JSON) async throws -> ResourceKey {
        func reference(_ name: String) -> String? { body[name]?.stringValue ?? body[name]?["reference"]?.stringValue }
        // The holder must be someone the issuer may read (a resident it registered or treats): a
        // card for anyone else would hand out their identity and tell that they exist (ADR 016).
        // Unknown and hidden answer alike.
        func readable(_ key: ResourceKey) async throws -> ResourceKey {
            guard let record = try await service.store.read(key), !record.deleted, try await service.patientDataGate().mayRead(record) else {
                try? await service.trail.append(.operation("card-issue"), type: key.type, entities: [], patients: [],
                                                query: "holder=\(key)", outcome: .denied("no such card holder the caller may read"))
                throw FHIRError.notFound(key)
            }
            return key
        }
        if let text = reference("person") {
            guard let key = CardRecord.key(text), key.type == "Person" else {
                throw FHIRError(.invalid, code: "invalid", "'person' must reference a Person (Person/{id})", at: "person")
            }
            return try await readable(key)
        }
        guard let text = reference("patient"), let key = CardRecord.key(text), key.type == "Patient" else {
            throw FHIRError(.invalid, code: "required", "Name the card holder: 'person' (Person/{id}) or 'patient' (Patient/{id})", at: "person")
        }
        _ = try await readable(key)
        guard let person = try await service.masterIndex?.linkedRecords(of: key)?.person else {
            throw FHIRError(.businessRule, code: "not-found", "\(key) is not linked to a master Person", at: "patient")
        }
        return person
    }

    /// `Identifier.type` of a card id (v2-0203 HC).
    static let cardType = JSON.object(JSONObject([("coding", .array([.object(JSONObject([
        ("system", .string("http://terminology.hl7.org/CodeSystem/v2-0203")), ("code", .string("HC")),
        ("display", .string("Health Card Number"))]))]))]))

    func cardIdentifier(_ id: String, temporary: Bool) -> JSON {
        .object(JSONObject([
            ("use", .string(temporary ? "temp" : "official")),
            ("type", Self.cardType),
            ("system", .string(IdentifierSystems.healthCard)), ("value", .string(id)),
            ("period", .object(JSONObject([("start", .string(today))]))),
            ("assigner", .object(JSONObject([("display", .string(IdentifierSystems.cardIssuer))]))),
        ]))
    }

    static func isIssuedCard(_ identifier: JSON) -> Bool {
        identifier["system"]?.stringValue == IdentifierSystems.healthCard && identifier["assigner"]?["display"]?.stringValue == IdentifierSystems.cardIssuer
    }

    static func retired(_ identifier: JSON, on day: String) -> JSON {
        guard case .object(var o) = identifier else { return identifier }
        o["use"] = .string("old")
        var period = o["period"]?.objectValue ?? JSONObject()
        period["end"] = .string(day)
        o["period"] = .object(period)
        return .object(o)
    }

    /// Today in China (the card's dates).
    var today: String {
        let (y, m, d) = FHIRDateTime.civilFromDays((now + 8 * 3600) / 86_400)
        return String(format: "%04d-%02d-%02d", y, m, d)
    }

    /// Writes the Person (with the card records) through the write pipeline, in one unit with the
    /// audit event of `operation`. A Person changed since `version` was read throws
    /// `StoreError.versionConflict`, for the caller to read it again.
    func commit(person: JSONObject, key: ResourceKey, version: Int, records: [RecordWrite], _ operation: String, card: String) async throws {
        let write = WriteRequest.generated(person, key: key, method: "PUT", ifMatch: version, validate: false)
        do {
            _ = try await service.writePipeline.write([write], as: .operation(operation), auditQuery: "card=\(card)", records: records)
        } catch let error as FHIRError where error.category == .preconditionFailed {
            throw StoreError.versionConflict(key: key, expected: version, current: nil)
        }
    }

    // MARK: reading and status

    func record(_ id: String) async throws -> CardRecord? {
        guard let stored = try await service.store.record(kind: CardRecord.kind, id: id, now: Int64(now) * 1_000_000) else { return nil }
        return CardRecord(stored)
    }

    /// The card, for someone allowed `operation` on it (a resident: their own card only). Refusals
    /// and unknown cards are audited.
    func card(_ id: String, for operation: String) async throws -> CardRecord {
        try await service.authorize(.operation(operation), "Person")
        guard let card = try await record(id) else {
            try? await service.trail.append(.operation(operation), type: "Person", entities: [], patients: [], query: "card=\(id)",
                                            outcome: .denied("unknown card"))
            throw FHIRError(.notFound, code: "not-found", "No e-health card \(id)")
        }
        if service.policy.isResident(service.principal) {
            let own = try await service.patientDataGate().residentOwn()
            guard own.contains(card.person.description) else {
                let reason = "This card is not yours"
                try? await service.trail.append(.operation(operation), type: "Person", entities: [], patients: [card.person.description],
                                                query: "card=\(id)", outcome: .denied(reason))
                throw FHIRError(.forbidden, code: "forbidden", reason)
            }
        }
        return card
    }

    /// `GET /card/{id}`.
    public func read(_ id: String) async throws -> JSON {
        let card = try await card(id, for: "card-read")
        try await service.trail.append(.operation("card-read"), type: "Person", entities: [card.person], patients: [card.person.description],
                                       query: "card=\(id)")
        return card.json
    }

    /// `POST /card/{id}/{suspend|resume|cancel|reissue}` with `{"reason": ...}` (required to
    /// suspend and cancel).
    public func change(_ id: String, action: String, reason: String?) async throws -> JSON {
        let transitions: [String: (from: Set<CardStatus>, to: CardStatus)] = [
            "suspend": ([.normal], .suspended), "resume": ([.suspended], .normal),
            "cancel": ([.normal, .suspended], .cancelled), "reissue": ([.normal, .suspended], .normal),
        ]
        guard let transition = transitions[action] else { throw FHIRError(.notFound, code: "not-supported", "Unknown card action '\(action)'") }
        if reason?.isEmpty ?? true, action == "suspend" || action == "cancel" {
            throw FHIRError(.invalid, code: "required", "Say why the card is to be \(action == "suspend" ? "suspended" : "cancelled") ('reason')", at: "reason")
        }
        for _ in 1...16 {
            var card = try await card(id, for: "card-" + action)
            guard transition.from.contains(card.status) else {
                throw FHIRError(.conflict, code: "business-rule", "Card \(id) is \(card.status.rawValue): it cannot be \(action == "reissue" ? "re-issued" : action + "ed")")
            }
            card.status = transition.to
            if action == "reissue" { card.reissued = now }
            card.record(action, at: now, by: actor, reason: reason)
            guard action == "cancel" else {
                let audit = service.auditing ? [service.trail.event(.operation("card-" + action), type: "Person", entities: [card.person],
                                                                    patients: [card.person.description], query: "card=\(id)")] : []
                try await service.store.commitRecords([RecordWrite(card.stored)], audit: audit)
                return card.json
            }
            // A cancelled card's identifier on the Person becomes `old`.
            guard let stored = try await service.store.read(card.person), case .object(var person) = try service.pipeline.parseStored(stored.content) else {
                throw FHIRError.notFound(card.person)
            }
            person["identifier"] = .array((person["identifier"]?.arrayValue ?? []).map {
                Self.isIssuedCard($0) && $0["value"]?.stringValue == id ? Self.retired($0, on: today) : $0
            })
            do {
                try await commit(person: person, key: card.person, version: stored.version, records: [RecordWrite(card.stored)], "card-cancel", card: id)
            } catch StoreError.versionConflict {
                continue
            }
            return card.json
        }
        throw FHIRError(.conflict, code: "conflict", "The master Person kept changing; try again")
    }

    // MARK: QR codes

    public enum CodeKind: String, Sendable { case dynamic, `static`, offline }

    /// `GET /card/{id}/qr`: the text of a code to show (a dynamic one by default), and when it expires.
    public func code(_ id: String, kind: CodeKind) async throws -> (text: String, expires: Int?) {
        let card = try await card(id, for: "card-qr")
        // A code stands for the resident wherever it is scanned: it is made for the resident (their
        // own card, checked above), at the counter of the facility that issued the card, or by an
        // administrator — never by any facility for any card (every one is audited).
        let principal = service.principal
        guard service.policy.isResident(principal) || principal.role == .administrator
                || (principal.facility != nil && principal.facility == card.issuer) else {
            let reason = "A card's codes are shown to the resident, or at the counter of the facility that issued it"
            try? await service.trail.append(.operation("card-qr"), type: "Person", entities: [], patients: [card.person.description],
                                            query: "card=\(id)", outcome: .denied(reason))
            throw FHIRError(.forbidden, code: "forbidden", reason)
        }
        guard card.status == .normal else {
            throw FHIRError(.conflict, code: "business-rule", "Card \(id) is \(card.status.rawValue): it shows no code")
        }
        let result: (String, Int?)
        switch kind {
        case .static:
            result = (CardCode.staticCode(cardID: id).text, nil)
        case .dynamic:
            // Codes expiring by the re-issue second plus a lifetime count as made before it (the
            // validity has whole seconds): one made in that second gets a second more.
            let expires = max(now, (card.reissued ?? 0) + 1) + settings.dynamicLifetime
            let userKey = try await keys.root.userKey(diversificationFactor: card.factor)
            result = (try CardCode.dynamic(cardID: id, userKey: userKey, expires: expires).text, expires)
        case .offline:
            let expires = max(now, (card.reissued ?? 0) + 1) + settings.offlineLifetime
            result = (try keys.offline.sign(cardID: id, expires: expires), expires)
        }
        try await service.trail.append(.operation("card-qr"), type: "Person", entities: [card.person], patients: [card.person.description],
                                       query: "card=\(id)&code=\(kind.rawValue)")
        return result
    }

    /// The public keys of offline codes (a JWK Set).
    public var offlineKeys: String { keys.offline.jwks }
}
