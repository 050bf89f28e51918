import Crypto
import Foundation
import Store

/// A person's account (clinicians, CDC staff, operators, residents): password + TOTP, both required.
public struct UserAccount: Codable, Sendable, Equatable {
    public var username: String
    public var role: Role
    public var facility: String?
    /// For residents: their master `Person/x` (or a `Patient/x`).
    public var patient: String?
    /// The most a login grants (space-separated SMART scopes).
    public var scopes: String
    public var passwordHash: String
    /// The TOTP secret, base32.
    public var totpSecret: String
    public var failedAttempts: Int
    /// Microseconds; logins are refused until then.
    public var lockedUntil: Int64?
    /// The last TOTP time step used (a code works once).
    public var lastTOTPStep: Int64?
    public var created: Int64

    static let kind = "user"
}

/// The people who log in, and their sessions: `POST /auth/login` with password and TOTP gives a
/// short access token and a refresh token; the session ends after `idleTimeout` without use or
/// `absoluteTimeout` after login, whichever comes first. Five wrong logins lock the account for
/// fifteen minutes (等保: two factors, lockout, session timeouts).
public struct UserDirectory: Sendable {
    public let store: any ResourceStore
    public let tokens: TokenAuthority
    public static let maxFailures = 5
    public static let lockout: TimeInterval = 15 * 60
    public static let idleTimeout: TimeInterval = 30 * 60
    public static let absoluteTimeout: TimeInterval = 8 * 3600

    public init(store: any ResourceStore, tokens: TokenAuthority) {
        self.store = store
        self.tokens = tokens
    }

    public struct Created: Sendable {
        public let account: UserAccount
        /// Shown once: the first password (to change) and the TOTP enrolment URI.
        public let password: String
        public let totpURI: String
    }

    /// Creates an account with a random password and TOTP secret.
    public static func create(username: String, role: Role, facility: String?, patient: String? = nil, scopes: String,
                              in store: any ResourceStore, now: Date = Date()) async throws -> Created {
        guard !username.isEmpty, username.count <= 64, username.allSatisfy({ $0.isLetter || $0.isNumber || "._-@".contains($0) }) else {
            throw OAuthError(400, "invalid_request", "A username is 1–64 letters, digits and . _ - @")
        }
        if let bad = scopes.split(separator: " ").first(where: { SMARTScope($0) == nil }) {
            throw OAuthError(400, "invalid_scope", "'\(bad)' is not a SMART resource scope")
        }
        if role.actsForAFacility && (facility ?? "").isEmpty {
            throw OAuthError(400, "invalid_request", "A \(role.rawValue) works at a facility: name it (--facility)")
        }
        if try await store.record(kind: UserAccount.kind, id: username, now: 0) != nil {
            throw OAuthError(409, "invalid_request", "The user '\(username)' exists already")
        }
        let password = ClientRegistry.randomToken(bytes: 12)
        let secret = TOTP.newSecret()
        let account = UserAccount(username: username, role: role, facility: facility, patient: patient, scopes: scopes,
                                  passwordHash: try PasswordHash.make(password), totpSecret: Base32.encode(secret),
                                  failedAttempts: 0, lockedUntil: nil, lastTOTPStep: nil, created: micros(now))
        try await save(account, in: store, mode: .insertNew(now: micros(now)))
        return Created(account: account, password: password, totpURI: TOTP.uri(secret: secret, account: username))
    }

    /// On an empty store: the first administrator, created once (nil when any user exists).
    public static func ensureAdministrator(in store: any ResourceStore) async throws -> Created? {
        guard try await store.records(kind: UserAccount.kind, now: 0).isEmpty else { return nil }
        return try await create(username: "admin", role: .administrator, facility: nil, scopes: "user/*.cruds", in: store)
    }

    public func account(_ username: String) async throws -> UserAccount? {
        guard let r = try await store.record(kind: UserAccount.kind, id: username, now: 0) else { return nil }
        return try JSONDecoder().decode(UserAccount.self, from: Data(r.content.utf8))
    }

