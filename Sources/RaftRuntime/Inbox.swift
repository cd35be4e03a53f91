import NIOConcurrencyHelpers
import NIOCore
import Raft

/// What other threads hand a ``RaftRuntime``: proposals and reads from callers, events from the
/// peer transport. The first input into an empty inbox schedules one turn of the runtime's loop on
/// its thread; the turn takes everything that arrived until then (one wake-up per batch, however
/// many connections and peers fed it).
final class Inbox: @unchecked Sendable {
    enum Submission: Sendable {
        case proposal([UInt8], @Sendable (Result<AppliedResult, any Error>) -> Void)
        case read(@Sendable (Result<Void, any Error>) -> Void)

        func fail(_ error: any Error) {
            switch self {
            case .proposal(_, let complete): complete(.failure(error))
            case .read(let complete): complete(.failure(error))
            }
        }
    }

    private struct State {
        var submissions: [Submission] = []
        var events: [TransportEvent] = []
        var closed = false
        /// A turn is scheduled and has not yet taken the inbox.
        var scheduled = false
    }

    private let state = NIOLockedValueBox(State())
    /// Peer events beyond this many waiting are dropped (Raft retries what it lost).
    private let eventsMax: Int
    /// The runtime the turns are for; set once, right after it is initialised (this object is
    /// made before it, for its transport). Written before any input can arrive, read under the
    /// lock's ordering afterwards.
    private let ownerBox = NIOLockedValueBox<Weak>(Weak())

    private struct Weak {
        weak var runtime: RaftRuntime?
    }

    init(eventsMax: Int) {
        self.eventsMax = eventsMax
    }

    var owner: RaftRuntime? {
        get { ownerBox.withLockedValue { $0.runtime } }
        set { ownerBox.withLockedValue { $0.runtime = newValue } }
    }

    func submit(_ submission: Submission) {
        let wake = state.withLockedValue { state -> Bool? in
            guard !state.closed else { return nil }
            state.submissions.append(submission)
            return Self.schedule(&state)
        }
        switch wake {
        case nil: submission.fail(RuntimeError.stopped)
        case true?: owner?.scheduleTurn()
        case false?: break
        }
    }

    /// Queues `event`; false when it was dropped (the inbox is full or closed).
    @discardableResult
    func deliver(_ event: TransportEvent) -> Bool {
        let (queued, wake) = state.withLockedValue { state -> (Bool, Bool) in
            guard !state.closed, state.events.count < eventsMax else { return (false, false) }
            state.events.append(event)
            return (true, Self.schedule(&state))
        }
        if wake { owner?.scheduleTurn() }
        return queued
    }

    /// Schedules a turn (unless one is already waiting to take the inbox).
    func wake() {
        if state.withLockedValue({ Self.schedule(&$0) }) { owner?.scheduleTurn() }
    }

    private static func schedule(_ state: inout State) -> Bool {
        guard !state.scheduled else { return false }
        state.scheduled = true
        return true
    }

    /// Everything waiting; inputs after this schedule the next turn.
    func take() -> (submissions: [Submission], events: [TransportEvent]) {
        state.withLockedValue { state in
            defer {
                state.submissions = []
                state.events = []
                state.scheduled = false
            }
            return (state.submissions, state.events)
        }
    }

    /// Refuses everything from now on and returns the submissions still waiting (to fail them).
    func close() -> [Submission] {
        state.withLockedValue { state in
            defer { state.submissions = [] }
            state.closed = true
            state.events = []
            return state.submissions
        }
    }
}
