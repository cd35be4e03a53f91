import EtcdAPI
import Foundation
import GRPCCore
import KVStore
import Store

/// etcd's Watch service: many watches per stream, history replay from a start revision,
/// prev_kv and filters, cancellation (by the client, for compacted history, or for a watcher too
/// slow to keep its buffer bounded, with a reason and the revision to resume from).
struct WatchService: Etcdserverpb_Watch.SimpleServiceProtocol {
    let member: StoreMember

    /// One stream's response writer, shared by the task reading requests (created answers) and
    /// the one delivering events. No actor is needed to keep their order: the server's writer
    /// queues each message before it first suspends, so messages go out in the order written,
    /// and a watch's events are only drained after its created answer was written.
    struct Writer: Sendable {
        let writer: RPCWriter<Etcdserverpb_WatchResponse>
        init(_ writer: RPCWriter<Etcdserverpb_WatchResponse>) { self.writer = writer }
        func write(_ response: Etcdserverpb_WatchResponse) async throws { try await writer.write(response) }
    }

    /// Progress notifications owed on one stream. They are sent by the delivering task, after
    /// the events they vouch for, never beside it.
    final class Progress: @unchecked Sendable {
        // Guarded by `lock`.
        private let lock = NSLock()
        private var notifyIDs: Set<Int64> = []
        private var periodicDue = false
        private var requested = false

        func watch(_ id: Int64) { lock.withLock { _ = notifyIDs.insert(id) } }
        func unwatch(_ id: Int64) { lock.withLock { _ = notifyIDs.remove(id) } }
        func tick() -> Bool { lock.withLock { periodicDue = !notifyIDs.isEmpty; return periodicDue } }
        func request() { lock.withLock { requested = true } }

        /// What is owed now, and clears it.
        func take() -> (periodic: Set<Int64>?, requested: Bool) {
            lock.withLock {
                defer { periodicDue = false }
                return (periodicDue ? notifyIDs : nil, requested)
            }
        }

        /// A client's request that could not be answered yet (a watcher still catching up).
        func stillRequested() { lock.withLock { requested = true } }
    }

    func watch(request: RPCAsyncSequence<Etcdserverpb_WatchRequest, any Error>, response: RPCWriter<Etcdserverpb_WatchResponse>, context: ServerContext) async throws {
        let broker = member.watches
        let (stream, wakeups) = broker.openStream(connection: context.remotePeer)
        defer { broker.closeStream(stream) }
        let writer = Writer(response)
        let progress = Progress()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for await _ in wakeups {
                    try await self.deliver(stream: stream, writer: writer, progress: progress)
                }
            }
            group.addTask {
                // Watches created with progress_notify hear the revision every interval when idle.
                while true {
                    try await Task.sleep(for: self.member.watchProgressNotifyInterval)
                    if progress.tick() { broker.wake(stream) }
                }
            }
            group.addTask {
                for try await message in request {
                    try await self.handle(message, stream: stream, writer: writer, progress: progress)
                }
                // The client closed its side: end the stream.
                throw CancellationError()
            }
            do {
                try await group.next()
            } catch is CancellationError {
            }
            group.cancelAll()
        }
    }

    private func handle(_ message: Etcdserverpb_WatchRequest, stream: Int, writer: Writer, progress: Progress) async throws {
        switch message.requestUnion {
        case .createRequest(let create):
            let registration = WatchHub.Registration(
                key: Array(create.key), rangeEnd: Array(create.rangeEnd), startRevision: create.startRevision,
                prevKv: create.prevKv, noPut: create.filters.contains(.noput), noDelete: create.filters.contains(.nodelete))
            var answer = Etcdserverpb_WatchResponse()
            let registered = member.stateMachine.read { store in member.watches.register(registration, stream: stream, store: store) }
            answer.header = member.header()
            switch registered {
            case .success(let id):
                answer.watchID = id
                answer.created = true
                if create.progressNotify { progress.watch(id) }
            case .failure(let refusal):
                answer.watchID = -1
                answer.created = true
                answer.canceled = true
                answer.cancelReason = refusal.reason
            }
            try await writer.write(answer)
            if case .success(let id) = registered { member.watches.announced(id, stream: stream) }
        case .cancelRequest(let cancel):
            member.watches.cancel(cancel.watchID, stream: stream)
            progress.unwatch(cancel.watchID)
        case .progressRequest:
            // Answered by the delivering task once every watcher of the stream is in step.
            progress.request()
            member.watches.wake(stream)
        case nil:
            break
        }
    }

    private func deliver(stream: Int, writer: Writer, progress: Progress) async throws {
        while true {
            let batch = try member.watches.nextBatch(stream: stream, machine: member.stateMachine)
            for (id, events) in batch.events {
                var answer = Etcdserverpb_WatchResponse()
                answer.header = member.header()
                answer.watchID = id
                answer.events = events.map(Self.event)
                try await writer.write(answer)
            }
            for (id, reason) in batch.cancelled {
                var answer = Etcdserverpb_WatchResponse()
                answer.header = member.header()
                answer.watchID = id
                answer.canceled = true
                switch reason {
                case .compacted(let compactRevision):
                    answer.compactRevision = compactRevision
                    answer.cancelReason = KVError.compacted.storeMessage
                case .slow(let resumeRevision):
                    answer.cancelReason = StoreError.watchTooSlow(resumeRevision: resumeRevision).message
                case .requested:
                    break
                }
                try await writer.write(answer)
            }
            guard batch.catchingUp else { break }
        }
        try await sendProgress(stream: stream, writer: writer, progress: progress)
    }

    /// Progress notifications: an empty response whose header revision promises that every event
    /// at or below it has been sent. Periodic ones go to each idle progress_notify watch by ID; a
    /// client's request is answered once for the whole stream with watch ID -1, as etcd does.
    private func sendProgress(stream: Int, writer: Writer, progress: Progress) async throws {
        let owed = progress.take()
        guard owed.periodic != nil || owed.requested else { return }
        let state = member.watches.progress(stream: stream, ids: owed.periodic ?? [])
        var answer = Etcdserverpb_WatchResponse()
        answer.header = Convert.header(ResponseHeader(revision: state.revision), member.headerContext())
        if owed.periodic != nil {
            for id in state.ready {
                answer.watchID = id
                try await writer.write(answer)
            }
        }
        if owed.requested {
            if state.allReady {
                answer.watchID = -1
                try await writer.write(answer)
            } else {
                progress.stillRequested()
            }
        }
    }

    static func event(_ event: WatchEvent) -> Mvccpb_Event {
        var result = Mvccpb_Event()
        result.type = event.type == .put ? .put : .delete
        result.kv = Convert.keyValue(event.kv)
        if let previous = event.prevKv { result.prevKv = Convert.keyValue(previous) }
        return result
    }
}
