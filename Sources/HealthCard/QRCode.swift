/// A QR code (ISO/IEC 18004) in byte mode, versions 1–10, error-correction levels L/M/Q/H, the mask
/// chosen by the standard's penalty score. Written for the e-health card's codes (about 100
/// characters); `png` and `svg` render it.
public struct QRCode: Sendable, Equatable {
    public enum Level: Int, Sendable, CaseIterable {
        case low, medium, quartile, high

        /// The two format-information bits (L 01, M 00, Q 11, H 10).
        var formatBits: Int { [1, 0, 3, 2][rawValue] }
    }

    public enum EncodingError: Error, Sendable, Equatable {
        /// The text does not fit version 10 at this level.
        case tooLong(bytes: Int, level: Level)
    }

    public let version: Int
    public let level: Level
    public let mask: Int
    /// `modules[y][x]`: true is dark.
    public let modules: [[Bool]]
    public var size: Int { modules.count }

    /// Error-correction blocks per version (1...10) and level (L, M, Q, H): EC codewords per block,
    /// then (block count, data codewords per block) for each of the one or two groups.
    static let blocks: [[(ec: Int, groups: [(count: Int, data: Int)])]] = [
        [(7, [(1, 19)]), (10, [(1, 16)]), (13, [(1, 13)]), (17, [(1, 9)])],
        [(10, [(1, 34)]), (16, [(1, 28)]), (22, [(1, 22)]), (28, [(1, 16)])],
        [(15, [(1, 55)]), (26, [(1, 44)]), (18, [(2, 17)]), (22, [(2, 13)])],
        [(20, [(1, 80)]), (18, [(2, 32)]), (26, [(2, 24)]), (16, [(4, 9)])],
        [(26, [(1, 108)]), (24, [(2, 43)]), (18, [(2, 15), (2, 16)]), (22, [(2, 11), (2, 12)])],
        [(18, [(2, 68)]), (16, [(4, 27)]), (24, [(4, 19)]), (28, [(4, 15)])],
        [(20, [(2, 78)]), (18, [(4, 31)]), (18, [(2, 14), (4, 15)]), (26, [(4, 13), (1, 14)])],
        [(24, [(2, 97)]), (22, [(2, 38), (2, 39)]), (22, [(4, 18), (2, 19)]), (26, [(4, 14), (2, 15)])],
        [(30, [(2, 116)]), (22, [(3, 36), (2, 37)]), (20, [(4, 16), (4, 17)]), (24, [(4, 12), (4, 13)])],
        [(18, [(2, 68), (2, 69)]), (26, [(4, 43), (1, 44)]), (24, [(6, 19), (2, 20)]), (28, [(6, 15), (2, 16)])],
    ]
    /// Centre coordinates of the alignment patterns per version.
    static let alignment: [[Int]] = [[], [6, 18], [6, 22], [6, 26], [6, 30], [6, 34], [6, 22, 38], [6, 24, 42], [6, 26, 46], [6, 28, 50]]

    static func dataCapacity(version: Int, level: Level) -> Int {
        blocks[version - 1][level.rawValue].groups.reduce(0) { $0 + $1.count * $1.data }
    }

    /// The smallest version that holds `text` (UTF-8) at `level`.
    public init(_ text: String, level: Level = .medium) throws(EncodingError) {
        try self.init(bytes: Array(text.utf8), level: level)
    }

    public init(bytes: [UInt8], level: Level = .medium) throws(EncodingError) {
        guard let version = (1...10).first(where: { v in
            let countBits = v < 10 ? 8 : 16
            return 4 + countBits + 8 * bytes.count <= 8 * Self.dataCapacity(version: v, level: level)
        }) else { throw .tooLong(bytes: bytes.count, level: level) }
        self.version = version
        self.level = level
        let codewords = Self.codewords(bytes, version: version, level: level)
        var grid = Grid(version: version)
        grid.drawFunctionPatterns()
        grid.placeData(codewords)
        // The mask with the lowest penalty (format information drawn, as the standard scores it).
        var best: (penalty: Int, mask: Int, modules: [[Bool]])?
        for mask in 0..<8 {
            var candidate = grid
            candidate.applyMask(mask)
            candidate.drawFormat(level: level, mask: mask)
            let penalty = candidate.penalty()
            if best == nil || penalty < best!.penalty { best = (penalty, mask, candidate.modules) }
        }
        self.mask = best!.mask
        self.modules = best!.modules
    }

    // MARK: codewords

