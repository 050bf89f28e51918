#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Finding a marker in stored bytes without parsing them (the hot read paths look for a few
/// fixed markers: a patient reference, a facility source, an encrypted value).
public enum ByteSearch {
    /// The offset just past the first occurrence of `marker`, or nil. `anchor` names a byte of the
    /// marker that is rare in the haystack (scanned for with `memchr`).
    public static func find(_ marker: [UInt8], anchor: Int, in bytes: UnsafeRawBufferPointer) -> Int? {
        guard let base = bytes.baseAddress, bytes.count >= marker.count else { return nil }
        return marker.withUnsafeBytes { m -> Int? in
            var offset = anchor
            let end = bytes.count - marker.count + anchor  // last place the anchor byte can be
            while offset <= end {
                guard let hit = memchr(base + offset, Int32(marker[anchor]), end - offset + 1) else { return nil }
                let start = base.distance(to: UnsafeRawPointer(hit)) - anchor
                if memcmp(base + start, m.baseAddress!, marker.count) == 0 { return start + marker.count }
                offset = start + anchor + 1
            }
            return nil
        }
    }
}
