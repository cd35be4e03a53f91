extension Array where Element == UInt8 {
    /// Appends `value` in little-endian byte order (the on-disk formats).
    mutating func appendLittleEndian(_ value: UInt8) {
        append(value)
    }

    mutating func appendLittleEndian(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }

    mutating func appendLittleEndian(_ value: UInt64) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

/// Reads fixed-width little-endian integers from a byte range; every read answers nil rather
/// than reading past the end.
struct LittleEndianReader {
    let bytes: ArraySlice<UInt8>
    private(set) var position: Int

    init(_ bytes: ArraySlice<UInt8>) {
        self.bytes = bytes
        position = bytes.startIndex
    }

    var remaining: Int { bytes.endIndex - position }

    mutating func readUInt8() -> UInt8? {
        guard remaining >= 1 else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    mutating func readUInt32() -> UInt32? {
        guard remaining >= 4 else { return nil }
        defer { position += 4 }
        return readLittleEndianUInt32(bytes, at: position)
    }

    mutating func readUInt64() -> UInt64? {
        guard remaining >= 8 else { return nil }
        var value: UInt64 = 0
        for byte in 0..<8 { value |= UInt64(bytes[position + byte]) << UInt64(byte * 8) }
        position += 8
        return value
    }

    /// Everything not read yet.
    mutating func readRest() -> [UInt8] {
        defer { position = bytes.endIndex }
        return Array(bytes[position...])
    }
}

/// The four bytes at index `position` of `bytes` (absolute, as Array and ArraySlice index),
/// little endian. The caller checks the bounds.
func readLittleEndianUInt32<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes, at position: Int) -> UInt32 where Bytes.Index == Int {
    UInt32(bytes[position]) | UInt32(bytes[position + 1]) << 8 | UInt32(bytes[position + 2]) << 16 | UInt32(bytes[position + 3]) << 24
}
