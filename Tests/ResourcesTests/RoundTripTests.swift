import Foundation
import Resources
import Testing

/// The generated types against real manifests: every field Kubernetes defines decodes into its
/// typed place and encodes back to the same JSON.
@Suite("Kubernetes types round-trip")
struct RoundTripTests {
    static func tree(_ data: Data) throws -> JSONValue { try JSONDecoder().decode(JSONValue.self, from: data) }

    static func roundTrip<T: Codable>(_ type: T.Type, _ json: String) throws -> (JSONValue, JSONValue, T) {
        let data = Data(json.utf8)
        let value = try JSONDecoder().decode(T.self, from: data)
        let again = try JSONEncoder().encode(value)
        return (try tree(data), try tree(again), value)
    }

    /// The nginx Deployment of Kubernetes' documentation, with probes, resources and a strategy.
    static let deployment = """
    {"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"nginx-deployment","namespace":"default",
     "labels":{"app":"nginx"},"annotations":{"deployment.kubernetes.io/revision":"1"}},
     "spec":{"replicas":3,"revisionHistoryLimit":10,"progressDeadlineSeconds":600,
      "selector":{"matchLabels":{"app":"nginx"},"matchExpressions":[{"key":"tier","operator":"In","values":["web","edge"]}]},
      "strategy":{"type":"RollingUpdate","rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}},
      "template":{"metadata":{"labels":{"app":"nginx"}},
       "spec":{"containers":[{"name":"nginx","image":"nginx:1.14.2","imagePullPolicy":"IfNotPresent",
         "ports":[{"containerPort":80,"protocol":"TCP","name":"http"}],
         "env":[{"name":"POD_IP","valueFrom":{"fieldRef":{"fieldPath":"status.podIP"}}},{"name":"MODE","value":"prod"}],
         "resources":{"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"cpu":"1","memory":"128Mi"}},
         "readinessProbe":{"httpGet":{"path":"/","port":"http"},"periodSeconds":5},
         "livenessProbe":{"tcpSocket":{"port":80},"initialDelaySeconds":3},
         "securityContext":{"runAsUser":1000,"readOnlyRootFilesystem":true,"capabilities":{"drop":["ALL"]}}}],
        "volumes":[{"name":"cache","emptyDir":{"medium":"Memory","sizeLimit":"64Mi"}}],
        "restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst"}}},
     "status":{"replicas":3,"readyReplicas":3,"observedGeneration":1,
      "conditions":[{"type":"Available","status":"True","lastUpdateTime":"2026-12-03T12:00:00Z","lastTransitionTime":"2026-12-03T12:00:00Z","reason":"MinimumReplicasAvailable","message":"Deployment has minimum availability."}]}}
    """

    @Test("a Deployment: every field typed and back")
    func deploymentRoundTrips() throws {
        let (original, encoded, deployment) = try Self.roundTrip(AppsV1.Deployment.self, Self.deployment)
        #expect(original == encoded)
        #expect(AppsV1.Deployment.apiVersion == "apps/v1" && AppsV1.Deployment.kind == "Deployment")
        #expect(deployment.spec?.replicas == 3)
        #expect(deployment.spec?.strategy?.rollingUpdate?.maxSurge == .string("25%"))
        #expect(deployment.spec?.strategy?.rollingUpdate?.maxUnavailable == .int(1))
        let container = try #require(deployment.spec?.template?.spec?.containers?.first)
        #expect(container.resources?.requests?["cpu"] == "100m")
        #expect(container.readinessProbe?.httpGet?.port == .string("http"))
        #expect(container.livenessProbe?.tcpSocket?.port == .int(80))
        #expect(container.securityContext?.runAsUser == 1000)
        #expect(deployment.status?.conditions?.first?.lastTransitionTime?.date != nil)
    }

    @Test("what is not set is left out of the JSON; an empty list stays")
    func absentFieldsLeftOut() throws {
        let pod = CoreV1.Pod(apiVersion: "v1", kind: "Pod", metadata: MetaV1.ObjectMeta(name: "p"), spec: CoreV1.PodSpec(containers: []))
        let encoded = try Self.tree(try JSONEncoder().encode(pod))
        #expect(encoded == .object(["apiVersion": .string("v1"), "kind": .string("Pod"), "metadata": .object(["name": .string("p")]),
                                    "spec": .object(["containers": .array([])])]))
    }

    @Test("quantities written as numbers (YAML's cpu: 1) become their text; absent and empty stay apart")
    func scalars() throws {
        let json = #"{"requests":{"cpu":1,"memory":"1Gi","ephemeral-storage":0.5},"limits":{}}"#
        let requirements = try JSONDecoder().decode(CoreV1.ResourceRequirements.self, from: Data(json.utf8))
        #expect(requirements.requests?["cpu"] == "1")
        #expect(requirements.requests?["ephemeral-storage"] == "0.5")
        #expect(requirements.limits == [:])
        #expect(requirements.claims == nil)
        let encoded = String(decoding: try JSONEncoder().encode(requirements), as: UTF8.self)
        #expect(encoded.contains(#""limits":{}"#))
        #expect(!encoded.contains("claims"))
    }

    @Test("a wrong type is a decoding error that names the field")
    func wrongType() throws {
        let json = #"{"apiVersion":"v1","kind":"Pod","spec":{"containers":[{"name":"a","ports":[{"containerPort":"eighty"}]}]}}"#
        do {
            _ = try JSONDecoder().decode(CoreV1.Pod.self, from: Data(json.utf8))
            Issue.record("a string for containerPort decoded")
        } catch let DecodingError.typeMismatch(_, context) {
            #expect(context.codingPath.map(\.stringValue).contains("containerPort"))
        }
    }

    @Test("untyped fields (RawExtension, FieldsV1) keep any JSON")
    func untyped() throws {
        let json = #"{"name":"p","managedFields":[{"manager":"kubectl","operation":"Apply","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:app":{}}}}}]}"#
        let (original, encoded, meta) = try Self.roundTrip(MetaV1.ObjectMeta.self, json)
        #expect(original == encoded)
        #expect(meta.managedFields?.first?.fieldsV1?["f:metadata"]?["f:labels"]?["f:app"] == .object([:]))
    }
}
