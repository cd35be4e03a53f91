import Raft

/// One node of the simulated cluster: the Raft core, its storage (with what was last fsynced),
/// and a tiny state machine that folds every applied entry into a hash chain.
final class SimulatedNode {
    let id: NodeID
    var raft: RaftNode<MemoryStorage>?
    var storage: MemoryStorage
    /// The storage as of the last completed fsync: all that survives a crash.
    var durable: MemoryStorage.State
    /// Bumped on every crash, so that disk completions scheduled before it are ignored.
    var incarnation: UInt64 = 0
    /// A `Ready` written to the disk and waiting for its fsync to complete.
    var readyAwaitingSync: Ready?
    /// Removed from the cluster and shut down for good.
    var decommissioned = false

    /// The state machine: how far it has applied, and the hash of everything applied.
    var appliedIndex: UInt64 = 0
    var stateHash: UInt64 = 0
    /// Read states whose index the state machine has not reached yet.
    var waitingReads: [ReadState] = []
    /// Commit index up to which committed entries were recorded by the checker.
    var commitChecked: UInt64 = 0
    /// The term in which this node was last checked for leader completeness.
    var leaderCheckedTerm: UInt64 = 0

    var isAlive: Bool { raft != nil }

    init(id: NodeID, bootstrap membership: Membership) {
        self.id = id
        storage = MemoryStorage(bootstrap: membership)
        durable = storage.state
    }

    /// The snapshot payload: the applied index and the state hash at that index.
    func snapshotData() -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(16)
        for value in [appliedIndex, stateHash] {
            for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: value >> UInt64(shift))) }
        }
        return bytes
    }

    static func decodeSnapshotData(_ bytes: [UInt8]) -> (index: UInt64, hash: UInt64) {
        guard bytes.count == 16 else { return (0, 0) }
        func read(_ offset: Int) -> UInt64 {
            (0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[offset + $1]) << UInt64($1 * 8) }
        }
        return (read(0), read(8))
    }
}

/// FNV-1a over bytes, then a final mix: a cheap, stable digest for checking.
func digest(_ bytes: [UInt8]) -> UInt64 {
    var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    for byte in bytes {
        hash ^= UInt64(byte)
        hash &*= 0x0000_0100_0000_01B3
    }
    return mix(hash)
}

func mix(_ value: UInt64) -> UInt64 {
    var mixed = value
    mixed = (mixed ^ (mixed >> 30)) &* 0xBF58_476D_1CE4_E5B9
    mixed = (mixed ^ (mixed >> 27)) &* 0x94D0_49BB_1331_11EB
    return mixed ^ (mixed >> 31)
}

/// The state hash after applying `entry` to a state with hash `previous`.
func chainHash(_ previous: UInt64, _ entry: Entry) -> UInt64 {
    mix(previous ^ mix(entry.term &+ 0x9E37_79B9_7F4A_7C15) ^ digest(entry.data) ^ (UInt64(entry.kind.rawValue) << 56) ^ entry.index)
}
