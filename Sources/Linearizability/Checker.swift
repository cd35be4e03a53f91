/// One operation of a recorded history: what a client asked, what it was told, and when.
///
/// `returnTime == nil` marks an operation whose outcome the client never learned (a timeout, a
/// lost connection): it may have taken effect at any point after its call, or not at all.
public struct Operation<Input: Hashable & Sendable, Output: Hashable & Sendable>: Sendable, Hashable {
    public var client: Int
    public var input: Input
    public var output: Output?
    public var callTime: UInt64
    public var returnTime: UInt64?

    public init(client: Int, input: Input, output: Output?, callTime: UInt64, returnTime: UInt64?) {
        precondition(returnTime.map { $0 >= callTime } ?? true, "an operation returns after its call")
        self.client = client
        self.input = input
        self.output = output
        self.callTime = callTime
        self.returnTime = returnTime
    }
}

/// A sequential specification: the state, and whether an operation with its observed output is
/// possible from a state (and the state after it).
public protocol SequentialModel {
    associatedtype State: Hashable
    associatedtype Input: Hashable & Sendable
    associatedtype Output: Hashable & Sendable
    var initialState: State { get }
    /// The state after `input` if `output` is what it could return from `state`; nil if not.
    /// `output == nil` (an operation with an unknown outcome) must accept any possible result.
    func step(_ state: State, _ input: Input, _ output: Output?) -> State?
}

/// The verdict on a history.
public enum LinearizabilityResult: Sendable, Equatable {
    case linearizable
    /// No order of the operations respects both real time and the model.
    case notLinearizable
    /// The search exceeded its step budget without a verdict.
    case unknown
}

/// Decides whether a history is linearizable with respect to a model: the Wing & Gong search
/// with Lowe's memoization of (set of linearized operations, state), as Porcupine does it.
/// Operations with an unknown outcome are given a return time after everything else, so they may
/// be placed anywhere after their call, including "never" (at the very end).
public struct LinearizabilityChecker<Model: SequentialModel> {
    public let model: Model
    /// Upper bound on search steps before answering `.unknown`.
    public var stepsMax: Int = 50_000_000

    public init(model: Model) {
        self.model = model
    }

    public func check(_ history: [Operation<Model.Input, Model.Output>]) -> LinearizabilityResult {
        guard !history.isEmpty else { return .linearizable }
        // Events: (time, isReturn, operation). Calls sort before returns at equal times, so
        // operations that touch in time count as concurrent.
        let endOfTime = (history.compactMap(\.returnTime).max() ?? 0) &+ (history.map(\.callTime).max() ?? 0) &+ 1
        var events: [Event] = []
        events.reserveCapacity(history.count * 2)
        for (position, operation) in history.enumerated() {
            events.append(Event(time: operation.callTime, isReturn: false, operation: position))
            events.append(Event(time: operation.returnTime ?? endOfTime, isReturn: true, operation: position))
        }
        events.sort { lhs, rhs in
            if lhs.time != rhs.time { return lhs.time < rhs.time }
            if lhs.isReturn != rhs.isReturn { return !lhs.isReturn }
            return lhs.operation < rhs.operation
        }
        // A doubly linked list over the events, with a sentinel head at index `count`.
        let count = events.count
        var next = [Int](repeating: -1, count: count + 1)
        var previous = [Int](repeating: -1, count: count + 1)
        var returnOf = [Int](repeating: -1, count: history.count)
        let head = count
        var last = head
        for (position, event) in events.enumerated() {
            next[last] = position
            previous[position] = last
            last = position
            if event.isReturn { returnOf[event.operation] = position }
        }
        func lift(_ call: Int) {
            let matching = returnOf[events[call].operation]
            for position in [call, matching] {
                next[previous[position]] = next[position]
                if next[position] != -1 { previous[next[position]] = previous[position] }
            }
        }
        func unlift(_ call: Int) {
            let matching = returnOf[events[call].operation]
            for position in [matching, call] {
                next[previous[position]] = position
                if next[position] != -1 { previous[next[position]] = position }
            }
        }

        var linearized = Bitset(count: history.count)
        var cache: Set<CacheKey> = []
        var stack: [(call: Int, state: Model.State)] = []
        var state = model.initialState
        var entry = next[head]
        var steps = 0
        while next[head] != -1 {
            steps += 1
            if steps > stepsMax { return .unknown }
            guard entry != -1 else { return .notLinearizable }
            let event = events[entry]
            if !event.isReturn {
                let operation = history[event.operation]
                if let newState = model.step(state, operation.input, operation.output) {
                    var candidate = linearized
                    candidate.insert(event.operation)
                    if cache.insert(CacheKey(linearized: candidate, state: AnyHashable(newState))).inserted {
                        stack.append((entry, state))
                        state = newState
                        linearized = candidate
                        lift(entry)
                        entry = next[head]
                        continue
                    }
                }
                entry = next[entry]
            } else {
                // An operation returned before we could place it: undo the latest choice.
                guard let top = stack.popLast() else { return .notLinearizable }
                state = top.state
                linearized.remove(events[top.call].operation)
                unlift(top.call)
                entry = next[top.call]
            }
        }
        return .linearizable
    }

    struct Event {
        var time: UInt64
        var isReturn: Bool
        var operation: Int
    }

    struct CacheKey: Hashable {
        var linearized: Bitset
        var state: AnyHashable
    }
}

/// A fixed-size set of small integers.
struct Bitset: Hashable {
    private var words: [UInt64]

    init(count: Int) {
        words = [UInt64](repeating: 0, count: (count + 63) / 64)
    }

    mutating func insert(_ value: Int) { words[value / 64] |= 1 << UInt64(value % 64) }
    mutating func remove(_ value: Int) { words[value / 64] &= ~(1 << UInt64(value % 64)) }
}
