import KubeClient
import Testing

@Suite("The work queue (client-go's semantics) and per-key backoff")
struct WorkQueueTests {
    @Test("A key waits once however often it is added; one worker holds it; added while held, it comes back after done")
    func deduplicates() async {
        let queue = WorkQueue<String>()
        await queue.add("a")
        await queue.add("b")
        await queue.add("a")
        #expect(await queue.length == 2)
        let first = await queue.get()
        #expect(first == "a")
        // Added while a worker holds it: not handed to a second worker.
        await queue.add("a")
        #expect(await queue.length == 1)
        #expect(await queue.get() == "b")
        #expect(await queue.length == 0)
        await queue.done("a")
        #expect(await queue.length == 1, "done re-queues a key added while it was processed")
        #expect(await queue.get() == "a")
        await queue.done("a")
        await queue.done("b")
        #expect(await queue.length == 0)
    }

    @Test("A waiting worker gets the next key; shutting down wakes waiters with nil and drops later adds")
    func waitsAndShutsDown() async {
        let queue = WorkQueue<Int>()
        let waiter = Task { await queue.get() }
        try? await Task.sleep(for: .milliseconds(50))
        await queue.add(7)
        #expect(await waiter.value == 7)
        let idle = Task { await queue.get() }
        try? await Task.sleep(for: .milliseconds(50))
        await queue.shutDown()
        #expect(await idle.value == nil)
        await queue.add(8)
        #expect(await queue.get() == nil)
    }

    @Test("Rate-limited adds arrive after their delay; the backoff doubles per failure up to its cap and forget resets it")
    func backoff() async throws {
        var backoff = ItemBackoff<String>(base: .milliseconds(5), maximum: .seconds(1))
        let delays = (0..<10).map { _ in backoff.next(for: "k") }
        #expect(delays.prefix(4) == [.milliseconds(5), .milliseconds(10), .milliseconds(20), .milliseconds(40)])
        #expect(delays.last == .seconds(1), "capped")
        #expect(backoff.next(for: "other") == .milliseconds(5), "per key")
        backoff.forget("k")
        #expect(backoff.next(for: "k") == .milliseconds(5))
        for _ in 0..<200 { _ = backoff.next(for: "k") }
        #expect(backoff.next(for: "k") == .seconds(1), "no overflow after many failures")

        let queue = WorkQueue<String>(backoff: ItemBackoff(base: .milliseconds(30)))
        await queue.addRateLimited("x")
        #expect(await queue.length == 0, "not before its delay")
        #expect(await queue.failures("x") == 1)
        try await Task.sleep(for: .milliseconds(300))
        #expect(await queue.length == 1)
        await queue.forget("x")
        #expect(await queue.failures("x") == 0)
    }
}
