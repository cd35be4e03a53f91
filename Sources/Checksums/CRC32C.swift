/// CRC-32C (Castagnoli, reflected polynomial `0x82F63B78`), the checksum of every WAL record and
/// snapshot file and of etcd's `HashKV`, computed in software with the slicing-by-8 tables.
///
/// `update(_:with:)` continues a checksum the way Go's `crc32.Update` does: the value returned for
/// the first part of the input is the seed for the next part, so records can be chained (each
/// record's checksum is seeded with the previous record's) and the chain breaks at a missing or
/// reordered record.
public enum CRC32C {
    static let polynomial: UInt32 = 0x82F6_3B78

    /// Eight tables of 256 entries, one after the other: table `k` gives the effect of a byte
    /// followed by `k` zero bytes.
    static let tables: [UInt32] = {
        var tables = [UInt32](repeating: 0, count: 8 * 256)
        for byte in 0..<256 {
            var crc = UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ polynomial : crc >> 1 }
            tables[byte] = crc
        }
        for table in 1..<8 {
            for byte in 0..<256 {
                let previous = tables[(table - 1) * 256 + byte]
                tables[table * 256 + byte] = (previous >> 8) ^ tables[Int(previous & 0xFF)]
            }
        }
        return tables
    }()

    /// The checksum of `bytes` continued from `crc` (0 for a fresh checksum).
    public static func update(_ crc: UInt32, with bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return crc }
        return tables.withUnsafeBufferPointer { table -> UInt32 in
            var value = ~crc
            var position = 0
            let count = bytes.count
            while count - position >= 8 {
                let low = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: position, as: UInt32.self)) ^ value
                let high = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: position + 4, as: UInt32.self))
                value = table[7 * 256 + Int(low & 0xFF)] ^ table[6 * 256 + Int((low >> 8) & 0xFF)]
                    ^ table[5 * 256 + Int((low >> 16) & 0xFF)] ^ table[4 * 256 + Int(low >> 24)]
                    ^ table[3 * 256 + Int(high & 0xFF)] ^ table[2 * 256 + Int((high >> 8) & 0xFF)]
                    ^ table[1 * 256 + Int((high >> 16) & 0xFF)] ^ table[Int(high >> 24)]
                position += 8
            }
            while position < count {
                value = table[Int((value ^ UInt32(base.load(fromByteOffset: position, as: UInt8.self))) & 0xFF)] ^ (value >> 8)
                position += 1
            }
            return ~value
        }
    }

    /// The checksum of `bytes` continued from `crc`.
    public static func update(_ crc: UInt32, with bytes: some Collection<UInt8>) -> UInt32 {
        if let result = bytes.withContiguousStorageIfAvailable({ update(crc, with: UnsafeRawBufferPointer($0)) }) {
            return result
        }
        return Array(bytes).withUnsafeBytes { update(crc, with: $0) }
    }

    /// The checksum of `bytes` alone.
    public static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        update(0, with: bytes)
    }

    /// A checksum fed piece by piece (byte strings, and integers as 8 big-endian bytes).
    public struct Running: Sendable {
        public private(set) var value: UInt32 = 0

        public init() {}

        public mutating func update(_ bytes: [UInt8]) {
            value = CRC32C.update(value, with: bytes)
        }

        public mutating func update(_ number: Int64) {
            let bits = UInt64(bitPattern: number)
            update((0..<8).map { UInt8(truncatingIfNeeded: bits >> (56 - 8 * $0)) })
        }
    }
}
