import APIServer
import Foundation
import Resources
import Testing

@Suite("JSON patch, merge patch and strategic merge patch")
struct PatchesTests {
    static func value(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    /// A JSON literal of the test itself (it parses, or the test is wrong).
    static func literal(_ text: String) -> JSONValue {
        (try? value(text)) ?? .string("unparsable literal: \(text)")
    }

    static func apply(_ kind: Patches.Kind, _ patch: String, to object: String, definition: String? = nil) throws -> JSONValue {
        try Patches.apply(kind, patch: Array(patch.utf8), to: value(object), definition: definition)
    }

    @Test("RFC 7386's examples")
    func merge() throws {
        let cases: [(String, String, String)] = [
            (#"{"a":"b"}"#, #"{"a":"c"}"#, #"{"a":"c"}"#), (#"{"a":"b"}"#, #"{"b":"c"}"#, #"{"a":"b","b":"c"}"#),
            (#"{"a":"b"}"#, #"{"a":null}"#, #"{}"#), (#"{"a":["b"]}"#, #"{"a":"c"}"#, #"{"a":"c"}"#),
            (#"{"a":{"b":"c"}}"#, #"{"a":{"b":"d","c":null}}"#, #"{"a":{"b":"d"}}"#), (#"{"a":[{"b":"c"}]}"#, #"{"a":[1]}"#, #"{"a":[1]}"#),
            (#"{"e":null}"#, #"{"a":1}"#, #"{"e":null,"a":1}"#), (#"{}"#, #"{"a":{"bb":{"ccc":null}}}"#, #"{"a":{"bb":{}}}"#),
        ]
        for (original, patch, result) in cases {
            #expect(try Self.apply(.merge, patch, to: original) == Self.literal(result), "\(original) + \(patch)")
        }
        #expect(throws: APIError.self) { try Self.apply(.merge, "[1]", to: "{}") }
        #expect(throws: APIError.self) { try Self.apply(.merge, "{", to: "{}") }
    }

    @Test("RFC 6902: add, remove, replace, move, copy, test; escapes; errors name the path and leave nothing half done")
    func json() throws {
        let document = #"{"foo":["bar","baz"],"a/b":1,"m~n":2,"q":{"r":1}}"#
        #expect(try Self.apply(.json, #"[{"op":"add","path":"/foo/1","value":"qux"}]"#, to: document)["foo"] == Self.literal(#"["bar","qux","baz"]"#))
        #expect(try Self.apply(.json, #"[{"op":"add","path":"/foo/-","value":"end"}]"#, to: document)["foo"] == Self.literal(#"["bar","baz","end"]"#))
        #expect(try Self.apply(.json, #"[{"op":"remove","path":"/foo/0"}]"#, to: document)["foo"] == Self.literal(#"["baz"]"#))
        #expect(try Self.apply(.json, #"[{"op":"replace","path":"/a~1b","value":9}]"#, to: document)["a/b"] == .integer(9))
        #expect(try Self.apply(.json, #"[{"op":"remove","path":"/m~0n"}]"#, to: document)["m~n"] == nil)
        let moved = try Self.apply(.json, #"[{"op":"move","from":"/q/r","path":"/s"}]"#, to: document)
        #expect(moved["s"] == .integer(1) && moved["q"] == .object([:]))
        #expect(try Self.apply(.json, #"[{"op":"copy","from":"/q","path":"/t"}]"#, to: document)["t"] == Self.literal(#"{"r":1}"#))
        #expect(try Self.apply(.json, #"[{"op":"test","path":"/q/r","value":1},{"op":"add","path":"/ok","value":true}]"#, to: document)["ok"] == .bool(true))
        for bad in [#"[{"op":"test","path":"/q/r","value":2}]"#, #"[{"op":"replace","path":"/nothing","value":1}]"#, #"[{"op":"remove","path":"/foo/7"}]"#,
                    #"[{"op":"add","path":"/x/y","value":1}]"#, #"[{"op":"jump","path":"/q"}]"#, #"[{"path":"/q"}]"#, #"{"op":"add"}"#,
                    #"[{"op":"move","from":"/q","path":"/q/r/s"}]"#, #"[{"op":"add","path":"q","value":1}]"#, #"[{"op":"remove","path":""}]"#] {
            #expect(throws: APIError.self, "\(bad)") { try Self.apply(.json, bad, to: document) }
        }
    }

    @Test("strategic: containers merge by name, ports by containerPort, finalizers as a set, $patch delete/replace, $retainKeys, $deleteFromPrimitiveList, null deletes")
    func strategic() throws {
        let pod = #"""
            {"metadata":{"name":"p","labels":{"a":"1","b":"2"},"finalizers":["x"]},
             "spec":{"containers":[{"name":"web","image":"nginx","ports":[{"containerPort":80},{"containerPort":443}]},{"name":"side","image":"busybox"}],
                     "tolerations":[{"key":"k1"}]}}
            """#
        let definition = "io.k8s.api.core.v1.Pod"
        let merged = try Self.apply(.strategic, #"""
            {"metadata":{"labels":{"b":null,"c":"3"},"finalizers":["y"]},
             "spec":{"containers":[{"name":"web","image":"nginx:2","ports":[{"containerPort":8080}]},{"name":"new","image":"alpine"}],"tolerations":[{"key":"k2"}]}}
            """#, to: pod, definition: definition)
        #expect(merged["metadata"]?["labels"] == Self.literal(#"{"a":"1","c":"3"}"#))
        #expect(merged["metadata"]?["finalizers"] == Self.literal(#"["x","y"]"#))
        let containers = merged["spec"]?["containers"]?.arrayValue ?? []
        #expect(containers.compactMap { $0["name"]?.stringValue } == ["web", "side", "new"])
        #expect(containers.first?["image"] == .string("nginx:2"))
        #expect(containers.first?["ports"]?.arrayValue?.compactMap { $0["containerPort"]?.integerValue } == [80, 443, 8080])
        // tolerations have no merge strategy: replaced.
        #expect(merged["spec"]?["tolerations"] == Self.literal(#"[{"key":"k2"}]"#))

        let deleted = try Self.apply(.strategic, #"{"spec":{"containers":[{"name":"side","$patch":"delete"}]}}"#, to: pod, definition: definition)
        #expect(deleted["spec"]?["containers"]?.arrayValue?.compactMap { $0["name"]?.stringValue } == ["web"])
        let replaced = try Self.apply(.strategic, #"{"spec":{"containers":[{"$patch":"replace"},{"name":"only","image":"x"}]}}"#, to: pod, definition: definition)
        #expect(replaced["spec"]?["containers"] == Self.literal(#"[{"name":"only","image":"x"}]"#))
        let replacedMap = try Self.apply(.strategic, #"{"metadata":{"labels":{"$patch":"replace","z":"9"}}}"#, to: pod, definition: definition)
        #expect(replacedMap["metadata"]?["labels"] == Self.literal(#"{"z":"9"}"#))
        let retained = try Self.apply(.strategic, #"{"metadata":{"labels":{"$retainKeys":["a"],"a":"1"}}}"#, to: pod, definition: definition)
        #expect(retained["metadata"]?["labels"] == Self.literal(#"{"a":"1"}"#))
        let unfinalized = try Self.apply(.strategic, #"{"metadata":{"$deleteFromPrimitiveList/finalizers":["x"],"$setElementOrder/finalizers":[]}}"#, to: pod, definition: definition)
        #expect(unfinalized["metadata"]?["finalizers"] == Self.literal("[]"))
        #expect(throws: APIError.self) { try Self.apply(.strategic, #"{"spec":{"containers":[{"image":"no-name"}]}}"#, to: pod, definition: definition) }
        #expect(throws: APIError.self) { try Self.apply(.strategic, #"{"$patch":"explode"}"#, to: pod, definition: definition) }
    }
}
