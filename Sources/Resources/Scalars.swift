import Foundation

/// Kubernetes' `IntOrString`: a port number or name, a count or a percentage ("25%").
public enum IntOrString: Sendable, Hashable, Codable, CustomStringConvertible {
    case int(Int32)
    case string(String)

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(Int32.self) {
            self = .int(value)
        } else {
            self = .string(try container.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .int(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        }
    }

    public var description: String {
        switch self {
        case .int(let value): "\(value)"
        case .string(let value): value
        }
    }
}

/// Kubernetes' resource `Quantity` ("100m", "1Gi", "0.5", 2): kept as written, so that it
/// round-trips; a manifest's number (YAML `cpu: 1`) becomes its decimal text, as Kubernetes
/// prints it.
public struct Quantity: Sendable, Hashable, Codable, CustomStringConvertible, ExpressibleByStringLiteral {
    public var text: String

    public init(_ text: String) { self.text = text }
    public init(stringLiteral value: String) { text = value }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let value = try? container.decode(String.self) {
            text = value
        } else if let value = try? container.decode(Int64.self) {
            text = "\(value)"
        } else {
            let value = try container.decode(Double.self)
            guard value.isFinite else { throw DecodingError.dataCorruptedError(in: container, debugDescription: "a quantity must be finite") }
            text = "\(value)"
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }

    public var description: String { text }
}

/// Kubernetes' `Time` and `MicroTime`: RFC 3339 text ("2026-12-03T12:00:00Z"), kept as written.
public struct Timestamp: Sendable, Hashable, Codable, CustomStringConvertible {
    public var text: String

    public init(_ text: String) { self.text = text }

    /// `date` at whole seconds, in UTC (what `metav1.Time` serializes).
    public init(_ date: Date) {
        text = Self.formatter.format(date)
    }

    /// The moment, or nil when the text is not RFC 3339.
    public var date: Date? {
        (try? Date(text, strategy: .iso8601)) ?? (try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }

    public init(from decoder: any Decoder) throws {
        text = try decoder.singleValueContainer().decode(String.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }

    public var description: String { text }

    static let formatter = Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!)
}
