import NIOHTTP2
import Testing

@testable import EtcdServer

/// The lean client's HTTP/2 rate limits are off in effect but finite: NIOHTTP2 reserves room for
/// `maximumCount` timestamps per limit, and a count of `Int.max` overflowed that allocation
/// (under ThreadSanitizer the process died in `ClientBootstrap.connect`; issue 15).
@Suite("Lean client HTTP/2 configuration")
struct WireClientConfigurationTests {
    @Test("every rate limit count is small enough to reserve, and its window short enough never to trip")
    func rateLimitsAreFinite() {
        let counts = [WireClientHandler.connection.controlFrameRateLimit.maximumCount,
                      WireClientHandler.stream.streamResetFrameRateLimit.maximumCount,
                      WireClientHandler.stream.streamErrorRateLimit.maximumCount]
        #expect(counts.allSatisfy { $0 > 0 && $0 <= 1 << 16 }, "\(counts)")
        let windows = [WireClientHandler.connection.controlFrameRateLimit.windowLength,
                       WireClientHandler.stream.streamResetFrameRateLimit.windowLength,
                       WireClientHandler.stream.streamErrorRateLimit.windowLength]
        #expect(windows.allSatisfy { $0 <= .microseconds(1) }, "\(windows)")
    }
}
