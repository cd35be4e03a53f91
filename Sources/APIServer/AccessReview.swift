import Resources

/// authorization.k8s.io/v1 SelfSubjectAccessReview: "may I?" (`kubectl auth can-i`) answered by
/// the authorizer that decides the user's own requests. Never stored; the answer is the review
/// with its `status` (allowed, and a reason when denied), as kube-apiserver returns it.
enum AccessReview {
    static func review(_ body: JSONValue, user: UserInfo, authorizer: any Authorizer) throws(APIError) -> JSONValue {
        guard case .object(let review) = body else { throw APIError.badRequest("a SelfSubjectAccessReview must be an object") }
        let spec = body["spec"]
        let question: RequestInfo
        if let attributes = spec?["resourceAttributes"], case .object = attributes {
            func text(_ key: String) -> String? { attributes[key]?.stringValue.flatMap { $0.isEmpty ? nil : $0 } }
            question = RequestInfo(verb: text("verb") ?? "", group: text("group") ?? "", version: text("version") ?? "",
                                   resource: text("resource") ?? "", subresource: text("subresource"), namespace: text("namespace"), name: text("name"))
        } else if let attributes = spec?["nonResourceAttributes"], case .object = attributes {
            question = RequestInfo(verb: attributes["verb"]?.stringValue ?? "", nonResourcePath: attributes["path"]?.stringValue ?? "")
        } else {
            throw APIError.invalid(kind: "SelfSubjectAccessReview", group: "authorization.k8s.io", name: "", causes: [
                .init(reason: "FieldValueRequired", message: "Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified",
                      field: "spec.resourceAttributes"),
            ])
        }
        let allowed = authorizer.allows(user, question)
        var status: [String: JSONValue] = ["allowed": .bool(allowed)]
        if !allowed { status["reason"] = .string("no rule of the authorizer allows \(user.name) to \(question.verb) this") }
        return answered(review, status: .object(status))
    }

    /// SelfSubjectRulesReview (`kubectl auth can-i --list`): the rules that grant the user
    /// something in `spec.namespace`, resource and non-resource ones apart.
    static func rules(_ body: JSONValue, user: UserInfo, authorizer: any Authorizer) throws(APIError) -> JSONValue {
        guard case .object(let review) = body else { throw APIError.badRequest("a SelfSubjectRulesReview must be an object") }
        let namespace = body["spec"]?["namespace"]?.stringValue ?? ""
        let found = authorizer.rules(for: user, namespace: namespace)
        var resourceRules: [JSONValue] = []
        var nonResourceRules: [JSONValue] = []
        for rule in found ?? [] {
            func list(_ values: [String]) -> JSONValue { .array(values.map(JSONValue.string)) }
            if !rule.resources.isEmpty {
                var entry: [String: JSONValue] = ["verbs": list(rule.verbs), "apiGroups": list(rule.apiGroups), "resources": list(rule.resources)]
                if !rule.resourceNames.isEmpty { entry["resourceNames"] = list(rule.resourceNames) }
                resourceRules.append(.object(entry))
            }
            if !rule.nonResourceURLs.isEmpty { nonResourceRules.append(.object(["verbs": list(rule.verbs), "nonResourceURLs": list(rule.nonResourceURLs)])) }
        }
        return answered(review, status: .object(["resourceRules": .array(resourceRules), "nonResourceRules": .array(nonResourceRules),
                                                 "incomplete": .bool(found == nil)]))
    }

    /// A review as the server answers it: its status, and metadata as of an object never stored.
    static func answered(_ review: [String: JSONValue], status: JSONValue) -> JSONValue {
        var review = review
        review["status"] = status
        var metadata = review["metadata"]?.objectValue ?? [:]
        metadata["creationTimestamp"] = .null
        review["metadata"] = .object(metadata)
        return .object(review)
    }
}
