import Foundation

/// A bootstrap token in kubeadm's shape, `[a-z0-9]{6}.[a-z0-9]{16}`: the public ID names it, the
/// secret proves the joiner was given it. Tokens expire (24 h by default).
public struct BootstrapToken: Sendable, Hashable, CustomStringConvertible {
    public let id: String
    public let secret: String

    static let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")

    /// A fresh random token.
    public init() {
        var generator = SystemRandomNumberGenerator()
        id = String((0..<6).map { _ in Self.alphabet.randomElement(using: &generator)! })
        secret = String((0..<16).map { _ in Self.alphabet.randomElement(using: &generator)! })
    }

    /// Parses `id.secret`; throws with the expected shape when it is not one.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        func valid(_ part: Substring, _ count: Int) -> Bool {
            part.count == count && part.allSatisfy { Self.alphabet.contains($0) }
        }
        guard parts.count == 2, valid(parts[0], 6), valid(parts[1], 16) else {
            throw PKIError.invalid("a token has the form [a-z0-9]{6}.[a-z0-9]{16} (for example abcdef.0123456789abcdef); `raftkube token create` makes one")
        }
        id = String(parts[0])
        secret = String(parts[1])
    }

    public var description: String { "\(id).\(secret)" }
}
