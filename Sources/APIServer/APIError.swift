import Resources
import Store

/// A Kubernetes API error: what the server answers as a `Status` object (kind Status, status
/// Failure), with the HTTP code, the reason clients switch on, and Kubernetes' words.
public struct APIError: Error, Sendable, Equatable, CustomStringConvertible {
    public var code: Int
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, `Expired`, ...
    public var reason: String
    public var message: String
    public var details: Details?

    public struct Details: Sendable, Equatable {
        public var name: String?
        public var group: String?
        public var kind: String?
        public var causes: [Cause]
        public var retryAfterSeconds: Int?

        public init(name: String? = nil, group: String? = nil, kind: String? = nil, causes: [Cause] = [], retryAfterSeconds: Int? = nil) {
            self.name = name
            self.group = group
            self.kind = kind
            self.causes = causes
            self.retryAfterSeconds = retryAfterSeconds
        }
    }

    /// One field that is wrong (`FieldValueRequired`, `FieldValueInvalid`, ...).
    public struct Cause: Sendable, Equatable {
        public var reason: String
        public var message: String
        public var field: String

        public init(reason: String, message: String, field: String) {
            self.reason = reason
            self.message = message
            self.field = field
        }
    }

    public init(code: Int, reason: String, message: String, details: Details? = nil) {
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
    }

    public var description: String { "\(code) \(reason): \(message)" }

    /// The `Status` object Kubernetes answers with.
    public var status: JSONValue {
        var object: [String: JSONValue] = [
            "kind": .string("Status"), "apiVersion": .string("v1"), "metadata": .object([:]),
            "status": .string("Failure"), "message": .string(message), "reason": .string(reason), "code": .integer(Int64(code)),
        ]
        if let details {
            var fields: [String: JSONValue] = [:]
            if let name = details.name { fields["name"] = .string(name) }
            if let group = details.group { fields["group"] = .string(group) }
            if let kind = details.kind { fields["kind"] = .string(kind) }
            if !details.causes.isEmpty {
                fields["causes"] = .array(details.causes.map {
                    .object(["reason": .string($0.reason), "message": .string($0.message), "field": .string($0.field)])
                })
            }
            if let retry = details.retryAfterSeconds { fields["retryAfterSeconds"] = .integer(Int64(retry)) }
            object["details"] = .object(fields)
        }
        return .object(object)
    }

    // MARK: Kubernetes' errors, in its words

    /// `pods "web" not found`; with a group, `deployments.apps "web" not found`.
    public static func notFound(_ resource: ResourceType, name: String) -> APIError {
        APIError(code: 404, reason: "NotFound", message: "\(resource.qualifiedName) \"\(name)\" not found",
                 details: Details(name: name, group: resource.group, kind: resource.name))
    }

    public static func alreadyExists(_ resource: ResourceType, name: String) -> APIError {
        APIError(code: 409, reason: "AlreadyExists", message: "\(resource.qualifiedName) \"\(name)\" already exists",
                 details: Details(name: name, group: resource.group, kind: resource.name))
    }

    /// An update on a stale resourceVersion (or a failed precondition).
    public static func conflict(_ resource: ResourceType, name: String, why: String = "the object has been modified; please apply your changes to the latest version and try again") -> APIError {
        APIError(code: 409, reason: "Conflict", message: "Operation cannot be fulfilled on \(resource.qualifiedName) \"\(name)\": \(why)",
                 details: Details(name: name, group: resource.group, kind: resource.name))
    }

    /// 410 Gone: the revision asked for is compacted away (the client lists again).
    public static func expired(_ message: String) -> APIError {
        APIError(code: 410, reason: "Expired", message: message)
    }

    /// A path or resource the server does not serve (kube-apiserver's generic 404).
    public static let noSuchResource = APIError(code: 404, reason: "NotFound", message: "the server could not find the requested resource")

    /// A verb the resource does not take.
    public static let methodNotAllowed = APIError(code: 405, reason: "MethodNotAllowed", message: "the server does not allow this method on the requested resource")

    /// 413: a request body past ``APIHandler/bodyBytesMax`` (Kubernetes' 3 MiB).
    public static let tooLarge = APIError(code: 413, reason: "RequestEntityTooLarge", message: "Request entity too large: limit is \(APIHandler.bodyBytesMax)")

    /// 415: a body in a media type the server does not read.
    public static func unsupportedMediaType(_ type: String) -> APIError {
        APIError(code: 415, reason: "UnsupportedMediaType", message: "the body of the request was in an unknown format - accepted media types include: application/json (not \(type))")
    }

    public static func badRequest(_ message: String) -> APIError {
        APIError(code: 400, reason: "BadRequest", message: message)
    }

    /// 422 with a cause per wrong field: `Pod "web" is invalid: spec.containers: Required value`.
    public static func invalid(kind: String, group: String, name: String, causes: [Cause]) -> APIError {
        let list = causes.map { "\($0.field): \($0.message)" }.joined(separator: ", ")
        let message = causes.count == 1 ? "\(kind) \"\(name)\" is invalid: \(list)" : "\(kind) \"\(name)\" is invalid: [\(list)]"
        return APIError(code: 422, reason: "Invalid", message: message, details: Details(name: name, group: group, kind: kind, causes: causes))
    }

    public static func internalError(_ message: String) -> APIError {
        APIError(code: 500, reason: "InternalError", message: "Internal error occurred: \(message)",
                 details: Details(causes: [Cause(reason: "", message: message, field: "")]))
    }

    /// What the store's errors mean to an API client.
    public static func store(_ error: StoreError) -> APIError {
        switch error {
        case .compacted:
            expired("The resourceVersion for the provided list is too old.")
        case .timedOut, .leaderLost:
            APIError(code: 504, reason: "Timeout", message: "The request did not complete in time (\(error.message)); it may still be applied",
                     details: Details(retryAfterSeconds: 1))
        case .noLeader, .unavailable, .overloaded, .proposalDropped, .stopped, .membershipChangeInProgress:
            APIError(code: 503, reason: "ServiceUnavailable", message: "the storage is unavailable: \(error.message)", details: Details(retryAfterSeconds: 1))
        case .requestTooLarge:
            APIError(code: 413, reason: "RequestEntityTooLarge", message: "Request entity too large: the object is larger than the storage takes (\(error.message))")
        default:
            internalError(error.message)
        }
    }
}
