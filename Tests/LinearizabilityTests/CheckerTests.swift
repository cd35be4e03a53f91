import Linearizability
import Testing

@Suite("Linearizability checker")
struct CheckerTests {
    typealias Op = Operation<RegisterInput, RegisterOutput>
    let checker = LinearizabilityChecker(model: RegisterModel())

    @Test("A sequential history is linearizable")
    func sequential() {
        let history = [
            Op(client: 1, input: .put("a"), output: .ok, callTime: 0, returnTime: 1),
            Op(client: 2, input: .get, output: .value("a"), callTime: 2, returnTime: 3),
            Op(client: 1, input: .compareAndSet(expected: "a", new: "b"), output: .ok, callTime: 4, returnTime: 5),
            Op(client: 2, input: .get, output: .value("b"), callTime: 6, returnTime: 7),
        ]
        #expect(checker.check(history) == .linearizable)
    }

    @Test("A stale read after a completed write is rejected")
    func staleReadRejected() {
        let history = [
            Op(client: 1, input: .put("a"), output: .ok, callTime: 0, returnTime: 1),
            Op(client: 2, input: .get, output: .value(nil), callTime: 2, returnTime: 3),
        ]
        #expect(checker.check(history) == .notLinearizable)
    }

    @Test("A read concurrent with a write may see either value")
    func concurrentReadAccepted() {
        for seen in [nil, "a"] as [String?] {
            let history = [
                Op(client: 1, input: .put("a"), output: .ok, callTime: 0, returnTime: 10),
                Op(client: 2, input: .get, output: .value(seen), callTime: 2, returnTime: 3),
            ]
            #expect(checker.check(history) == .linearizable)
        }
    }

    @Test("Two successful compare-and-sets from the same value cannot both win")
    func doubleCompareAndSetRejected() {
        let history = [
            Op(client: 1, input: .put("0"), output: .ok, callTime: 0, returnTime: 1),
            Op(client: 2, input: .compareAndSet(expected: "0", new: "1"), output: .ok, callTime: 2, returnTime: 6),
            Op(client: 3, input: .compareAndSet(expected: "0", new: "2"), output: .ok, callTime: 3, returnTime: 7),
        ]
        #expect(checker.check(history) == .notLinearizable)
    }

    @Test("A write with an unknown outcome may or may not have happened, but not both")
    func unknownOutcome() {
        let write = Op(client: 1, input: .put("x"), output: nil, callTime: 0, returnTime: nil)
        let sawIt = Op(client: 2, input: .get, output: .value("x"), callTime: 5, returnTime: 6)
        let missedIt = Op(client: 2, input: .get, output: .value(nil), callTime: 5, returnTime: 6)
        #expect(checker.check([write, sawIt]) == .linearizable)
        #expect(checker.check([write, missedIt]) == .linearizable)
        let thenMissed = Op(client: 3, input: .get, output: .value(nil), callTime: 7, returnTime: 8)
        #expect(checker.check([write, sawIt, thenMissed]) == .notLinearizable)
    }

    @Test("A value nobody wrote is rejected")
    func phantomValueRejected() {
        let history = [
            Op(client: 1, input: .put("a"), output: .ok, callTime: 0, returnTime: 5),
            Op(client: 2, input: .get, output: .value("z"), callTime: 1, returnTime: 6),
        ]
        #expect(checker.check(history) == .notLinearizable)
    }

    @Test("Random histories of a real register with overlapping operations are accepted")
    func randomLinearizableHistories() {
        var generator = SplitMix(seed: 7)
        for _ in 0..<50 {
            var value: String?
            var history: [Op] = []
            var time: UInt64 = 0
            for step in 0..<60 {
                // Each operation takes effect at `time`; its interval stretches around it.
                time += 10
                let call = time - generator.next(below: 9)
                let returned = time + generator.next(below: 25)
                let client = Int(generator.next(below: 5))
                switch generator.next(below: 3) {
                case 0:
                    history.append(Op(client: client, input: .get, output: .value(value), callTime: call, returnTime: returned))
                case 1:
                    value = "v\(step)"
                    history.append(Op(client: client, input: .put(value!), output: .ok, callTime: call, returnTime: returned))
                default:
                    let expected: String? = generator.next(below: 2) == 0 ? value : "nope"
                    let succeeded = expected == value
                    if succeeded { value = "c\(step)" }
                    history.append(Op(client: client, input: .compareAndSet(expected: expected, new: "c\(step)"), output: succeeded ? .ok : .failed, callTime: call, returnTime: returned))
                }
            }
            #expect(checker.check(history.shuffled(using: &generator)) == .linearizable)
        }
    }

    @Test("Histories are checked per key")
    func perKey() {
        var history = KeyValueHistory()
        history.record(key: "a", Op(client: 1, input: .put("1"), output: .ok, callTime: 0, returnTime: 1))
        history.record(key: "b", Op(client: 1, input: .get, output: .value(nil), callTime: 2, returnTime: 3))
        #expect(history.check().result == .linearizable)
        history.record(key: "a", Op(client: 2, input: .get, output: .value(nil), callTime: 4, returnTime: 5))
        let verdict = history.check()
        #expect(verdict.result == .notLinearizable)
        #expect(verdict.key == "a")
    }
}

struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(below bound: UInt64) -> UInt64 { next() % bound }
}
