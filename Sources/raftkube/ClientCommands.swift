import ArgumentParser
import Foundation
import KubeCLI
import KubeClient

/// The options every client command takes: which kubeconfig, context and namespace.
struct ClientOptions: ParsableArguments {
    @Option(help: "The kubeconfig (default: $KUBECONFIG, ~/.kube/config, then /var/lib/raftkube/admin.conf).")
    var kubeconfig: String?

    @Option(help: "The kubeconfig context (default: its current-context).")
    var context: String?

    @Option(name: [.short, .long], help: "The namespace (default: the context's, else default).")
    var namespace: String?

    /// Runs `body` with the commands over a client; errors are printed as kubectl prints them
    /// and end the process with status 1.
    func run(_ body: (KubeCommands) async throws -> Void) async throws {
        let client: KubeClient
        let memory: ServerMemory?
        do {
            let resolved = try KubeConfig.load(explicit: kubeconfig, fallbacks: ["/var/lib/raftkube/admin.conf"]).resolved(context: context)
            memory = ServerMemory(server: resolved.server)
            client = try KubeClient(resolved, extraServers: memory?.load() ?? [])
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(1)
        }
        var failed = false
        do {
            try await body(KubeCommands(client: client, namespace: namespace))
        } catch is PartialFailure {
            failed = true
        } catch let error as KubeError {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            failed = true
        } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            failed = true
        }
        // Remember every API server, for the day the kubeconfig's is down.
        if let memory, !memory.isFresh, let servers = try? await client.learnServers() { memory.save(servers) }
        try? await client.shutdown()
        if failed { throw ExitCode(1) }
    }
}

struct GetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "get", abstract: "List objects as kubectl does (the server's columns).",
        discussion: "raftkube get pods; get deploy,svc -A; get pod web -o yaml; get po -l app=web -w; get all")

    @OptionGroup var client: ClientOptions
    @Argument(help: "TYPE[,TYPE...] [NAME...] or TYPE/NAME...") var arguments: [String] = []
    @Flag(name: [.customShort("A"), .customLong("all-namespaces")], help: "Across every namespace.") var allNamespaces = false
    @Option(name: [.customShort("l"), .customLong("selector")], help: "Label selector (=, ==, !=, in, notin, exists, !exists).") var selector: String?
    @Option(name: .customLong("field-selector"), help: "Field selector (metadata.name, metadata.namespace, spec.nodeName, status.phase, ...).") var fieldSelector: String?
    @Option(name: [.short, .long], help: "Output: wide, yaml, json, name.") var output: String?
    @Flag(name: [.short, .long], help: "After listing, print each change.") var watch = false
    @Flag(name: .customLong("no-headers"), help: "No header row.") var noHeaders = false
    @Option(name: .customLong("request-timeout"), help: "With -w: stop watching after this many seconds.") var requestTimeout: Int?

    func run() async throws {
        var options = KubeCommands.GetOptions()
        options.allNamespaces = allNamespaces
        options.labelSelector = selector
        options.fieldSelector = fieldSelector
        options.watch = watch
        options.headers = !noHeaders
        options.watchSeconds = requestTimeout
        do { options.output = try OutputFormat(flag: output) } catch { throw ValidationError("\(error)") }
        try await client.run { try await $0.get(arguments, options) }
    }
}

struct DescribeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "describe", abstract: "Show an object in full, with its Events.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "TYPE [NAME...] or TYPE/NAME...") var arguments: [String] = []
    @Flag(name: [.customShort("A"), .customLong("all-namespaces")]) var allNamespaces = false
    @Option(name: [.customShort("l"), .customLong("selector")]) var selector: String?

    func run() async throws {
        try await client.run { try await $0.describe(arguments, allNamespaces: allNamespaces, labelSelector: selector) }
    }
}

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Create or update objects from files (server-side apply).",
        discussion: "Each object is applied with server-side apply (field manager `raftkube`); conflicts with another manager's fields are refused unless --force-conflicts.")

    @OptionGroup var client: ClientOptions
    @Option(name: [.short, .customLong("filename")], help: "A file, a directory, or - for stdin (repeatable).") var files: [String] = []
    @Flag(name: [.customShort("R"), .long], help: "Descend into directories.") var recursive = false
    @Flag(name: .customLong("force-conflicts"), help: "Take over fields another manager owns.") var forceConflicts = false
    @Option(name: .customLong("field-manager")) var fieldManager = KubeCommands.fieldManager
    @Option(name: .customLong("dry-run"), help: "server: validate, store nothing.") var dryRun: String?

    func run() async throws {
        var options = KubeCommands.ApplyOptions()
        options.recursive = recursive
        options.forceConflicts = forceConflicts
        options.fieldManager = fieldManager
        options.dryRun = try dryRunRequested(dryRun)
        try await client.run { try await $0.apply(files: files, options) }
    }
}

