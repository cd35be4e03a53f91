import Foundation
import Resources

/// What the server does to an object's metadata on create and update, and what it refuses, as
/// kube-apiserver's generic registry does (`BeforeCreate`, `BeforeUpdate`, ObjectMeta
/// validation). Pure: the clock and the random source are parameters.
public enum ObjectMetaRules {
    /// Bytes of all annotations of an object together (Kubernetes' `TotalAnnotationSizeLimitB`).
    public static let annotationBytesMax = 256 << 10

    /// The letters `generateName` suffixes are made of (Kubernetes' `utilrand.String` alphabet:
    /// no vowels, no ambiguous characters).
    public static let suffixAlphabet = Array("bcdfghjklmnpqrstvwxz2456789")

    public struct Context: Sendable {
        public var resource: ResourceType
        /// The namespace in the URL (nil for cluster-scoped resources).
        public var namespace: String?
        public var now: Date
        /// A new uid (lowercase UUID text).
        public var uid: String
        /// Five letters of ``suffixAlphabet`` for a `generateName` suffix.
        public var suffix: String

        public init(resource: ResourceType, namespace: String?, now: Date = Date(), uid: String = UUID().uuidString.lowercased(),
                    suffix: String = String((0..<5).map { _ in ObjectMetaRules.suffixAlphabet.randomElement()! })) {
            self.resource = resource
            self.namespace = namespace
            self.now = now
            self.uid = uid
            self.suffix = suffix
        }
    }

