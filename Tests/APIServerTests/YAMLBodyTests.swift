import APIServer
import Resources
import Testing
import YAMLValue

@Suite("YAML request bodies")
struct YAMLBodyTests {
    @Test("Scalars by their YAML types, quoted ones strings, nested maps and lists, anchors expanded")
    func types() throws {
        let decoded = try YAMLBody.decode(Array("""
            apiVersion: v1
            kind: ConfigMap
            metadata:
              name: settings
              labels: &labels {app: web, tier: "1"}
            data:
              port: "8080"
              enabled: "true"
            spec:
              replicas: 3
              ratio: 0.5
              on: true
              nothing: null
              list: [a, 2, false]
              again: *labels
            """.utf8))
        #expect(decoded["metadata"]?["labels"] == .object(["app": "web", "tier": "1"]))
        #expect(decoded["data"] == .object(["port": "8080", "enabled": "true"]))
        #expect(decoded["spec"] == .object([
            "replicas": .integer(3), "ratio": .number(0.5), "on": true, "nothing": .null, "list": .array(["a", .integer(2), false]),
            "again": .object(["app": "web", "tier": "1"]),
        ]))
    }

    @Test("Malformed YAML, a key that is a list, and an alias bomb are errors, not crashes or huge objects", arguments: [
        "a: [1, 2\nb: 3", "? [a, b]\n: c",
        "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\nf: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]\ng: [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]",
    ])
    func refused(text: String) {
        #expect(throws: YAMLBody.Failure.self) { try YAMLBody.decode(Array(text.utf8)) }
    }
}
