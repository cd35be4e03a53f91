// ManagedBuffer.create(minimumCapacity: Int.max): the tail allocation's size (header + Int.max
// elements of 8 bytes) wraps around to a few bytes; `capacity` is then read back from the
// allocator's usable size of that small block.
final class Buffer: ManagedBuffer<(Int, Int, Int), UInt64> {}
let buffer = Buffer.create(minimumCapacity: Int.max) { _ in (0, 0, 0) }
print("capacity after asking for Int.max:", buffer.capacity)
