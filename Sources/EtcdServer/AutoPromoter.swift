import Logging
import Raft
import ServiceLifecycle

/// On the leader: promotes learners that have caught up while there are fewer voters than
/// `votersMax` (the first control-plane nodes become voters; later ones stay learners).
public struct AutoPromoter: Service {
    let member: StoreMember
    let votersMax: Int
    let logger: Logger

    public init(member: StoreMember, votersMax: Int, logger: Logger) {
        self.member = member
        self.votersMax = votersMax
        self.logger = logger
    }

    public func run() async throws {
        while !Task.isCancelled && !Task.isShuttingDownGracefully {
            try? await Task.sleep(for: .seconds(1))
            guard member.runtime.observed.withLockedValue({ $0.isLeader }), let status = try? await member.runtime.status() else { continue }
            guard status.membership.voters.count < votersMax else { continue }
            for learner in status.membership.learners.sorted() {
                // Only a learner that is running and has caught up: promoting one that never
                // started would count a dead voter toward the quorum.
                guard let replication = status.replication[learner], replication.recentlyActive, replication.match > 0,
                      replication.match + 100 >= status.commitIndex
                else { continue }
                do {
                    try await member.runtime.promote(learner)
                    logger.info("promoted a learner to voter", metadata: ["member": "\(String(learner, radix: 16))"])
                } catch {
                    logger.debug("cannot promote yet", metadata: ["member": "\(String(learner, radix: 16))", "error": "\(error)"])
                }
                break
            }
        }
    }
}
