/// A parsed FHIR date, dateTime or instant with its precision. FHIR dates are
/// ranges: `2024-03` means all of March 2024, so every value has a `low` and an
/// exclusive `high` bound in microseconds since the Unix epoch (UTC). Values
/// without a time zone (only possible without a time) are taken as UTC.
public struct FHIRDateTime: Sendable, Equatable, Comparable {
    public enum Kind: Sendable { case date, dateTime, instant }
    public enum Precision: Int, Sendable, Comparable {
        case year, month, day, minute, second, fraction
        public static func < (a: Precision, b: Precision) -> Bool { a.rawValue < b.rawValue }
    }

    public let precision: Precision
    /// Inclusive lower bound, microseconds since 1970-01-01T00:00:00Z.
    public let low: Int64
    /// Exclusive upper bound.
    public let high: Int64

    public static func < (a: FHIRDateTime, b: FHIRDateTime) -> Bool { a.low < b.low }

    public static func parse(_ s: String, kind: Kind) -> FHIRDateTime? {
        let b = Array(s.utf8)
        var i = 0
        func digits(_ n: Int) -> Int? { readDigits(b, &i, n) }
        func expect(_ c: Character) -> Bool {
            guard i < b.count, b[i] == c.asciiValue! else { return false }
            i += 1
            return true
        }
        guard let year = digits(4), year >= 1 else { return nil }
        if i == b.count {
            guard kind != .instant else { return nil }
            return make(year: year, month: 1, day: 1, precision: .year, seconds: 0, offset: 0, fractionMicros: 0)
        }
        guard expect("-"), let month = digits(2), (1...12).contains(month) else { return nil }
        if i == b.count {
            guard kind != .instant else { return nil }
            return make(year: year, month: month, day: 1, precision: .month, seconds: 0, offset: 0, fractionMicros: 0)
        }
        guard expect("-"), let day = digits(2), day >= 1, day <= daysInMonth(year, month) else { return nil }
        if i == b.count {
            guard kind != .instant else { return nil }
            return make(year: year, month: month, day: day, precision: .day, seconds: 0, offset: 0, fractionMicros: 0)
        }
        guard kind != .date, expect("T") else { return nil }
        guard let time = parseTime(b[i...], requireZone: true) else { return nil }
        if kind == .instant && time.precision == .minute { return nil }
        return make(year: year, month: month, day: day, precision: time.precision,
                    seconds: time.seconds, offset: time.offsetSeconds, fractionMicros: time.fractionMicros,
                    fractionDigits: time.fractionDigits)
    }

    /// Reads exactly `n` ASCII digits at `i`, advancing past them.
    static func readDigits(_ b: [UInt8], _ i: inout Int, _ n: Int) -> Int? {
        guard i + n <= b.count else { return nil }
        var v = 0
        for k in 0..<n {
            let c = b[i + k]
            guard c >= 0x30 && c <= 0x39 else { return nil }
            v = v * 10 + Int(c - 0x30)
        }
        i += n
        return v
    }

    struct Time {
        var seconds: Int
        var precision: Precision
        var fractionMicros: Int64
        var fractionDigits: Int
        var offsetSeconds: Int
    }

