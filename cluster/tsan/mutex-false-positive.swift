// Two threads change one value, each only inside Synchronization.Mutex.withLock: no race.
// Under -sanitize=thread this reports a "Swift access race" on the guarded value, because
// Mutex's lock (futex and atomics inlined from the toolchain's Synchronization module) is not
// visible to ThreadSanitizer.
import Foundation
import Synchronization

final class Counter: Sendable {
    let value = Mutex(0)
}
let counter = Counter()
let threads = (0..<2).map { _ in
    Thread { for _ in 0..<100_000 { counter.value.withLock { $0 += 1 } } }
}
threads.forEach { $0.start() }
while counter.value.withLock({ $0 }) < 200_000 { usleep(1000) }
print("count", counter.value.withLock { $0 })