    /// Password and TOTP code → token response (access token, refresh token, expiry, scope).
    public func login(username: String, password: String, totp: String, now: Date = Date()) async throws -> [String: any Sendable] {
        let refused = OAuthError(401, "invalid_grant", "Wrong username, password or one-time code")
        guard var account = try await account(username) else {
            _ = PasswordHash.verify(password, Self.decoy)  // the same time whether or not the user exists
            throw refused
        }
        if let until = account.lockedUntil, until > Self.micros(now) {
            throw OAuthError(401, "invalid_grant", "The account is locked after repeated failed logins; try again later")
        }
        let secret = Base32.decode(account.totpSecret) ?? []
        let passwordOK = PasswordHash.verify(password, account.passwordHash)
        let step = passwordOK ? TOTP.verify(totp, secret: secret, now: now, after: account.lastTOTPStep) : nil
        guard passwordOK, let step else {
            account.failedAttempts += 1
            if account.failedAttempts >= Self.maxFailures {
                account.lockedUntil = Self.micros(now.addingTimeInterval(Self.lockout))
                account.failedAttempts = 0
            }
            try await Self.save(account, in: store)
            throw refused
        }
        account.failedAttempts = 0
        account.lockedUntil = nil
        account.lastTOTPStep = step
        // A new session: its refresh token is kept only as a hash.
        let refresh = ClientRegistry.randomToken()
        let session = Session(username: username, created: Self.micros(now), lastUsed: Self.micros(now))
        try await store.commitRecords([try Self.record(account),
                        RecordWrite(PlatformRecord(kind: Session.kind, id: ClientRegistry.sha256Hex(refresh),
                                                   content: String(decoding: try JSONEncoder().encode(session), as: UTF8.self),
                                                   expires: Self.micros(now.addingTimeInterval(Self.absoluteTimeout))))])
        var response = try await issue(account, now: now)
        response["refresh_token"] = refresh
        return response
    }

    /// `grant_type=refresh_token`: a new access token while the session lives.
    public func refresh(_ token: String, now: Date = Date()) async throws -> [String: any Sendable] {
        let id = ClientRegistry.sha256Hex(token)
        guard let record = try await store.record(kind: Session.kind, id: id, now: Self.micros(now)),
              var session = try? JSONDecoder().decode(Session.self, from: Data(record.content.utf8)) else {
            throw OAuthError(400, "invalid_grant", "The session has ended; log in again")
        }
        guard Self.micros(now) - session.lastUsed <= Self.micros(Date(timeIntervalSince1970: Self.idleTimeout)) else {
            try await store.commitRecords([.delete(kind: Session.kind, id: id)])
            throw OAuthError(400, "invalid_grant", "The session ended after \(Int(Self.idleTimeout / 60)) minutes without use; log in again")
        }
        guard let account = try await account(session.username), account.lockedUntil.map({ $0 <= Self.micros(now) }) ?? true else {
            throw OAuthError(400, "invalid_grant", "The account is no longer available")
        }
        session.lastUsed = Self.micros(now)
        try await store.commitRecords([RecordWrite(PlatformRecord(kind: Session.kind, id: id,
            content: String(decoding: try JSONEncoder().encode(session), as: UTF8.self), expires: record.expires))])
        return try await issue(account, now: now)
    }

    /// Ends a session (logout).
    public func logout(_ token: String) async throws {
        try await store.commitRecords([.delete(kind: Session.kind, id: ClientRegistry.sha256Hex(token))])
    }

    func issue(_ account: UserAccount, now: Date) async throws -> [String: any Sendable] {
        let scopes = SMARTScope.parseList(account.scopes)
        let principal = Principal(kind: .user, subject: account.username, role: account.role, facility: account.facility,
                                  scopes: scopes, patient: account.patient)
        let (token, expiresIn) = try await tokens.issue(for: principal, now: now)
        return ["access_token": token, "token_type": "bearer", "expires_in": expiresIn, "scope": SMARTScope.format(scopes)]
    }

    struct Session: Codable {
        var username: String
        var created: Int64
        var lastUsed: Int64
        static let kind = "session"
    }

    static let decoy = (try? PasswordHash.make("decoy")) ?? ""

    static func micros(_ date: Date) -> Int64 { Int64(date.timeIntervalSince1970 * 1_000_000) }

    static func record(_ account: UserAccount) throws -> RecordWrite {
        RecordWrite(PlatformRecord(kind: UserAccount.kind, id: account.username,
                                   content: String(decoding: try JSONEncoder().encode(account), as: UTF8.self)))
    }

    static func save(_ account: UserAccount, in store: any ResourceStore, mode: RecordWrite.Mode = .put) async throws {
        let r = try record(account)
        try await store.commitRecords([RecordWrite(r.record, mode: mode)])
    }
}
