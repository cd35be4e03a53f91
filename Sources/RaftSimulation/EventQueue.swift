/// A min-heap of events ordered by time, then by insertion order, so that runs are reproducible.
struct EventQueue<Payload> {
    private struct Item {
        var time: UInt64
        var sequence: UInt64
        var payload: Payload
    }

    private var items: [Item] = []
    private var nextSequence: UInt64 = 0

    var isEmpty: Bool { items.isEmpty }
    var count: Int { items.count }
    var nextTime: UInt64? { items.first?.time }

    mutating func push(_ payload: Payload, at time: UInt64) {
        items.append(Item(time: time, sequence: nextSequence, payload: payload))
        nextSequence += 1
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            if !precedes(items[child], items[parent]) { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> (time: UInt64, payload: Payload)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count && precedes(items[left], items[smallest]) { smallest = left }
            if right < items.count && precedes(items[right], items[smallest]) { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return (top.time, top.payload)
    }

    private func precedes(_ lhs: Item, _ rhs: Item) -> Bool {
        lhs.time != rhs.time ? lhs.time < rhs.time : lhs.sequence < rhs.sequence
    }
}
