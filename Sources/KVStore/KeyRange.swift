/// The keys a request names with etcd's `key` and `range_end`.
enum KeyRange: Hashable {
    /// `range_end` empty: just this key.
    case single([UInt8])
    /// `range_end` is `"\0"`: every key at or after this one ("from key"; with key `"\0"`, all keys).
    case from([UInt8])
    /// The half-open interval `[start, end)`.
    case interval([UInt8], [UInt8])

    init(key: [UInt8], rangeEnd: [UInt8]) {
        if rangeEnd.isEmpty {
            self = .single(key)
        } else if rangeEnd == [0] {
            self = .from(key)
        } else {
            self = .interval(key, rangeEnd)
        }
    }

    /// The SQL condition on column `key`, using parameters ?1 and ?2 (see ``bind(to:)``).
    var sqlCondition: String {
        switch self {
        case .single: "key = ?1"
        case .from: "key >= ?1"
        case .interval: "key >= ?1 AND key < ?2"
        }
    }

    func bind(to statement: SQLiteStatement) throws {
        switch self {
        case .single(let key), .from(let key):
            try statement.bind(1, key)
        case .interval(let start, let end):
            try statement.bind(1, start)
            try statement.bind(2, end)
        }
    }

    func contains(_ key: [UInt8]) -> Bool {
        switch self {
        case .single(let only): key == only
        case .from(let start): !key.lexicographicallyPrecedes(start)
        case .interval(let start, let end): !key.lexicographicallyPrecedes(start) && key.lexicographicallyPrecedes(end)
        }
    }

    /// Whether some key lies in both ranges (used for etcd's duplicate-key rule in txns).
    func intersects(_ other: KeyRange) -> Bool {
        switch (self, other) {
        case (.single(let key), _): return other.contains(key)
        case (_, .single(let key)): return contains(key)
        default:
            let (start1, end1) = bounds
            let (start2, end2) = other.bounds
            // Intervals [s1, e1) and [s2, e2) meet when each starts before the other ends.
            let firstStartsBeforeSecondEnds = end2.map { start1.lexicographicallyPrecedes($0) } ?? true
            let secondStartsBeforeFirstEnds = end1.map { start2.lexicographicallyPrecedes($0) } ?? true
            return firstStartsBeforeSecondEnds && secondStartsBeforeFirstEnds
        }
    }

    private var bounds: ([UInt8], [UInt8]?) {
        switch self {
        case .single(let key): (key, key + [0])
        case .from(let start): (start, nil)
        case .interval(let start, let end): (start, end)
        }
    }
}
