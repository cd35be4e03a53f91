import Foundation
import KubeClient
import Resources

/// Where a command writes: its output, and its errors and warnings.
public struct Terminal: Sendable {
    public let out: @Sendable (String) -> Void
    public let err: @Sendable (String) -> Void

    public init(out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void) {
        self.out = out
        self.err = err
    }

    public static let standard = Terminal(out: { text in FileHandle.standardOutput.write(Data(text.utf8)) },
                                          err: { text in FileHandle.standardError.write(Data(text.utf8)) })
}

/// Some of a command's objects failed (each already reported); the command exits 1.
public struct PartialFailure: Error, CustomStringConvertible {
    public let failures: Int
    public var description: String { "\(failures) of the objects failed" }
}

/// The `raftkube` client commands (`get`, `describe`, `apply`, `create`, `delete`, `scale`,
/// `auth can-i`), kubectl's behaviour over ``KubeClient``: tables come from the server's Table
/// responses, so `raftkube get` prints the columns `kubectl get` prints.
public struct KubeCommands: Sendable {
    public let client: KubeClient
    /// `-n`, else the kubeconfig context's namespace.
    public let namespace: String
    /// Whether `-n` was given (a manifest naming another namespace is then refused).
    public let namespaceGiven: Bool
    public let terminal: Terminal
    public static let tableAccept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    public static let fieldManager = "raftkube"

    public init(client: KubeClient, namespace: String?, terminal: Terminal = .standard) {
        self.client = client
        self.namespace = namespace.flatMap { $0.isEmpty ? nil : $0 } ?? client.namespace
        self.namespaceGiven = namespace?.isEmpty == false
        self.terminal = terminal
    }

    func catalog() async throws -> ResourceCatalog { try await ResourceCatalog.discover(client) }

