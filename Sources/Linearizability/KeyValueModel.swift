/// What a client did to one key of a key-value store.
public enum RegisterInput: Hashable, Sendable {
    case get
    case put(String)
    /// Compare-and-set: write `new` if the value is `expected` (nil: the key is absent).
    case compareAndSet(expected: String?, new: String)
}

/// What it was told.
public enum RegisterOutput: Hashable, Sendable {
    case value(String?)
    case ok
    /// A compare-and-set whose comparison failed.
    case failed
}

/// A single register (one key): the value, or nil when absent.
public struct RegisterModel: SequentialModel {
    public init() {}

    public var initialState: String? { nil }

    public func step(_ state: String?, _ input: RegisterInput, _ output: RegisterOutput?) -> String?? {
        switch input {
        case .get:
            guard let output else { return .some(state) }
            return output == .value(state) ? .some(state) : nil
        case .put(let value):
            guard output == nil || output == .ok else { return nil }
            return .some(value)
        case .compareAndSet(let expected, let new):
            switch output {
            case .ok: return state == expected ? .some(new) : nil
            case .failed: return state != expected ? .some(state) : nil
            case nil: return state == expected ? .some(new) : .some(state)
            default: return nil
            }
        }
    }
}

/// A key-value history, checked key by key (linearizability is compositional, Herlihy & Wing).
public struct KeyValueHistory: Sendable {
    public var operations: [String: [Operation<RegisterInput, RegisterOutput>]] = [:]

    public init() {}

    public mutating func record(key: String, _ operation: Operation<RegisterInput, RegisterOutput>) {
        operations[key, default: []].append(operation)
    }

    /// The first key whose history is not linearizable, `.unknown` if a key's search ran out of
    /// budget, else `.linearizable`.
    public func check() -> (result: LinearizabilityResult, key: String?) {
        let checker = LinearizabilityChecker(model: RegisterModel())
        var sawUnknown: String?
        for key in operations.keys.sorted() {
            switch checker.check(operations[key]!) {
            case .notLinearizable: return (.notLinearizable, key)
            case .unknown: sawUnknown = sawUnknown ?? key
            case .linearizable: break
            }
        }
        return sawUnknown.map { (.unknown, $0) } ?? (.linearizable, nil)
    }
}
