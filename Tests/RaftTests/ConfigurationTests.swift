@testable import Raft
import Testing

struct InvalidConfigurationCase: Sendable, CustomTestStringConvertible {
    var field: String
    var breakIt: @Sendable (inout Configuration) -> Void
    var testDescription: String { field }
}

@Suite struct ConfigurationTests {
    static let invalidCases: [InvalidConfigurationCase] = [
        .init(field: "id") { $0.id = noNode },
        .init(field: "heartbeatIntervalTicks") { $0.heartbeatIntervalTicks = 0 },
        .init(field: "electionTimeoutTicks") { $0.electionTimeoutTicks = $0.heartbeatIntervalTicks },
        .init(field: "messageBytesMax") { $0.messageBytesMax = 0 },
        .init(field: "inflightMessagesMax") { $0.inflightMessagesMax = 0 },
        .init(field: "inflightBytesMax") { $0.inflightBytesMax = $0.messageBytesMax - 1 },
        .init(field: "entryBytesMax") { $0.entryBytesMax = 0 },
        .init(field: "uncommittedBytesMax") { $0.uncommittedBytesMax = $0.entryBytesMax - 1 },
        .init(field: "committedBytesPerReadyMax") { $0.committedBytesPerReadyMax = 0 },
        .init(field: "pendingReadsMax") { $0.pendingReadsMax = 0 },
    ]

    @Test(arguments: invalidCases)
    func invalidValueThrowsErrorNamingField(_ invalid: InvalidConfigurationCase) {
        var configuration = Configuration(id: 1)
        invalid.breakIt(&configuration)
        #expect {
            try configuration.validate()
        } throws: { error in
            (error as? ConfigurationError)?.field == invalid.field
        }
        // The node refuses to start with it.
        #expect(throws: ConfigurationError.self) {
            _ = try RaftNode(configuration: configuration, storage: MemoryStorage(bootstrap: Membership(voters: [1])))
        }
    }

    @Test func defaultConfigurationIsValid() throws {
        try Configuration(id: 1).validate()
        var tight = Configuration(id: 7)
        tight.electionTimeoutTicks = 2
        tight.heartbeatIntervalTicks = 1
        tight.messageBytesMax = 1
        tight.inflightBytesMax = 1
        tight.entryBytesMax = 1
        tight.uncommittedBytesMax = 1
        try tight.validate()
    }

    @Test func storedCommitBeyondLogIsRejectedAtStart() {
        let storage = TestCluster.storage(membership: Membership(voters: [1]), terms: [1, 1], hardState: HardState(term: 1, commit: 5))
        #expect {
            _ = try RaftNode(configuration: Configuration(id: 1), storage: storage)
        } throws: { error in
            (error as? ConfigurationError)?.field == "hardState.commit"
        }
    }

    @Test func sameSeedGivesSameElectionTimeouts() {
        func timeouts(seed: UInt64) -> [Int] {
            (1...5).map { id in
                var configuration = Configuration(id: NodeID(id))
                configuration.randomSeed = seed
                let node = try! RaftNode(configuration: configuration, storage: MemoryStorage(bootstrap: Membership(voters: [1, 2, 3, 4, 5])))
                return node.randomizedElectionTimeout
            }
        }
        #expect(timeouts(seed: 3) == timeouts(seed: 3))
        #expect(timeouts(seed: 3).allSatisfy { (10..<20).contains($0) })
        #expect(timeouts(seed: 3) != timeouts(seed: 4))
    }
}