    /// Checks `body` against the URL it was sent to (kind, apiVersion, namespace) and fills in
    /// what the server owns: name from generateName, namespace, uid, creationTimestamp,
    /// generation 1; drops what a client may not set (resourceVersion, deletionTimestamp,
    /// selfLink). Refusals: 400 for a body of another kind or namespace, 422 naming each field.
    public static func prepareForCreate(_ body: JSONValue, _ context: Context) throws(APIError) -> JSONValue {
        try checkKind(body, context.resource)
        var object = try placed(body, in: context.namespace)
        var name = object.metadata("name")?.stringValue ?? ""
        if name.isEmpty, let prefix = object.metadata("generateName")?.stringValue, !prefix.isEmpty {
            // Kubernetes cuts the prefix so that prefix + suffix fits 63 characters.
            name = String(prefix.prefix(58)) + context.suffix
            object.setMetadata("name", .string(name))
        }
        object.setMetadata("uid", .string(context.uid))
        object.setMetadata("creationTimestamp", .string(Timestamp(context.now).text))
        object.setMetadata("generation", .integer(1))
        for serverOwned in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] { object.setMetadata(serverOwned, nil) }
        try checkMetadata(object, name: name, context)
        return object
    }

    /// Checks an update against the stored object and carries over what the client may not
    /// change (uid, creationTimestamp, generation unless the spec changed, deletion fields);
    /// the name and namespace must be the URL's.
    public static func prepareForUpdate(_ body: JSONValue, existing: JSONValue, _ context: Context) throws(APIError) -> JSONValue {
        try checkKind(body, context.resource)
        let name = existing.metadata("name")?.stringValue ?? ""
        let givenName = body.metadata("name")?.stringValue ?? ""
        if givenName != name {
            throw APIError.badRequest("the name of the object (\(givenName)) does not match the name on the URL (\(name))")
        }
        var object = try placed(body, in: context.namespace)
        for kept in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"] { object.setMetadata(kept, existing.metadata(kept)) }
        object.setMetadata("selfLink", nil)
        // An update that does not send managedFields keeps them (server-side apply's record).
        if object.metadata("managedFields") == nil || object.metadata("managedFields") == .null {
            object.setMetadata("managedFields", existing.metadata("managedFields"))
        }
        // metadata.generation moves when the spec does (what controllers' observedGeneration follows).
        var generation: Int64 = 1
        if case .integer(let current) = existing.metadata("generation") { generation = current }
        if object["spec"] != existing["spec"] { generation += 1 }
        object.setMetadata("generation", .integer(generation))
        try checkMetadata(object, name: name, context)
        return object
    }

    /// The object in the URL's namespace: a namespace of its own must be that one (400 in
    /// kube-apiserver's words); a cluster-scoped object has none.
    static func placed(_ body: JSONValue, in namespace: String?) throws(APIError) -> JSONValue {
        var object = body
        if let namespace {
            if let given = object.metadata("namespace")?.stringValue, !given.isEmpty, given != namespace {
                throw APIError.badRequest("the namespace of the provided object does not match the namespace sent on the request")
            }
            object.setMetadata("namespace", .string(namespace))
        } else {
            object.setMetadata("namespace", nil)
        }
        return object
    }

    /// 422 with every wrong field of the metadata, or nothing.
    static func checkMetadata(_ object: JSONValue, name: String, _ context: Context) throws(APIError) {
        let causes = metadataProblems(object, context)
        if !causes.isEmpty {
            throw APIError.invalid(kind: context.resource.kind, group: context.resource.group, name: name, causes: causes)
        }
    }

    /// The body must be an object whose kind and apiVersion, if given, are the URL's resource's
    /// (400 otherwise, in kube-apiserver's words).
    static func checkKind(_ body: JSONValue, _ resource: ResourceType) throws(APIError) {
        guard case .object = body else { throw APIError.badRequest("the body of the request is not a JSON object") }
        if let apiVersion = body["apiVersion"]?.stringValue, !apiVersion.isEmpty, apiVersion != resource.apiVersion {
            throw APIError.badRequest("the API version in the data (\(apiVersion)) does not match the expected API version (\(resource.apiVersion))")
        }
        if let kind = body["kind"]?.stringValue, !kind.isEmpty, kind != resource.kind {
            throw APIError.badRequest("the kind in the data (\(kind)) does not match the expected kind (\(resource.kind))")
        }
        if let metadata = body["metadata"], metadata.objectValue == nil, metadata != .null {
            throw APIError.badRequest("metadata must be an object, not a \(metadata.typeName)")
        }
    }

    /// Name, labels, annotations: every wrong field, as 422 causes.
    static func metadataProblems(_ object: JSONValue, _ context: Context) -> [APIError.Cause] {
        var causes: [APIError.Cause] = []
        let name = object.metadata("name")?.stringValue ?? ""
        if name.isEmpty {
            causes.append(APIError.Cause(reason: "FieldValueRequired", message: "Required value: name or generateName is required", field: "metadata.name"))
        } else {
            for problem in NameRules.problems(name, for: context.resource) {
                causes.append(APIError.Cause(reason: "FieldValueInvalid", message: "Invalid value: \"\(name)\": \(problem)", field: "metadata.name"))
            }
        }
        if let labels = object.metadata("labels"), labels != .null {
            if let map = labels.objectValue {
                for (key, value) in map.sorted(by: { $0.key < $1.key }) {
                    for problem in LabelSyntax.keyProblems(key) {
                        causes.append(APIError.Cause(reason: "FieldValueInvalid", message: "Invalid value: \"\(key)\": \(problem)", field: "metadata.labels"))
                    }
                    guard let text = value.stringValue else {
                        causes.append(APIError.Cause(reason: "FieldValueTypeInvalid", message: "Invalid value: \(value.typeName): label values must be strings", field: "metadata.labels.\(key)"))
                        continue
                    }
                    for problem in LabelSyntax.valueProblems(text) {
                        causes.append(APIError.Cause(reason: "FieldValueInvalid", message: "Invalid value: \"\(text)\": \(problem)", field: "metadata.labels"))
                    }
                }
            } else {
                causes.append(APIError.Cause(reason: "FieldValueTypeInvalid", message: "Invalid value: \(labels.typeName): must be a map of strings", field: "metadata.labels"))
            }
        }
        if let annotations = object.metadata("annotations"), annotations != .null {
            if let map = annotations.objectValue {
                var total = 0
                for (key, value) in map.sorted(by: { $0.key < $1.key }) {
                    for problem in LabelSyntax.keyProblems(key.lowercased()) {
                        causes.append(APIError.Cause(reason: "FieldValueInvalid", message: "Invalid value: \"\(key)\": \(problem)", field: "metadata.annotations"))
                    }
                    guard let text = value.stringValue else {
                        causes.append(APIError.Cause(reason: "FieldValueTypeInvalid", message: "Invalid value: \(value.typeName): annotation values must be strings", field: "metadata.annotations.\(key)"))
                        continue
                    }
                    total += key.utf8.count + text.utf8.count
                }
                if total > annotationBytesMax {
                    causes.append(APIError.Cause(reason: "FieldValueTooLong", message: "Too long: may not be more than \(annotationBytesMax) bytes", field: "metadata.annotations"))
                }
            } else {
                causes.append(APIError.Cause(reason: "FieldValueTypeInvalid", message: "Invalid value: \(annotations.typeName): must be a map of strings", field: "metadata.annotations"))
            }
        }
        return causes
    }
}
