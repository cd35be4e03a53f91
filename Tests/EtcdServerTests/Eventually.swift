import Foundation

/// Retries `condition` every `interval` seconds for at most `seconds` of wall time; true once it
/// holds (the suites' one way of waiting for a cluster to converge).
func eventually(_ seconds: Double = 30, every interval: Double = 0.25, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if try condition() { return true }
        Thread.sleep(forTimeInterval: interval)
    }
    return try condition()
}