    /// Data codewords (mode, count, bytes, terminator, padding), split into blocks with their
    /// Reed–Solomon codewords, interleaved.
    static func codewords(_ bytes: [UInt8], version: Int, level: Level) -> [UInt8] {
        let capacity = dataCapacity(version: version, level: level)
        var bits = BitBuffer()
        bits.append(0b0100, count: 4)
        bits.append(bytes.count, count: version < 10 ? 8 : 16)
        for b in bytes { bits.append(Int(b), count: 8) }
        bits.append(0, count: min(4, 8 * capacity - bits.count))
        bits.append(0, count: (8 - bits.count % 8) % 8)
        var data = bits.bytes
        var pad: UInt8 = 0xEC
        while data.count < capacity { data.append(pad); pad = pad == 0xEC ? 0x11 : 0xEC }

        let spec = blocks[version - 1][level.rawValue]
        var dataBlocks: [[UInt8]] = []
        var offset = 0
        for group in spec.groups {
            for _ in 0..<group.count {
                dataBlocks.append(Array(data[offset..<(offset + group.data)]))
                offset += group.data
            }
        }
        let generator = ReedSolomon.generator(degree: spec.ec)
        let ecBlocks = dataBlocks.map { ReedSolomon.remainder($0, generator: generator) }
        var out: [UInt8] = []
        for i in 0..<(dataBlocks.map(\.count).max() ?? 0) { for block in dataBlocks where i < block.count { out.append(block[i]) } }
        for i in 0..<spec.ec { for block in ecBlocks { out.append(block[i]) } }
        return out
    }
}

struct BitBuffer {
    var bytes: [UInt8] = []
    var count = 0

    mutating func append(_ value: Int, count n: Int) {
        for i in stride(from: n - 1, through: 0, by: -1) {
            if count % 8 == 0 { bytes.append(0) }
            if (value >> i) & 1 == 1 { bytes[count / 8] |= 0x80 >> UInt8(count % 8) }
            count += 1
        }
    }
}

/// Reed–Solomon over GF(256) with the QR polynomial x⁸ + x⁴ + x³ + x² + 1.
enum ReedSolomon {
    static func multiply(_ a: UInt8, _ b: UInt8) -> UInt8 {
        var result: UInt8 = 0, a = a, b = b
        while b != 0 {
            if b & 1 == 1 { result ^= a }
            let carry = a & 0x80
            a <<= 1
            if carry != 0 { a ^= 0x1D }
            b >>= 1
        }
        return result
    }

    /// The generator polynomial ∏ (x − αⁱ), i < degree, without its leading 1 (highest power first).
    static func generator(degree: Int) -> [UInt8] {
        var poly = [UInt8](repeating: 0, count: degree)
        poly[degree - 1] = 1
        var root: UInt8 = 1
        for _ in 0..<degree {
            for j in 0..<degree {
                poly[j] = multiply(poly[j], root)
                if j + 1 < degree { poly[j] ^= poly[j + 1] }
            }
            root = multiply(root, 0x02)
        }
        return poly
    }

    static func remainder(_ data: [UInt8], generator: [UInt8]) -> [UInt8] {
        var result = [UInt8](repeating: 0, count: generator.count)
        for b in data {
            let factor = b ^ result.removeFirst()
            result.append(0)
            for i in 0..<result.count { result[i] ^= multiply(generator[i], factor) }
        }
        return result
    }
}

/// The module grid while a code is built: which modules are function patterns, and their colours.
struct Grid {
    let version: Int
    let size: Int
    var modules: [[Bool]]
    var isFunction: [[Bool]]

    init(version: Int) {
        self.version = version
        size = 17 + 4 * version
        modules = Array(repeating: Array(repeating: false, count: size), count: size)
        isFunction = modules
    }

    mutating func set(_ x: Int, _ y: Int, _ dark: Bool) {
        modules[y][x] = dark
        isFunction[y][x] = true
    }

    mutating func drawFunctionPatterns() {
        for i in 0..<size {
            set(6, i, i % 2 == 0)
            set(i, 6, i % 2 == 0)
        }
        for (cx, cy) in [(3, 3), (size - 4, 3), (3, size - 4)] {
            for dy in -4...4 {
                for dx in -4...4 {
                    let x = cx + dx, y = cy + dy
                    guard (0..<size).contains(x), (0..<size).contains(y) else { continue }
                    let d = max(abs(dx), abs(dy))
                    set(x, y, d != 2 && d != 4)
                }
            }
        }
        let centres = QRCode.alignment[version - 1]
        for (i, cx) in centres.enumerated() {
            for (j, cy) in centres.enumerated() {
                // Not over the finder patterns.
                if (i == 0 && j == 0) || (i == 0 && j == centres.count - 1) || (i == centres.count - 1 && j == 0) { continue }
                for dy in -2...2 { for dx in -2...2 { set(cx + dx, cy + dy, max(abs(dx), abs(dy)) != 1) } }
            }
        }
        // Reserve the format areas (drawn per mask) and the dark module.
        drawFormat(level: .medium, mask: 0)
        if version >= 7 {
            var rem = version
            for _ in 0..<12 { rem = (rem << 1) ^ ((rem >> 11) * 0x1F25) }
            let bits = version << 12 | rem
            for i in 0..<18 {
                let dark = (bits >> i) & 1 == 1
                let a = size - 11 + i % 3, b = i / 3
                set(a, b, dark)
                set(b, a, dark)
            }
        }
    }

