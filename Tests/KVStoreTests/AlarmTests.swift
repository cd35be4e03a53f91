import Foundation
import Testing

@testable import KVStore

/// Alarms are replicated state: while NOSPACE stands every replica refuses the same writes (the
/// ones that add data) and lets through what wins space back; CORRUPT refuses every change.
@Suite struct AlarmTests {
    static func put(_ key: String, _ value: String = "v") -> KVRequest {
        .put(PutRequest(key: Array(key.utf8), value: Array(value.utf8)))
    }

    static let noSpace = AlarmMember(memberID: 0xABCD, alarm: .noSpace)

    @Test("NOSPACE refuses puts, txns that put in any branch (nested too) and lease grants alike on every replica; deletes, read-only txns, compactions and revokes still run; disarm lets writes in again")
    func noSpaceAlarm() throws {
        let replicas = [try TestStore(), try TestStore()]
        let script: [KVRequest] = [
            Self.put("a"), Self.put("b"),
            .leaseGrant(LeaseGrantRequest(ttl: 60, id: 7)),
            .alarm(AlarmRequest(action: .activate, member: Self.noSpace)),
            .alarm(AlarmRequest(action: .activate, member: Self.noSpace)),
            Self.put("c"),
            .txn(TxnRequest(success: [.range(RangeRequest(key: Array("a".utf8)))], failure: [.put(PutRequest(key: Array("d".utf8)))])),
            .txn(TxnRequest(success: [.txn(TxnRequest(success: [.put(PutRequest(key: Array("e".utf8)))]))])),
            .leaseGrant(LeaseGrantRequest(ttl: 60, id: 8)),
            .txn(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: Array("a".utf8)))])),
            .deleteRange(DeleteRangeRequest(key: Array("b".utf8))),
            .leaseRevoke(LeaseRevokeRequest(id: 7)),
            .compaction(CompactionRequest(revision: 3, physical: true)),
            .alarm(AlarmRequest(action: .deactivate, member: Self.noSpace)),
            .alarm(AlarmRequest(action: .deactivate, member: Self.noSpace)),
            Self.put("f"),
        ]
        var answers: [[KVResponse]] = [[], []]
        for (position, replica) in replicas.enumerated() {
            for request in script { answers[position].append(try replica.apply(request)) }
        }
        #expect(answers[0] == answers[1], "replicas answer alike")
        let answer = answers[0]
        guard case .alarm(let raised) = answer[3], case .alarm(let again) = answer[4] else { Issue.record("\(answer)"); return }
        #expect(raised.alarms == [Self.noSpace] && again.alarms.isEmpty, "a second activate changes nothing")
        #expect(Array(answer[5...8]) == Array(repeating: .error(.noSpace), count: 4), "\(answer[5...8])")
        #expect(KVError.noSpace.message == "etcdserver: mvcc: database space exceeded" && KVError.noSpace.grpcCode == .resourceExhausted)
        for position in 9...12 {
            if case .error(let error) = answer[position] { Issue.record("request \(position) refused: \(error)") }
        }
        guard case .alarm(let cleared) = answer[13], case .alarm(let clearedAgain) = answer[14] else { Issue.record("\(answer)"); return }
        #expect(cleared.alarms == [Self.noSpace] && clearedAgain.alarms.isEmpty)
        guard case .put = answer[15] else { Issue.record("put after disarm: \(answer[15])"); return }
        #expect(try replicas[0].get("c") == nil && replicas[0].get("d") == nil && replicas[0].get("e") == nil && replicas[0].get("f") != nil)
        #expect(replicas[0].store.alarms.isEmpty)
    }

    @Test("An alarm survives a reopen and travels in a snapshot; CORRUPT refuses every change but lets alarms be cleared")
    func alarmsPersist() throws {
        let store = try TestStore()
        let corrupt = AlarmMember(memberID: 2, alarm: .corrupt)
        try store.apply(.alarm(AlarmRequest(action: .activate, member: Self.noSpace)))
        try store.apply(.alarm(AlarmRequest(action: .activate, member: corrupt)))
        // NONE is no alarm: activating it changes nothing.
        #expect(try store.apply(.alarm(AlarmRequest(action: .activate, member: AlarmMember(memberID: 3, alarm: .none)))) == .alarm(AlarmResponse(header: ResponseHeader(revision: 1), alarms: [])))
        try store.reopen()
        #expect(store.store.alarms == [corrupt, Self.noSpace].sorted())
        let copy = try TestStore()
        try copy.store.restore(from: try store.store.snapshotData())
        copy.index = store.index
        #expect(copy.store.alarms == store.store.alarms)
        for request in [Self.put("x"), .deleteRange(DeleteRangeRequest(key: Array("x".utf8))), .compaction(CompactionRequest(revision: 1, physical: false)),
                        .leaseGrant(LeaseGrantRequest(ttl: 60, id: 1)), .leaseRevoke(LeaseRevokeRequest(id: 1))] {
            #expect(try copy.apply(request) == .error(.corrupt), "\(request)")
        }
        try copy.apply(.alarm(AlarmRequest(action: .deactivate, member: corrupt)))
        #expect(try copy.apply(Self.put("x")) == .error(.noSpace), "NOSPACE still stands")
        try copy.apply(.alarm(AlarmRequest(action: .deactivate, member: Self.noSpace)))
        guard case .put = try copy.apply(Self.put("x")) else { Issue.record("put refused with no alarm"); return }
    }

    @Test("Alarm requests round-trip through the entry codec; unknown actions and types are refused")
    func alarmCodec() throws {
        for action in [AlarmRequest.Action.activate, .deactivate] {
            for type in AlarmType.allCases {
                let request = KVRequest.alarm(AlarmRequest(action: action, member: AlarmMember(memberID: .max, alarm: type)))
                #expect(try KVRequest.decode(request.encoded()) == request)
            }
        }
        var bytes = KVRequest.alarm(AlarmRequest(action: .activate, member: Self.noSpace)).encoded()
        bytes[2] = 0
        #expect(throws: KVCodecError.self) { try KVRequest.decode(bytes) }
        bytes[2] = 1
        bytes[bytes.count - 1] = 3
        #expect(throws: KVCodecError.self) { try KVRequest.decode(bytes) }
    }

    @Test("What requests cost against the quota: puts their bytes plus 256, txns their dearer branch, grants 64, the rest nothing")
    func quotaCost() {
        #expect(Self.put("key", "value").quotaCost == 256 + 3 + 5)
        let txn = KVRequest.txn(TxnRequest(success: [.put(PutRequest(key: [1], value: [2, 3]))],
                                           failure: [.put(PutRequest(key: [1])), .txn(TxnRequest(success: [.put(PutRequest(key: [4, 5]))]))]))
        #expect(txn.quotaCost == 257 + 258)
        #expect(KVRequest.leaseGrant(LeaseGrantRequest(ttl: 5)).quotaCost == 64)
        #expect(KVRequest.deleteRange(DeleteRangeRequest(key: [1])).quotaCost == 0)
        #expect(KVRequest.txn(TxnRequest(success: [.deleteRange(DeleteRangeRequest(key: [1]))])).quotaCost == 0)
    }
}
