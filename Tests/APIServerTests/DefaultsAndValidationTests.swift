import APIServer
import Foundation
import Resources
import Testing

@Suite("Defaults and validation of the served kinds")
struct DefaultsAndValidationTests {
    static func resource(_ group: String, _ name: String) -> ResourceType {
        ServedResources.find(group: group, version: "v1", name: name)!
    }

    static func json(_ text: String) -> JSONValue {
        try! JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test("A pod's defaults: policies, grace period, scheduler, per container pull policy by tag, message path, port protocol, requests from limits, probe timings")
    func podDefaults() {
        let pod = Defaults.apply(Self.json("""
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[
              {"name":"a","image":"nginx:1.27","ports":[{"containerPort":80}],"resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"500m"}},
               "readinessProbe":{"httpGet":{"port":80}}},
              {"name":"b","image":"busybox"},{"name":"c","image":"registry.local:5000/app:latest"},{"name":"d","image":"app@sha256:abc"}],
             "restartPolicy":"Never"}}
            """), Self.resource("", "pods"))
        let spec = pod["spec"]!
        #expect(spec["restartPolicy"] == "Never", "given values stay")
        #expect(spec["dnsPolicy"] == "ClusterFirst" && spec["terminationGracePeriodSeconds"] == .integer(30) && spec["schedulerName"] == "default-scheduler")
        #expect(spec["securityContext"] == .object([:]) && spec["enableServiceLinks"] == true)
        let containers = spec["containers"]!.arrayValue!
        #expect(containers.map { $0["imagePullPolicy"] } == ["IfNotPresent", "Always", "Always", "IfNotPresent"])
        #expect(containers[0]["terminationMessagePath"] == "/dev/termination-log" && containers[0]["terminationMessagePolicy"] == "File")
        #expect(containers[0]["ports"]?.arrayValue?.first?["protocol"] == "TCP")
        #expect(containers[0]["resources"]?["requests"] == .object(["cpu": "500m", "memory": "1Gi"]))
        #expect(containers[0]["readinessProbe"] == .object(["httpGet": .object(["port": .integer(80), "scheme": "HTTP", "path": "/"]), "timeoutSeconds": .integer(1),
                                                            "periodSeconds": .integer(10), "successThreshold": .integer(1), "failureThreshold": .integer(3)]))
        #expect(containers[1]["resources"] == .object([:]))
        #expect(Defaults.apply(pod, Self.resource("", "pods")) == pod, "defaulting twice changes nothing")
    }

    @Test("Workload and service defaults; a Job's selector generated from its uid")
    func workloadDefaults() {
        let deployment = Defaults.apply(Self.json(#"{"spec":{"selector":{"matchLabels":{"a":"b"}},"template":{"spec":{"containers":[{"name":"c","image":"x:1"}]}}}}"#),
                                        Self.resource("apps", "deployments"))
        #expect(deployment["spec"]?["replicas"] == .integer(1) && deployment["spec"]?["revisionHistoryLimit"] == .integer(10)
                && deployment["spec"]?["progressDeadlineSeconds"] == .integer(600))
        #expect(deployment["spec"]?["strategy"] == .object(["type": "RollingUpdate", "rollingUpdate": .object(["maxUnavailable": "25%", "maxSurge": "25%"])]))
        #expect(deployment["spec"]?["template"]?["spec"]?["restartPolicy"] == "Always")
        let recreate = Defaults.apply(Self.json(#"{"spec":{"strategy":{"type":"Recreate"}}}"#), Self.resource("apps", "deployments"))
        #expect(recreate["spec"]?["strategy"] == .object(["type": "Recreate"]))
        let service = Defaults.apply(Self.json(#"{"spec":{"type":"NodePort","ports":[{"port":80},{"port":443,"targetPort":"https","protocol":"UDP"}]}}"#),
                                     Self.resource("", "services"))
        #expect(service["spec"]?["ports"] == .array([.object(["port": .integer(80), "targetPort": .integer(80), "protocol": "TCP"]),
                                                     .object(["port": .integer(443), "targetPort": "https", "protocol": "UDP"])]))
        #expect(service["spec"]?["sessionAffinity"] == "None" && service["spec"]?["externalTrafficPolicy"] == "Cluster" && service["spec"]?["internalTrafficPolicy"] == "Cluster")
        let jobs = Self.resource("batch", "jobs")
        let job = Defaults.onCreate(Defaults.apply(Self.json(#"{"metadata":{"name":"once","uid":"u-1"},"spec":{"template":{"spec":{"containers":[]}}}}"#), jobs), jobs)
        #expect(job["spec"]?["completions"] == .integer(1) && job["spec"]?["parallelism"] == .integer(1) && job["spec"]?["backoffLimit"] == .integer(6))
        #expect(job["spec"]?["selector"] == .object(["matchLabels": .object(["batch.kubernetes.io/controller-uid": "u-1"])]))
        #expect(job["spec"]?["template"]?["metadata"]?["labels"]?["batch.kubernetes.io/job-name"] == "once")
        #expect(Defaults.apply(Self.json(#"{"metadata":{"name":"team"}}"#), Self.resource("", "namespaces")).metadata("labels") == .object(["kubernetes.io/metadata.name": "team"]))
        #expect(Defaults.apply(Self.json("{}"), Self.resource("", "secrets"))["type"] == "Opaque")
    }

    /// The fields of the 422 that `object` gets as a create (or an update of `existing`).
    static func invalidFields(_ object: JSONValue, _ resource: ResourceType, existing: JSONValue? = nil) -> [String] {
        do {
            try ObjectValidation.check(Defaults.apply(object, resource), existing: existing.map { Defaults.apply($0, resource) }, resource)
            return []
        } catch {
            #expect(error.code == 422 && error.reason == "Invalid")
            return (error.details?.causes ?? []).map(\.field)
        }
    }

    @Test("Validation: each mistake a cause naming its field")
    func validation() {
        let pods = Self.resource("", "pods")
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[{"name":"a","image":"x"}]}}"#), pods) == [])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[]}}"#), pods) == ["spec.containers"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[{"name":"a"},{"name":"a","image":"x"}]}}"#), pods) == ["spec.containers[0].image", "spec.containers[1].name"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[{"name":"Bad_Name","image":"x","ports":[{"containerPort":70000,"protocol":"HTTP"}]}]}}"#), pods)
                == ["spec.containers[0].name", "spec.containers[0].ports[0].containerPort", "spec.containers[0].ports[0].protocol"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"restartPolicy":"Sometimes","dnsPolicy":"Mine","containers":[{"name":"a","image":"x","volumeMounts":[{"name":"data","mountPath":"/d"}]}]}}"#), pods)
                == ["spec.containers[0].volumeMounts[0].name", "spec.restartPolicy", "spec.dnsPolicy"])
        let deployments = Self.resource("apps", "deployments")
        let template = #""template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"a","image":"x"}]}}"#
        #expect(Self.invalidFields(Self.json(#"{"spec":{"selector":{"matchLabels":{"app":"web"}},"# + template + "}}"), deployments) == [])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"selector":{"matchLabels":{"app":"db"}},"# + template + "}}"), deployments) == ["spec.template.metadata.labels"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"# + template + "}}"), deployments) == ["spec.selector"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"replicas":-2,"selector":{"matchLabels":{}},"# + template + "}}"), deployments) == ["spec.selector", "spec.replicas"])
        let jobs = Self.resource("batch", "jobs")
        #expect(Self.invalidFields(Self.json(#"{"spec":{"selector":{"matchLabels":{"app":"web"}},"# + template + "}}"), jobs) == ["spec.template.spec.restartPolicy"])
        let services = Self.resource("", "services")
        #expect(Self.invalidFields(Self.json(#"{"spec":{"selector":{"app":"web"}}}"#), services) == ["spec.ports"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"clusterIP":"None"}}"#), services) == [], "a headless service needs no ports")
        #expect(Self.invalidFields(Self.json(#"{"spec":{"type":"Magic","ports":[{"port":0},{"port":80}]}}"#), services)
                == ["spec.type", "spec.ports[0].name", "spec.ports[0].port", "spec.ports[0].targetPort", "spec.ports[1].name"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"ports":[{"port":80,"nodePort":31000}]}}"#), services) == ["spec.ports[0].nodePort"],
                "a ClusterIP service has no node port")
        #expect(Self.invalidFields(Self.json(#"{"kind":"ConfigMap","data":{"ok.key":"1","bad key":"2"}}"#), Self.resource("", "configmaps")) == ["data[bad key]"])
        let bindings = ServedResources.find(group: "rbac.authorization.k8s.io", version: "v1", name: "clusterrolebindings")!
        #expect(Self.invalidFields(Self.json(#"{"roleRef":{"kind":"Role","name":""},"subjects":[{"kind":"Robot","name":"r"}]}"#), bindings)
                == ["roleRef.kind", "roleRef.name", "subjects[0].kind"])
    }

    @Test("Immutable on update: a pod's spec but its images, selectors, a Service's clusterIP, immutable ConfigMaps, a Secret's type, a binding's roleRef")
    func immutables() {
        let pods = Self.resource("", "pods")
        let pod = Self.json(#"{"spec":{"containers":[{"name":"a","image":"x:1"}],"tolerations":[{"key":"k","operator":"Exists"}]}}"#)
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[{"name":"a","image":"x:2"}],"tolerations":[{"key":"k","operator":"Exists"},{"key":"j","operator":"Exists"}],"activeDeadlineSeconds":60}}"#),
                                   pods, existing: pod) == [])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[{"name":"a","image":"x:1"}],"restartPolicy":"Never"}}"#), pods, existing: pod) == ["spec"])
        #expect(Self.invalidFields(Self.json(#"{"spec":{"containers":[{"name":"a","image":"x:1"}]}}"#), pods, existing: pod) == ["spec"], "tolerations may not be removed")
        let deployments = Self.resource("apps", "deployments")
        let template = #""template":{"metadata":{"labels":{"app":"web","tier":"f"}},"spec":{"containers":[{"name":"a","image":"x"}]}}"#
        #expect(Self.invalidFields(Self.json(#"{"spec":{"selector":{"matchLabels":{"app":"web","tier":"f"}},"# + template + "}}"), deployments,
                                   existing: Self.json(#"{"spec":{"selector":{"matchLabels":{"app":"web"}},"# + template + "}}")) == ["spec.selector"])
        let services = Self.resource("", "services")
        #expect(Self.invalidFields(Self.json(#"{"spec":{"clusterIP":"10.96.0.9","ports":[{"port":80}]}}"#), services,
                                   existing: Self.json(#"{"spec":{"clusterIP":"10.96.0.8","ports":[{"port":80}]}}"#)) == ["spec.clusterIPs[0]"])
        let configMaps = Self.resource("", "configmaps")
        #expect(Self.invalidFields(Self.json(#"{"immutable":true,"data":{"a":"2"}}"#), configMaps, existing: Self.json(#"{"immutable":true,"data":{"a":"1"}}"#)) == ["data"])
        #expect(Self.invalidFields(Self.json(#"{"data":{"a":"2"}}"#), configMaps, existing: Self.json(#"{"data":{"a":"1"}}"#)) == [])
        #expect(Self.invalidFields(Self.json(#"{"type":"kubernetes.io/tls"}"#), Self.resource("", "secrets"), existing: Self.json("{}")) == ["type"])
        let roleBindings = ServedResources.find(group: "rbac.authorization.k8s.io", version: "v1", name: "rolebindings")!
        #expect(Self.invalidFields(Self.json(#"{"roleRef":{"kind":"Role","name":"b"}}"#), roleBindings, existing: Self.json(#"{"roleRef":{"kind":"Role","name":"a"}}"#)) == ["roleRef"])
    }
}