    /// `TYPE[,TYPE] [NAME...]` or `TYPE/NAME...`: what each argument names.
    func targets(_ arguments: [String], catalog: ResourceCatalog) throws -> [(entry: ResourceCatalog.Entry, names: [String])] {
        guard let first = arguments.first else {
            throw CLIError("you must specify the type of resource, e.g. `pods`, `deployments`, `all` (see `raftkube get --help`)")
        }
        if first.contains("/") {
            var targets: [(entry: ResourceCatalog.Entry, names: [String])] = []
            for argument in arguments {
                let parts = argument.split(separator: "/", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[1].isEmpty else { throw CLIError("arguments in resource/name form must have a single resource and name, not \"\(argument)\"") }
                let entry = try catalog.resolve(parts[0])
                if let index = targets.firstIndex(where: { $0.entry == entry }) { targets[index].names.append(parts[1]) } else { targets.append((entry, [parts[1]])) }
            }
            return targets
        }
        if arguments.dropFirst().contains(where: { $0.contains("/") }) {
            throw CLIError("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form")
        }
        var targets: [(entry: ResourceCatalog.Entry, names: [String])] = []
        for word in first.split(separator: ",").map(String.init) {
            for entry in try catalog.expand(word) where !targets.contains(where: { $0.entry == entry }) {
                targets.append((entry, Array(arguments.dropFirst())))
            }
        }
        return targets
    }

    func scope(_ entry: ResourceCatalog.Entry, allNamespaces: Bool = false) -> String? {
        entry.ref.namespaced && !allNamespaces ? namespace : nil
    }

    /// An object of a list with its kind and apiVersion (a list's items carry neither).
    static func withKind(_ object: JSONValue, _ ref: ResourceRef) -> JSONValue {
        guard case .object(var fields) = object else { return object }
        fields["kind"] = .string(ref.kind)
        fields["apiVersion"] = .string(ref.apiVersion)
        return .object(fields)
    }

    // MARK: get

    public struct GetOptions: Sendable {
        public var allNamespaces = false
        public var labelSelector: String?
        public var fieldSelector: String?
        public var output = OutputFormat.table
        public var watch = false
        public var headers = true
        /// For `-w`: stop after this many seconds (nil: until interrupted).
        public var watchSeconds: Int?
        public init() {}
    }

    public func get(_ arguments: [String], _ options: GetOptions) async throws {
        let catalog = try await catalog()
        let targets = try targets(arguments, catalog: catalog)
        let selection = ListOptions(labelSelector: options.labelSelector, fieldSelector: options.fieldSelector)
        let words = arguments.first.map { $0.contains("/") ? [] : $0.split(separator: ",").map(String.init) } ?? []
        // `all` (a category) prints kind/name, as several kinds do.
        let several = targets.count > 1 || words.contains { (try? catalog.resolve($0)) == nil }
        var objects: [JSONValue] = []
        var sections: [String] = []
        var failures = 0
        var watchFrom = ""
        var widths: [[String]] = []
        for target in targets {
            let ns = scope(target.entry, allNamespaces: options.allNamespaces)
            let printer = TablePrinter(wide: options.output == .wide, withNamespace: options.allNamespaces && target.entry.ref.namespaced,
                                       kindPrefix: several ? target.entry.ref.typeName : nil, headers: options.headers)
            if target.names.isEmpty {
                let table = options.output == .table || options.output == .wide
                let list = try await client.list(target.entry.ref, namespace: ns, options: selection, accept: table ? KubeCommands.tableAccept : "application/json")
                watchFrom = list["metadata"]?["resourceVersion"]?.stringValue ?? ""
                if table {
                    guard !(list["rows"]?.arrayValue ?? []).isEmpty else { continue }
                    let rows = printer.rows(list, columns: list["columnDefinitions"]?.arrayValue ?? [])
                    widths = rows
                    sections.append(TablePrinter.align(rows))
                } else {
                    objects += (list["items"]?.arrayValue ?? []).map { KubeCommands.withKind($0, target.entry.ref) }
                }
                continue
            }
            var tables: [JSONValue] = []
            for name in target.names {
                do {
                    if options.output == .table || options.output == .wide {
                        tables.append(try await client.get(target.entry.ref, name: name, namespace: ns, accept: KubeCommands.tableAccept))
                    } else {
                        objects.append(try await client.get(target.entry.ref, name: name, namespace: ns))
                    }
                } catch let error as KubeError {
                    terminal.err("\(error)\n")
                    failures += 1
                }
            }
            if let first = tables.first {
                let merged = JSONValue.object(["rows": .array(tables.flatMap { $0["rows"]?.arrayValue ?? [] })])
                let rows = printer.rows(merged, columns: first["columnDefinitions"]?.arrayValue ?? [])
                widths = rows
                sections.append(TablePrinter.align(rows))
            }
        }
        switch options.output {
        case .table, .wide:
            terminal.out(sections.joined(separator: "\n"))
        case .name:
            terminal.out(objects.map { "\(typeName($0, catalog))/\($0["metadata"]?["name"]?.stringValue ?? "")\n" }.joined())
        case .json, .yaml:
            let single = targets.count == 1 && targets[0].names.count == 1 && objects.count == 1
            let value = single ? objects[0] : ObjectPrinter.list(objects)
            if !objects.isEmpty || !targets.allSatisfy({ !$0.names.isEmpty }) {
                terminal.out(options.output == .json ? ObjectPrinter.json(value) : ObjectPrinter.yaml(value))
            }
        }
        let listed = targets.allSatisfy { $0.names.isEmpty }
        if listed, sections.isEmpty, objects.isEmpty, options.output != .json, options.output != .yaml, !options.watch {
            let scoped = targets.contains { $0.entry.ref.namespaced } && !options.allNamespaces
            terminal.err(scoped ? "No resources found in \(namespace) namespace.\n" : "No resources found\n")
        }
        if failures > 0 { throw PartialFailure(failures: failures) }
        if options.watch {
            guard targets.count == 1 else { throw CLIError("you may only specify a single resource type when watching") }
            try await watch(targets[0].entry, names: targets[0].names, from: watchFrom, selection: selection, options: options,
                            widths: widths, several: several)
        }
    }

    /// `get -w`: each change after the list, as a table row without headers (padded as the
    /// list's columns were) or as the object.
    func watch(_ entry: ResourceCatalog.Entry, names: [String], from version: String, selection: ListOptions, options: GetOptions,
               widths: [[String]], several: Bool) async throws {
        var selection = selection
        selection.resourceVersion = version
        if names.count == 1 { selection.fieldSelector = "metadata.name=\(names[0])" }
        let table = options.output == .table || options.output == .wide
        let printer = TablePrinter(wide: options.output == .wide, withNamespace: options.allNamespaces && entry.ref.namespaced,
                                   kindPrefix: several ? entry.ref.typeName : nil, headers: false)
        var columns: [JSONValue] = []
        let events = client.watch(entry.ref, namespace: scope(entry, allNamespaces: options.allNamespaces), options: selection, bookmarks: false,
                                  timeoutSeconds: options.watchSeconds, accept: table ? KubeCommands.tableAccept : "application/json")
        for try await event in events {
            if table {
                if let definitions = event.object["columnDefinitions"]?.arrayValue, !definitions.isEmpty { columns = definitions }
                let rows = printer.rows(event.object, columns: columns)
                let aligned = TablePrinter.align(widths.isEmpty ? rows : widths + rows)
                terminal.out(aligned.split(separator: "\n", omittingEmptySubsequences: false).suffix(rows.count + 1).joined(separator: "\n"))
            } else {
                let object = KubeCommands.withKind(event.object, entry.ref)
                switch options.output {
                case .json: terminal.out(ObjectPrinter.json(object))
                case .yaml: terminal.out("---\n" + ObjectPrinter.yaml(object))
                default: terminal.out("\(entry.ref.typeName)/\(object["metadata"]?["name"]?.stringValue ?? "")\n")
                }
            }
        }
    }

    func typeName(_ object: JSONValue, _ catalog: ResourceCatalog) -> String {
        let kind = object["kind"]?.stringValue ?? ""
        let apiVersion = object["apiVersion"]?.stringValue ?? ""
        return (try? catalog.entry(apiVersion: apiVersion, kind: kind).ref.typeName) ?? kind.lowercased()
    }

    // MARK: describe

    public func describe(_ arguments: [String], allNamespaces: Bool = false, labelSelector: String? = nil) async throws {
        let catalog = try await catalog()
        var sections: [String] = []
        var failures = 0
        for target in try targets(arguments, catalog: catalog) {
            let ns = scope(target.entry, allNamespaces: allNamespaces)
            var objects: [JSONValue] = []
            if target.names.isEmpty {
                objects = try await client.list(target.entry.ref, namespace: ns, options: ListOptions(labelSelector: labelSelector))["items"]?.arrayValue ?? []
            } else {
                for name in target.names {
                    do { objects.append(try await client.get(target.entry.ref, name: name, namespace: ns)) } catch let error as KubeError {
                        terminal.err("\(error)\n")
                        failures += 1
                    }
                }
            }
            for object in objects {
                let events = try await self.events(of: object, entry: target.entry)
                sections.append(Describer.describe(object, kind: target.entry.ref.kind, events: events))
            }
        }
        terminal.out(sections.joined(separator: "\n\n"))
        if failures > 0 { throw PartialFailure(failures: failures) }
    }

    func events(of object: JSONValue, entry: ResourceCatalog.Entry) async throws -> [JSONValue] {
        guard let name = object["metadata"]?["name"]?.stringValue else { return [] }
        var selector = "involvedObject.name=\(name),involvedObject.kind=\(entry.ref.kind)"
        let ns = object["metadata"]?["namespace"]?.stringValue
        if let ns { selector += ",involvedObject.namespace=\(ns)" }
        let list = try? await client.list(.events, namespace: ns, options: ListOptions(fieldSelector: selector))
        let uid = object["metadata"]?["uid"]?.stringValue
        return (list?["items"]?.arrayValue ?? []).filter { event in
            guard let uid, let eventUID = event["involvedObject"]?["uid"]?.stringValue, !eventUID.isEmpty else { return true }
            return eventUID == uid
        }
    }

    // MARK: apply, create

    public struct ApplyOptions: Sendable {
        public var recursive = false
        public var forceConflicts = false
        public var fieldManager = KubeCommands.fieldManager
        public var dryRun = false
        public init() {}
    }

    /// Server-side apply of each object: `created`, `configured`, or `unchanged` (its
    /// resourceVersion did not move).
    public func apply(files: [String], _ options: ApplyOptions) async throws {
        let catalog = try await catalog()
        var failures = 0
        for object in try Manifests.load(files, recursive: options.recursive) {
            do {
                let (entry, name, ns, body) = try place(object, catalog: catalog, requireName: true)
                var before: String?
                do {
                    before = try await client.get(entry.ref, name: name, namespace: ns)["metadata"]?["resourceVersion"]?.stringValue
                } catch let error as KubeError where error.isNotFound {}
                var query = [("fieldManager", options.fieldManager), ("fieldValidation", "Strict")]
                if options.forceConflicts { query.append(("force", "true")) }
                if options.dryRun { query.append(("dryRun", "All")) }
                let response = try await client.patch(entry.ref, name: name, namespace: ns, type: .apply, body: body.jsonBytes, query: query)
                for warning in response.warnings { terminal.err("Warning: \(warning)\n") }
                let after = try response.json["metadata"]?["resourceVersion"]?.stringValue
                let verb = before == nil ? "created" : before == after ? "unchanged" : "configured"
                terminal.out("\(entry.ref.typeName)/\(name) \(verb)\(options.dryRun ? " (server dry run)" : "")\n")
            } catch {
                terminal.err("error: \(object.source): \(error)\n")
                failures += 1
            }
        }
        if failures > 0 { throw PartialFailure(failures: failures) }
    }

    public func create(files: [String], recursive: Bool = false, dryRun: Bool = false) async throws {
        let catalog = try await catalog()
        var failures = 0
        for object in try Manifests.load(files, recursive: recursive) {
            do {
                let (entry, _, ns, body) = try place(object, catalog: catalog, requireName: false)
                var query = [("fieldManager", KubeCommands.fieldManager), ("fieldValidation", "Strict")]
                if dryRun { query.append(("dryRun", "All")) }
                let response = try await client.request(.POST, entry.ref.path(namespace: ns), query: query, body: body.jsonBytes)
                for warning in response.warnings { terminal.err("Warning: \(warning)\n") }
                let created = try response.json["metadata"]?["name"]?.stringValue ?? ""
                terminal.out("\(entry.ref.typeName)/\(created) created\(dryRun ? " (server dry run)" : "")\n")
            } catch {
                terminal.err("error: \(object.source): \(error)\n")
                failures += 1
            }
        }
        if failures > 0 { throw PartialFailure(failures: failures) }
    }

    /// A manifest's resource, name and namespace, and the body to send (its namespace set).
    func place(_ object: Manifests.Object, catalog: ResourceCatalog, requireName: Bool) throws -> (ResourceCatalog.Entry, String, String?, JSONValue) {
        let value = object.value
        let entry = try catalog.entry(apiVersion: value["apiVersion"]?.stringValue ?? "", kind: value["kind"]?.stringValue ?? "")
        let name = value["metadata"]?["name"]?.stringValue ?? ""
        if requireName, name.isEmpty { throw CLIError("the object has no metadata.name (apply needs a name; generateName is for create)") }
        guard entry.ref.namespaced else { return (entry, name, nil, value) }
        let own = value["metadata"]?["namespace"]?.stringValue
        if let own, !own.isEmpty, namespaceGiven, own != namespace {
            throw CLIError("the namespace from the provided object \"\(own)\" does not match the namespace \"\(namespace)\". You must pass '--namespace=\(own)' to perform this operation.")
        }
        let ns = own.flatMap { $0.isEmpty ? nil : $0 } ?? namespace
        guard case .object(var fields) = value else { return (entry, name, ns, value) }
        var metadata = fields["metadata"]?.objectValue ?? [:]
        metadata["namespace"] = .string(ns)
        fields["metadata"] = .object(metadata)
        return (entry, name, ns, .object(fields))
    }

    // MARK: delete

    public struct DeleteOptions: Sendable {
        public var files: [String] = []
        public var recursive = false
        public var labelSelector: String?
        public var all = false
        public var allNamespaces = false
        public var ignoreNotFound = false
        public var gracePeriod: Int?
        /// `background`, `foreground` or `orphan`.
        public var cascade: String?
        public var wait = true
        public var timeoutSeconds: Int?
        public init() {}
    }

    public func delete(_ arguments: [String], _ options: DeleteOptions) async throws {
        let catalog = try await catalog()
        var doomed: [(entry: ResourceCatalog.Entry, name: String, namespace: String?)] = []
        if !options.files.isEmpty {
            guard arguments.isEmpty else { throw CLIError("give either -f or resources to delete, not both") }
            for object in try Manifests.load(options.files, recursive: options.recursive) {
                let (entry, name, ns, _) = try place(object, catalog: catalog, requireName: true)
                doomed.append((entry, name, ns))
            }
        } else {
            for target in try targets(arguments, catalog: catalog) {
                if target.names.isEmpty {
                    guard options.all || options.labelSelector != nil else {
                        throw CLIError("resource(s) were provided, but no name was specified: name them, or select with -l or --all")
                    }
                    let list = try await client.list(target.entry.ref, namespace: scope(target.entry, allNamespaces: options.allNamespaces),
                                                     options: ListOptions(labelSelector: options.labelSelector))
                    for item in list["items"]?.arrayValue ?? [] {
                        doomed.append((target.entry, item["metadata"]?["name"]?.stringValue ?? "", item["metadata"]?["namespace"]?.stringValue))
                    }
                } else {
                    for name in target.names { doomed.append((target.entry, name, scope(target.entry))) }
                }
            }
        }
        let policy: String? = switch options.cascade?.lowercased() {
        case nil: nil
        case "background", "true": "Background"
        case "foreground": "Foreground"
        case "orphan", "false": "Orphan"
        default: throw CLIError("--cascade must be background, foreground or orphan, not \"\(options.cascade ?? "")\"")
        }
        var failures = 0
        var waiting: [(ResourceCatalog.Entry, String, String?, String?)] = []
        for (entry, name, ns) in doomed {
            do {
                let answer = try await client.delete(entry.ref, name: name, namespace: ns, gracePeriodSeconds: options.gracePeriod, propagationPolicy: policy)
                terminal.out("\(entry.ref.typeName) \"\(name)\" deleted\n")
                waiting.append((entry, name, ns, answer["metadata"]?["uid"]?.stringValue ?? answer["details"]?["uid"]?.stringValue))
            } catch let error as KubeError where error.isNotFound && options.ignoreNotFound {
                continue
            } catch {
                terminal.err("\(error)\n")
                failures += 1
            }
        }
        if options.wait {
            let deadline = options.timeoutSeconds.map { ContinuousClock.now + .seconds($0) }
            for (entry, name, ns, uid) in waiting {
                while true {
                    do {
                        let current = try await client.get(entry.ref, name: name, namespace: ns)
                        if let uid, current["metadata"]?["uid"]?.stringValue != uid { break }
                    } catch let error as KubeError where error.isNotFound {
                        break
                    }
                    if let deadline, ContinuousClock.now > deadline {
                        terminal.err("error: timed out waiting for \(entry.ref.typeName) \"\(name)\" to be deleted\n")
                        failures += 1
                        break
                    }
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
        }
        if failures > 0 { throw PartialFailure(failures: failures) }
    }

    // MARK: scale

    public func scale(_ arguments: [String], replicas: Int, currentReplicas: Int? = nil) async throws {
        guard replicas >= 0 else { throw CLIError("the --replicas=COUNT flag is required, and COUNT must be 0 or more") }
        let catalog = try await catalog()
        var failures = 0
        for target in try targets(arguments, catalog: catalog) {
            guard !target.names.isEmpty else { throw CLIError("name what to scale: raftkube scale \(target.entry.ref.plural) NAME --replicas=N") }
            for name in target.names {
                do {
                    let ns = scope(target.entry)
                    if let currentReplicas {
                        let scale = try await client.request(.GET, target.entry.ref.path(namespace: ns, name: name, subresource: "scale")).json
                        let now = scale["spec"]?["replicas"]?.integerValue ?? 0
                        guard now == currentReplicas else { throw CLIError("Expected replicas to be \(currentReplicas), was \(now)") }
                    }
                    let patch = JSONValue.object(["spec": .object(["replicas": .integer(Int64(replicas))])])
                    _ = try await client.patch(target.entry.ref, name: name, namespace: ns, type: .merge, body: patch.jsonBytes, subresource: "scale")
                    terminal.out("\(target.entry.ref.typeName)/\(name) scaled\n")
                } catch {
                    terminal.err("\(error)\n")
                    failures += 1
                }
            }
        }
        if failures > 0 { throw PartialFailure(failures: failures) }
    }

    // MARK: auth can-i

    /// Asks the server (SelfSubjectAccessReview) whether the caller may; prints yes or no.
    public func canI(verb: String, resource: String, name: String? = nil, subresource: String? = nil, allNamespaces: Bool = false) async throws -> Bool {
        var spec: [String: JSONValue]
        if resource.hasPrefix("/") {
            spec = ["nonResourceAttributes": .object(["path": .string(resource), "verb": .string(verb)])]
        } else {
            var plural = resource
            var sub = subresource
            if let slash = resource.firstIndex(of: "/") {
                plural = String(resource[..<slash])
                sub = String(resource[resource.index(after: slash)...])
            }
            var group = ""
            if plural == "*" {
                group = "*"
            } else if let entry = try? await catalog().resolve(plural) {
                plural = entry.ref.plural
                group = entry.ref.group
            } else {
                terminal.err("Warning: the server doesn't have a resource type '\(plural)'\n")
                if let dot = plural.firstIndex(of: ".") {
                    group = String(plural[plural.index(after: dot)...])
                    plural = String(plural[..<dot])
                }
            }
            var attributes: [String: JSONValue] = ["verb": .string(verb), "resource": .string(plural), "group": .string(group),
                                                   "namespace": .string(allNamespaces ? "" : namespace)]
            if let sub, !sub.isEmpty { attributes["subresource"] = .string(sub) }
            if let name, !name.isEmpty { attributes["name"] = .string(name) }
            spec = ["resourceAttributes": .object(attributes)]
        }
        let review = JSONValue.object(["apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": .object(spec)])
        let answer = try await client.request(.POST, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body: review.jsonBytes).json
        let allowed = answer["status"]?["allowed"] == .bool(true)
        terminal.out(allowed ? "yes\n" : "no\n")
        return allowed
    }
}
