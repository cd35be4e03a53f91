import KVStore
import RaftRuntime
import ServiceLifecycle

/// Publishes this member's name and URLs through the log once it can (etcd's publish on start),
/// then keeps the runtime's peer addresses in step with the replicated member records, so a
/// `MemberUpdate` of a peer URL reaches every member's transport, also after a restart.
public struct MemberPublisher: Service {
    let member: StoreMember
    let intervalMs: Int

    public init(member: StoreMember, intervalMs: Int = 1_000) {
        self.member = member
        self.intervalMs = intervalMs
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                await member.publish()
                while !Task.isCancelled {
                    await syncPeerAddresses()
                    try await Task.sleep(for: .milliseconds(intervalMs))
                }
            }
        } catch is CancellationError {
        }
    }

    func syncPeerAddresses() async {
        guard let records = try? member.stateMachine.read({ try $0.members() }),
              let members = try? await member.runtime.status().membership.members
        else { return }
        for record in records where record.id != member.runtime.id && members.contains(record.id) {
            if let url = record.peerURLs.first, let address = StoreMember.address(ofURL: url) {
                await member.runtime.setPeerAddress(record.id, address: address)
            }
        }
    }
}