/// `--dry-run=server` (or none): only the server can check what would be stored.
func dryRunRequested(_ flag: String?) throws -> Bool {
    switch flag {
    case nil, "none": return false
    case "server": return true
    default: throw ValidationError("--dry-run must be server or none (a client-side dry run cannot check what the server would refuse)")
    }
}

struct CreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create objects from files.")

    @OptionGroup var client: ClientOptions
    @Option(name: [.short, .customLong("filename")], help: "A file, a directory, or - for stdin (repeatable).") var files: [String] = []
    @Flag(name: [.customShort("R"), .long]) var recursive = false
    @Option(name: .customLong("dry-run")) var dryRun: String?

    func run() async throws {
        let dry = try dryRunRequested(dryRun)
        try await client.run { try await $0.create(files: files, recursive: recursive, dryRun: dry) }
    }
}

struct DeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete objects by file, by name, or by selector; waits until they are gone.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "TYPE NAME..., TYPE/NAME..., or TYPE with -l or --all") var arguments: [String] = []
    @Option(name: [.short, .customLong("filename")]) var files: [String] = []
    @Flag(name: [.customShort("R"), .long]) var recursive = false
    @Option(name: [.customShort("l"), .customLong("selector")]) var selector: String?
    @Flag(help: "Every object of the type in the namespace.") var all = false
    @Flag(name: [.customShort("A"), .customLong("all-namespaces")]) var allNamespaces = false
    @Flag(name: .customLong("ignore-not-found")) var ignoreNotFound = false
    @Option(name: .customLong("grace-period"), help: "Seconds the object gets to end (pods); 0 with --force: at once.") var gracePeriod: Int?
    @Flag(help: "Delete at once (grace period 0).") var force = false
    @Option(help: "background, foreground or orphan (what happens to dependents).") var cascade: String?
    @Option(help: "Wait until the objects are gone (true or false).") var wait = "true"
    @Option(help: "Give up waiting after this many seconds (0: no limit).") var timeout = 0

    func run() async throws {
        var options = KubeCommands.DeleteOptions()
        options.files = files
        options.recursive = recursive
        options.labelSelector = selector
        options.all = all
        options.allNamespaces = allNamespaces
        options.ignoreNotFound = ignoreNotFound
        options.gracePeriod = force ? 0 : gracePeriod
        options.cascade = cascade
        options.wait = wait != "false"
        options.timeoutSeconds = timeout > 0 ? timeout : nil
        try await client.run { try await $0.delete(arguments, options) }
    }
}

struct ScaleCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Set the replicas of deployments, replica sets and stateful sets.")

    @OptionGroup var client: ClientOptions
    @Argument(help: "TYPE NAME or TYPE/NAME") var arguments: [String] = []
    @Option(help: "The replicas wanted.") var replicas: Int
    @Option(name: .customLong("current-replicas"), help: "Only if it has this many now.") var currentReplicas: Int?

    func run() async throws {
        try await client.run { try await $0.scale(arguments, replicas: replicas, currentReplicas: currentReplicas) }
    }
}

struct AuthCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "auth", abstract: "Ask what you may do.", subcommands: [CanI.self])

    struct CanI: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "can-i", abstract: "Whether you may VERB a RESOURCE (or a /url): prints yes (exit 0) or no (exit 1).")

        @OptionGroup var client: ClientOptions
        @Argument var verb: String
        @Argument(help: "pods, deployments.apps, pods/log, or a URL such as /healthz") var resource: String
        @Argument var name: String?
        @Option var subresource: String?
        @Flag(name: [.customShort("A"), .customLong("all-namespaces")]) var allNamespaces = false

        func run() async throws {
            var allowed = false
            try await client.run { allowed = try await $0.canI(verb: verb, resource: resource, name: name, subresource: subresource, allNamespaces: allNamespaces) }
            if !allowed { throw ExitCode(1) }
        }
    }
}
