import Foundation
import Resources
import YAMLValue

/// The objects of `-f` arguments: files (YAML, multi-document, or JSON), directories (their
/// .yaml, .yml and .json files, sorted; `recursive` descends), `-` for stdin; `List` kinds
/// give their items. Each object comes with where it was read, for errors.
public enum Manifests {
    public struct Object: Sendable {
        public var value: JSONValue
        public var source: String
    }

    /// A manifest file larger than this is refused (the API server takes 3 MiB bodies).
    public static let fileBytesMax = 16 << 20

    public static func load(_ paths: [String], recursive: Bool = false, stdin: () -> Data = { FileHandle.standardInput.readDataToEndOfFile() }) throws -> [Object] {
        guard !paths.isEmpty else { throw CLIError("must give -f with a file, a directory or -") }
        var objects: [Object] = []
        for path in paths {
            if path == "-" {
                objects += try parse(stdin(), source: "stdin")
                continue
            }
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { throw CLIError("the path \"\(path)\" does not exist") }
            if isDirectory.boolValue {
                for file in try files(in: path, recursive: recursive) { objects += try read(file) }
            } else {
                objects += try read(path)
            }
        }
        return objects
    }

    static func files(in directory: String, recursive: Bool) throws -> [String] {
        var found: [String] = []
        for name in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() {
            let path = "\(directory)/\(name)"
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
            if isDirectory.boolValue {
                if recursive { found += try files(in: path, recursive: true) }
            } else if [".yaml", ".yml", ".json"].contains(where: name.hasSuffix) {
                found.append(path)
            }
        }
        return found
    }

    static func read(_ path: String) throws -> [Object] {
        let attributes = try? FileManager.default.attributesOfItem(atPath: path)
        if let size = attributes?[.size] as? Int, size > fileBytesMax { throw CLIError("\(path) is larger than \(fileBytesMax) bytes") }
        guard let data = FileManager.default.contents(atPath: path) else { throw CLIError("cannot read \(path)") }
        return try parse(data, source: path)
    }

    /// The objects in one file's bytes.
    public static func parse(_ data: Data, source: String) throws -> [Object] {
        guard data.count <= fileBytesMax else { throw CLIError("\(source) is larger than \(fileBytesMax) bytes") }
        guard let text = String(data: data, encoding: .utf8) else { throw CLIError("\(source) is not UTF-8 text") }
        let documents: [JSONValue]
        do { documents = try YAMLBody.decodeAll(text) } catch { throw CLIError("error parsing \(source): \(error)") }
        var objects: [Object] = []
        for (index, document) in documents.enumerated() {
            let place = documents.count > 1 ? "\(source) (document \(index + 1))" : source
            guard case .object = document else { throw CLIError("error validating \(place): the document is not an object (a \(document.typeName))") }
            if document["kind"]?.stringValue?.hasSuffix("List") == true, let items = document["items"]?.arrayValue {
                objects += items.map { Object(value: $0, source: place) }
            } else {
                objects.append(Object(value: document, source: place))
            }
        }
        for object in objects {
            guard object.value["apiVersion"]?.stringValue?.isEmpty == false else { throw CLIError("error validating \(object.source): apiVersion not set") }
            guard object.value["kind"]?.stringValue?.isEmpty == false else { throw CLIError("error validating \(object.source): kind not set") }
        }
        return objects
    }
}
