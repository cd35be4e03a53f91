import Foundation
@testable import Resources
import Testing

/// Builds protobuf wire bytes by hand (field numbers from Kubernetes' generated.proto), so the
/// decoder's reading of each rule is checked on known bytes; kubectl's own protobuf bodies are
/// the end-to-end test (APIHTTPTests.protobufBodies).
struct Wire {
    var bytes: [UInt8] = []

    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value, out: [UInt8] = []
        while value >= 0x80 { out.append(UInt8(value & 0x7f) | 0x80); value >>= 7 }
        return out + [UInt8(value)]
    }

    func number(_ field: Int, _ value: UInt64) -> Wire { Wire(bytes: bytes + Self.varint(UInt64(field << 3)) + Self.varint(value)) }
    func bytes(_ field: Int, _ value: [UInt8]) -> Wire {
        Wire(bytes: bytes + Self.varint(UInt64(field << 3 | 2)) + Self.varint(UInt64(value.count)) + value)
    }
    func string(_ field: Int, _ value: String) -> Wire { bytes(field, Array(value.utf8)) }
    func message(_ field: Int, _ value: Wire) -> Wire { bytes(field, value.bytes) }
    func entry(_ field: Int, _ key: String, _ value: Wire) -> Wire { message(field, Wire().string(1, key).message(2, value)) }
    func entry(_ field: Int, _ key: String, _ value: String) -> Wire { message(field, Wire().string(1, key).string(2, value)) }

    /// The envelope kubectl sends: `k8s\0` + runtime.Unknown{typeMeta, raw}.
    static func envelope(apiVersion: String, kind: String, _ object: Wire) -> [UInt8] {
        [0x6b, 0x38, 0x73, 0x00] + Wire().message(1, Wire().string(1, apiVersion).string(2, kind)).message(2, object).bytes
    }
}