    /// Parses `hh:mm:ss[.f+]` and, when `requireZone`, a trailing `Z` or `±hh:mm`.
    static func parseTime(_ s: ArraySlice<UInt8>, requireZone: Bool = false) -> Time? {
        let b = Array(s)
        var i = 0
        func digits(_ n: Int) -> Int? { readDigits(b, &i, n) }
        guard let h = digits(2), h <= 23, i < b.count, b[i] == 0x3A else { return nil }
        i += 1
        guard let m = digits(2), m <= 59, i < b.count, b[i] == 0x3A else { return nil }
        i += 1
        guard let sec = digits(2), sec <= 60 else { return nil }
        var precision = Precision.second
        var micros: Int64 = 0
        var fractionDigits = 0
        if i < b.count && b[i] == 0x2E {
            i += 1
            let start = i
            while i < b.count && b[i] >= 0x30 && b[i] <= 0x39 {
                if i - start < 6 { micros = micros * 10 + Int64(b[i] - 0x30) }
                i += 1
            }
            fractionDigits = i - start
            guard fractionDigits > 0 else { return nil }
            for _ in min(fractionDigits, 6)..<6 { micros *= 10 }
            precision = .fraction
        }
        var offset = 0
        if requireZone {
            guard i < b.count else { return nil }
            if b[i] == UInt8(ascii: "Z") {
                i += 1
            } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let oh = digits(2), i < b.count, b[i] == 0x3A else { return nil }
                i += 1
                guard let om = digits(2), om <= 59, oh < 14 || (oh == 14 && om == 0) else { return nil }
                offset = sign * (oh * 3600 + om * 60)
            } else {
                return nil
            }
        }
        guard i == b.count else { return nil }
        return Time(seconds: h * 3600 + m * 60 + min(sec, 59), precision: precision,
                    fractionMicros: micros, fractionDigits: fractionDigits, offsetSeconds: offset)
    }

    private static func make(year: Int, month: Int, day: Int, precision: Precision, seconds: Int,
                             offset: Int, fractionMicros: Int64, fractionDigits: Int = 0) -> FHIRDateTime {
        let days = daysFromCivil(year, month, day)
        let low = (Int64(days) * 86_400 + Int64(seconds - offset)) * 1_000_000 + fractionMicros
        let high: Int64
        switch precision {
        case .year: high = Int64(daysFromCivil(year + 1, 1, 1)) * 86_400_000_000
        case .month:
            let (ny, nm) = month == 12 ? (year + 1, 1) : (year, month + 1)
            high = Int64(daysFromCivil(ny, nm, 1)) * 86_400_000_000
        case .day: high = low + 86_400_000_000
        case .minute: high = low + 60_000_000
        case .second: high = low + 1_000_000
        case .fraction:
            var step: Int64 = 1
            for _ in min(fractionDigits, 6)..<6 { step *= 10 }
            high = low + step
        }
        return FHIRDateTime(precision: precision, low: low, high: high)
    }

    public static func daysInMonth(_ year: Int, _ month: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
    public static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// Formats microseconds since the epoch as an instant with millisecond precision: `2024-03-05T10:20:30.123Z`.
    public static func formatInstant(micros: Int64) -> String {
        let totalSeconds = micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000
        let fraction = micros - totalSeconds * 1_000_000
        var days = Int(totalSeconds / 86_400)
        var secs = Int(totalSeconds % 86_400)
        if secs < 0 { secs += 86_400; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        func pad(_ v: Int, _ n: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(y, 4))-\(pad(m, 2))-\(pad(d, 2))T\(pad(secs / 3600, 2)):\(pad(secs / 60 % 60, 2)):\(pad(secs % 60, 2)).\(pad(Int(fraction / 1000), 3))Z"
    }

    /// Formats microseconds since the epoch as an HTTP date (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
    public static func formatHTTPDate(micros: Int64) -> String {
        let seconds = Int(micros >= 0 ? micros / 1_000_000 : (micros - 999_999) / 1_000_000)
        var days = seconds / 86_400
        var secs = seconds % 86_400
        if secs < 0 { secs += 86_400; days -= 1 }
        let (y, m, d) = civilFromDays(days)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let wd = Self.weekdays[((days % 7) + 7) % 7]
        return "\(wd), \(two(d)) \(Self.months[m - 1]) \(y) \(two(secs / 3600)):\(two(secs / 60 % 60)):\(two(secs % 60)) GMT"
    }

    private static let weekdays = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// `YYYYMMDDHHMMSS` of a Unix time at a fixed offset from UTC (HL7 v2 timestamps, e-health card
    /// validity times: China Standard Time is UTC+8 all year).
    public static func compactTimestamp(seconds: Int, offsetHours: Int) -> String {
        let (days, rest) = (seconds + offsetHours * 3600).quotientAndRemainder(dividingBy: 86_400)
        let (adjustedDays, secs) = rest < 0 ? (days - 1, rest + 86_400) : (days, rest)
        let (y, m, d) = civilFromDays(adjustedDays)
        func two(_ v: Int) -> String { v < 10 ? "0\(v)" : String(v) }
        return String(y) + two(m) + two(d) + two(secs / 3600) + two(secs % 3600 / 60) + two(secs % 60)
    }

    /// (year, month, day) of a day count since 1970-01-01 (inverse of `daysFromCivil`).
    public static func civilFromDays(_ z0: Int) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (m <= 2 ? y + 1 : y, m, d)
    }
}