    /// Format information: level and mask, BCH(15,5), XOR 0x5412, in both copies.
    mutating func drawFormat(level: QRCode.Level, mask: Int) {
        let data = level.formatBits << 3 | mask
        var rem = data
        for _ in 0..<10 { rem = (rem << 1) ^ ((rem >> 9) * 0x537) }
        let bits = (data << 10 | rem) ^ 0x5412
        func bit(_ i: Int) -> Bool { (bits >> i) & 1 == 1 }
        for i in 0..<6 { set(8, i, bit(i)) }
        set(8, 7, bit(6))
        set(8, 8, bit(7))
        set(7, 8, bit(8))
        for i in 9..<15 { set(14 - i, 8, bit(i)) }
        for i in 0..<8 { set(size - 1 - i, 8, bit(i)) }
        for i in 8..<15 { set(8, size - 15 + i, bit(i)) }
        set(8, size - 8, true)
    }

    /// Codewords in the zig-zag order: pairs of columns from the right, up then down, skipping the
    /// vertical timing column; remainder modules stay light.
    mutating func placeData(_ codewords: [UInt8]) {
        var i = 0
        let total = codewords.count * 8
        var right = size - 1
        while right >= 1 {
            if right == 6 { right = 5 }
            for vertical in 0..<size {
                for j in 0..<2 {
                    let x = right - j
                    let upward = (right + 1) & 2 == 0
                    let y = upward ? size - 1 - vertical : vertical
                    guard !isFunction[y][x], i < total else { continue }
                    modules[y][x] = (codewords[i >> 3] >> (7 - UInt8(i & 7))) & 1 == 1
                    i += 1
                }
            }
            right -= 2
        }
    }

    mutating func applyMask(_ mask: Int) {
        for y in 0..<size {
            for x in 0..<size where !isFunction[y][x] {
                let invert: Bool
                switch mask {
                case 0: invert = (x + y) % 2 == 0
                case 1: invert = y % 2 == 0
                case 2: invert = x % 3 == 0
                case 3: invert = (x + y) % 3 == 0
                case 4: invert = (x / 3 + y / 2) % 2 == 0
                case 5: invert = x * y % 2 + x * y % 3 == 0
                case 6: invert = (x * y % 2 + x * y % 3) % 2 == 0
                default: invert = ((x + y) % 2 + x * y % 3) % 2 == 0
                }
                if invert { modules[y][x].toggle() }
            }
        }
    }

    /// The standard's four penalty rules: runs of five or more, 2×2 blocks, finder-like patterns,
    /// and the distance of the dark share from 50 %.
    func penalty() -> Int {
        var score = 0
        let lines = modules + (0..<size).map { x in modules.map { $0[x] } }
        let finder: [Bool] = [true, false, true, true, true, false, true]
        for line in lines {
            var run = 1
            for i in 1..<size {
                if line[i] == line[i - 1] {
                    run += 1
                } else {
                    if run >= 5 { score += 3 + run - 5 }
                    run = 1
                }
            }
            if run >= 5 { score += 3 + run - 5 }
            // 1:1:3:1:1 with four light modules before or after (the quiet zone counts as light).
            func light(_ i: Int) -> Bool { i < 0 || i >= size || !line[i] }
            for core in 0...(size - 7) where (0..<7).allSatisfy({ line[core + $0] == finder[$0] }) {
                if (1...4).allSatisfy({ light(core - $0) }) || (0..<4).allSatisfy({ light(core + 7 + $0) }) { score += 40 }
            }
        }
        for y in 0..<(size - 1) {
            for x in 0..<(size - 1) {
                let c = modules[y][x]
                if modules[y][x + 1] == c && modules[y + 1][x] == c && modules[y + 1][x + 1] == c { score += 3 }
            }
        }
        let dark = modules.reduce(0) { $0 + $1.filter { $0 }.count }
        let total = size * size
        score += 10 * (abs(dark * 20 - total * 10) / total)
        return score
    }
}
