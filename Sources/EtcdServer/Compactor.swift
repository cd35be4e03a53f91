import Logging
import NIOPosix
import ServiceLifecycle

/// Removes compacted rows in the background, a window at a time
/// (``KVStateMachine/compactStep()``), with a pause between windows so that applies and reads
/// get the state machine in between; as etcd does after a compaction. Each member runs one.
public struct Compactor: Service {
    let stateMachine: KVStateMachine
    let logger: Logger
    /// The pause between two windows while rows are left.
    let pause: Duration
    /// How often to look for a new compaction while nothing is left.
    let idleInterval: Duration

    public init(stateMachine: KVStateMachine, logger: Logger, pause: Duration = .milliseconds(5), idleInterval: Duration = .milliseconds(100)) {
        self.stateMachine = stateMachine
        self.logger = logger
        self.pause = pause
        self.idleInterval = idleInterval
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    let stateMachine = self.stateMachine
                    // SQLite work off the cooperative threads.
                    let more: Bool
                    do {
                        more = try await NIOThreadPool.singleton.runIfActive { try stateMachine.compactStep() }
                    } catch is CancellationError {
                        throw CancellationError()
                    } catch {
                        logger.error("compaction step failed; retrying in a second", metadata: ["error": "\(error)"])
                        try await Task.sleep(for: .seconds(1))
                        continue
                    }
                    try await Task.sleep(for: more ? pause : idleInterval)
                }
            }
        } catch is CancellationError {
        }
    }
}
