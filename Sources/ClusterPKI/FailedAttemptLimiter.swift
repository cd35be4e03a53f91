/// Counts failed attempts (wrong join tokens) per source and refuses a source that failed too
/// often lately, so that guessing a token's secret over the network is slowed to a crawl.
///
/// A pure value: the caller passes the time in, so tests drive it with a fake clock. Memory is
/// bounded by `sourcesMax`: past it, the source whose window began earliest is forgotten.
public struct FailedAttemptLimiter: Sendable {
    /// Failures a source may have inside one window before it is refused.
    public let failuresMax: Int
    /// Length of the window that failures are counted in, and of the refusal after it fills.
    public let windowSeconds: Double
    /// Sources tracked at once.
    public let sourcesMax: Int

    struct Record: Sendable {
        var windowStart: Double
        var failures: Int
    }

    private var records: [String: Record] = [:]

    public init(failuresMax: Int = 5, windowSeconds: Double = 60, sourcesMax: Int = 4096) {
        precondition(failuresMax > 0 && windowSeconds > 0 && sourcesMax > 0, "limiter limits must be positive")
        self.failuresMax = failuresMax
        self.windowSeconds = windowSeconds
        self.sourcesMax = sourcesMax
    }

    /// Seconds until `source` may try again, or nil when it may try now.
    public mutating func retryAfter(source: String, now: Double) -> Double? {
        guard let record = records[source] else { return nil }
        let windowEnd = record.windowStart + windowSeconds
        if now >= windowEnd {
            records[source] = nil
            return nil
        }
        return record.failures >= failuresMax ? windowEnd - now : nil
    }

    /// Records a failed attempt by `source`.
    public mutating func recordFailure(source: String, now: Double) {
        if var record = records[source], now < record.windowStart + windowSeconds {
            record.failures += 1
            records[source] = record
            return
        }
        if records[source] == nil, records.count >= sourcesMax {
            // Forget expired windows first, then the oldest, so the table never grows past the cap.
            records = records.filter { now < $0.value.windowStart + windowSeconds }
            if records.count >= sourcesMax, let oldest = records.min(by: { $0.value.windowStart < $1.value.windowStart })?.key {
                records[oldest] = nil
            }
        }
        records[source] = Record(windowStart: now, failures: 1)
    }

    /// How many sources are tracked (for tests of boundedness).
    public var trackedSources: Int { records.count }
}

/// Compares two byte sequences in time that depends only on their lengths, not on where they
/// first differ (secrets and their digests must not leak through timing).
public func constantTimeEqual(_ left: [UInt8], _ right: [UInt8]) -> Bool {
    guard left.count == right.count else { return false }
    var difference: UInt8 = 0
    for index in left.indices { difference |= left[index] ^ right[index] }
    return difference == 0
}