@Suite("Kubernetes protobuf request bodies")
struct KubernetesProtobufTests {
    @Test("A ConfigMap: metadata, maps, bytes in base64, a pointer bool kept when false, empty omitempty strings left out")
    func configMap() throws {
        let metadata = Wire().string(1, "settings").string(2, "").string(3, "").number(7, 0).message(8, Wire())
            .entry(11, "app", "web").entry(11, "tier", "front")
        let object = Wire().message(1, metadata).entry(2, "color", "blue").entry(2, "empty", "")
            .message(3, Wire().string(1, "blob").bytes(2, [0, 1, 2, 255])).number(4, 0)
        let decoded = try KubernetesProtobuf.decode(Wire.envelope(apiVersion: "v1", kind: "ConfigMap", object))
        #expect(decoded == .object([
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": .object(["name": "settings", "creationTimestamp": .null, "labels": .object(["app": "web", "tier": "front"])]),
            "data": .object(["color": "blue", "empty": ""]),
            "binaryData": .object(["blob": .string(Data([0, 1, 2, 255]).base64EncodedString())]),
            "immutable": .bool(false),
        ]))
    }

    @Test("A Deployment: pointer int32 zero kept (replicas 0), int-or-string both ways, quantities, times, negative int32, nested pod template")
    func deployment() throws {
        let port = Wire().string(1, "http").number(3, 8080).string(4, "TCP")
        let resources = Wire().entry(1, "cpu", Wire().string(1, "500m")).entry(2, "memory", Wire().string(1, "64Mi"))
        let container = Wire().string(1, "web").string(2, "nginx:1.27").message(6, port).message(8, resources)
        let template = Wire().message(1, Wire().entry(11, "app", "web")).message(2, Wire().message(2, container).number(4, 30))
        let strategy = Wire().string(1, "RollingUpdate").message(2, Wire()
            .message(1, Wire().number(1, 1).string(3, "25%")).message(2, Wire().number(1, 0).number(2, 1)))
        let spec = Wire().number(1, 0).message(2, Wire().entry(1, "app", "web")).message(3, template).message(4, strategy)
            .number(6, UInt64(bitPattern: -1))
        let metadata = Wire().string(1, "web").message(8, Wire().number(1, 1_767_225_600).number(2, 5))
        let decoded = try KubernetesProtobuf.decode(Wire.envelope(apiVersion: "apps/v1", kind: "Deployment", Wire().message(1, metadata).message(2, spec)))
        #expect(decoded["metadata"]?["creationTimestamp"] == "2026-01-01T00:00:00Z")
        let decodedSpec = try #require(decoded["spec"])
        #expect(decodedSpec["replicas"] == .integer(0))
        #expect(decodedSpec["revisionHistoryLimit"] == .integer(-1))
        #expect(decodedSpec["strategy"]?["rollingUpdate"]?["maxUnavailable"] == "25%")
        #expect(decodedSpec["strategy"]?["rollingUpdate"]?["maxSurge"] == .integer(1))
        let podSpec = try #require(decodedSpec["template"]?["spec"])
        #expect(podSpec["terminationGracePeriodSeconds"] == .integer(30))
        let decodedContainer = try #require(podSpec["containers"]?.arrayValue?.first)
        #expect(decodedContainer["ports"] == .array([.object(["name": "http", "containerPort": .integer(8080), "protocol": "TCP"])]))
        #expect(decodedContainer["resources"] == .object(["limits": .object(["cpu": "500m"]), "requests": .object(["memory": "64Mi"])]))
        // Non-pointer bools and strings that were not sent are simply absent.
        #expect(podSpec["hostNetwork"] == nil)
    }

    @Test("Options in any group are meta/v1's; a nullable wrapper (ExtraValue) is its array; packed and unpacked repeated numbers")
    func optionsAndWrappers() throws {
        let options = try KubernetesProtobuf.decode(Wire.envelope(apiVersion: "v1", kind: "DeleteOptions",
                                                                 Wire().number(1, 0).message(2, Wire().string(1, "uid-1")).string(4, "Foreground")))
        #expect(options == .object(["apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": .integer(0),
                                    "preconditions": .object(["uid": "uid-1"]), "propagationPolicy": "Foreground"]))
        let review = Wire().message(2, Wire().string(3, "me").entry(5, "scopes", Wire().string(1, "a").string(1, "b")))
        let decoded = try KubernetesProtobuf.decode(Wire.envelope(apiVersion: "authorization.k8s.io/v1", kind: "SubjectAccessReview", review))
        #expect(decoded["spec"]?["extra"] == .object(["scopes": .array(["a", "b"])]))
        #expect(decoded["spec"]?["user"] == "me")
        // A repeated number (PodSecurityContext.supplementalGroups, int64) packed and one by one.
        let packed = Wire().bytes(4, Wire.varint(1000) + Wire.varint(2000))
        let unpacked = Wire().number(4, 1000).number(4, 2000)
        for groups in [packed, unpacked] {
            let pod = Wire().message(2, Wire().message(14, groups))
            let decodedPod = try KubernetesProtobuf.decode(Wire.envelope(apiVersion: "v1", kind: "Pod", pod))
            #expect(decodedPod["spec"]?["securityContext"]?["supplementalGroups"] == .array([.integer(1000), .integer(2000)]))
        }
    }

    @Test("Bad bytes are errors that say what is wrong, never a crash", arguments: [
        ([UInt8]("{\"kind\":\"Pod\"}".utf8), "prefix"),
        ([0x6b, 0x38, 0x73, 0x00, 0x0a, 0x05, 0x0a], "bytes follow"),
        ([0x6b, 0x38, 0x73, 0x00] + [0x08] + [UInt8](repeating: 0xff, count: 11), "longer than"),
        (Wire.envelope(apiVersion: "v1", kind: "Frobnicator", Wire()), "no kind \"Frobnicator\" is registered for version \"v1\""),
        (Wire.envelope(apiVersion: "", kind: "Pod", Wire()), "no kind \"Pod\""),
        (Wire.envelope(apiVersion: "v1", kind: "Pod", Wire().number(1, 5)), "wire type 0"),
        (Wire.envelope(apiVersion: "v1", kind: "Pod", Wire().bytes(1, [0x1b])), "wire type"),
        ([0x6b, 0x38, 0x73, 0x00] + Wire().message(1, Wire().string(1, "v1")).bytes, "'Kind' is missing"),
    ])
    func badBytes(bytes: [UInt8], expected: String) {
        #expect {
            try KubernetesProtobuf.decode(bytes)
        } throws: { error in
            "\(error)".contains(expected)
        }
    }

    @Test("A raw extension nesting envelopes past the depth limit is refused")
    func deepNesting() {
        // runtime.RawExtension inside ... : a ControllerRevision's data holds an object; nest
        // envelopes inside it until the limit.
        var object = Wire.envelope(apiVersion: "apps/v1", kind: "ControllerRevision", Wire())
        for _ in 0..<80 {
            object = Wire.envelope(apiVersion: "apps/v1", kind: "ControllerRevision", Wire().message(2, Wire().bytes(1, object)))
        }
        #expect {
            try KubernetesProtobuf.decode(object)
        } throws: { error in
            "\(error)".contains("nests deeper")
        }
    }

    @Test("Every message in the table resolves: field types name scalars or messages the table has")
    func tableIsClosed() throws {
        let messages = KubernetesProtobuf.messageNames
        #expect(messages.count > 350)
        for name in messages {
            for type in KubernetesProtobuf.fieldTypes(of: name) where type.contains(".") {
                #expect(messages.contains(type), "\(name) refers to \(type)")
            }
        }
    }
}
