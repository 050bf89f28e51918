/// A Chinese resident identity number (公民身份号码, GB 11643-1999): 6-digit region code,
/// 8-digit birth date, 3-digit sequence (odd: male, even: female) and an ISO 7064 MOD 11-2 check
/// character. 15-digit numbers (issued before 1999, no century, no check) are upgraded to 18.
public struct ResidentID: Sendable, Hashable, CustomStringConvertible {
    /// The 18 characters, with an uppercase `X` check character.
    public let value: String

    /// Why a string is not a valid resident ID number.
    public enum Problem: Error, Sendable, Equatable {
        case length(Int)
        case characters
        case birthDate
        case checkCharacter(expected: Character)
    }

    /// Parses and validates `raw` (spaces ignored, lowercase `x` accepted, 15 digits upgraded).
    public init(_ raw: String) throws(Problem) {
        let compact = raw.filter { $0 != " " && $0 != "-" }.uppercased()
        var chars = Array(compact)
        switch chars.count {
        case 18:
            guard chars.prefix(17).allSatisfy(\.isASCIIDigit), chars[17].isASCIIDigit || chars[17] == "X" else { throw .characters }
        case 15:
            guard chars.allSatisfy(\.isASCIIDigit) else { throw .characters }
            // Pre-1999 numbers carry a two-digit year of the 1900s; the check character is new.
            chars.insert(contentsOf: ["1", "9"], at: 6)
            chars.append(Self.checkCharacter(chars))
        default:
            throw .length(chars.count)
        }
        guard Self.birthDate(of: chars) != nil else { throw .birthDate }
        let expected = Self.checkCharacter(chars)
        guard chars[17] == expected else { throw .checkCharacter(expected: expected) }
        value = String(chars)
    }

    public var description: String { value }

    /// Birth date as `YYYY-MM-DD` (FHIR date).
    public var birthDate: String {
        let c = Array(value)
        return String(c[6..<10]) + "-" + String(c[10..<12]) + "-" + String(c[12..<14])
    }

    /// FHIR administrative gender from the sequence number's parity.
    public var gender: String {
        (Array(value)[16].wholeNumberValue ?? 0) % 2 == 1 ? "male" : "female"
    }

    /// The region code of registration (province 2, city 4, county 6 digits).
    public var region: String { String(value.prefix(6)) }

    static let weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    static let checkCharacters: [Character] = ["1", "0", "X", "9", "8", "7", "6", "5", "4", "3", "2"]

    /// The ISO 7064 MOD 11-2 check character of the first 17 digits.
    static func checkCharacter(_ chars: [Character]) -> Character {
        var sum = 0
        for i in 0..<17 { sum += (chars[i].wholeNumberValue ?? 0) * weights[i] }
        return checkCharacters[sum % 11]
    }

    /// The birth date digits as a real calendar date (1900 onwards, not in the far future), or nil.
    static func birthDate(of chars: [Character]) -> (year: Int, month: Int, day: Int)? {
        guard let year = Int(String(chars[6..<10])), let month = Int(String(chars[10..<12])), let day = Int(String(chars[12..<14])),
              (1880...2100).contains(year), (1...12).contains(month) else { return nil }
        let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
        let days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1]
        return (1...days).contains(day) ? (year, month, day) : nil
    }
}

extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
