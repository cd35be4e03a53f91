"""The official Python `kubernetes` client (33.1.0) against a raftkube API server.

Usage: kubernetes_suite.py KUBECONFIG COMPACTED_RESOURCE_VERSION
Prints "OK <n> checks" when every check passed; exits 1 at the first that fails.
"""
import sys
import threading
import time

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

checks = 0


def check(condition, what):
    global checks
    if not condition:
        print("FAILED:", what)
        sys.exit(1)
    checks += 1


def expect_api_error(status, call, what):
    try:
        call()
    except ApiException as error:
        check(error.status == status, "%s: status %s, wanted %s (%s)" % (what, error.status, status, error.body))
        return error
    check(False, "%s: no error, wanted %s" % (what, status))


config.load_kube_config(config_file=sys.argv[1])
compacted = sys.argv[2]
core = client.CoreV1Api()
apps = client.AppsV1Api()
ns = "pyclient"

# Namespaces and the kubernetes Service.
core.create_namespace({"metadata": {"name": ns}})
names = [item.metadata.name for item in core.list_namespace().items]
check("default" in names and ns in names, "namespaces listed: %s" % names)
kubernetes = core.read_namespaced_service("kubernetes", "default")
check(kubernetes.spec.cluster_ip == "10.96.0.1", "kubernetes service IP %s" % kubernetes.spec.cluster_ip)

# CRUD with resourceVersions: a stale replace is 409.
made = core.create_namespaced_config_map(ns, {"metadata": {"name": "settings", "labels": {"app": "py"}}, "data": {"a": "1"}})
check(made.metadata.uid and made.metadata.resource_version, "created with uid and resourceVersion")
read = core.read_namespaced_config_map("settings", ns)
check(read.data == {"a": "1"}, "read back: %s" % read.data)
read.data["a"] = "2"
replaced = core.replace_namespaced_config_map("settings", ns, read)
check(replaced.data == {"a": "2"} and replaced.metadata.resource_version != made.metadata.resource_version, "replaced")
stale = made
stale.data = {"a": "stale"}
expect_api_error(409, lambda: core.replace_namespaced_config_map("settings", ns, stale), "stale replace")
patched = core.patch_namespaced_config_map("settings", ns, {"data": {"b": "3"}})
check(patched.data == {"a": "2", "b": "3"}, "strategic merge patch: %s" % patched.data)
json_patched = core.patch_namespaced_config_map("settings", ns, [{"op": "replace", "path": "/data/a", "value": "4"}])
check(json_patched.data["a"] == "4", "JSON patch: %s" % json_patched.data)
missing = expect_api_error(404, lambda: core.read_namespaced_config_map("nothing", ns), "read missing")
check('"reason":"NotFound"' in missing.body.replace(" ", ""), "404 is a Status: %s" % missing.body)
expect_api_error(409, lambda: core.create_namespaced_config_map(ns, {"metadata": {"name": "settings"}}), "create twice")
expect_api_error(422, lambda: core.create_namespaced_config_map(ns, {"metadata": {"name": "Bad_Name"}}), "invalid name")

# Typed models: a Deployment, defaulted by the server.
deployment = client.V1Deployment(
    metadata=client.V1ObjectMeta(name="web"),
    spec=client.V1DeploymentSpec(
        replicas=2,
        selector=client.V1LabelSelector(match_labels={"app": "web"}),
        template=client.V1PodTemplateSpec(
            metadata=client.V1ObjectMeta(labels={"app": "web"}),
            spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]))))
apps.create_namespaced_deployment(ns, deployment)
stored = apps.read_namespaced_deployment("web", ns)
check(stored.spec.strategy.type == "RollingUpdate" and stored.spec.strategy.rolling_update.max_surge == "25%", "deployment defaults: %s" % stored.spec.strategy)
check(stored.spec.template.spec.containers[0].image_pull_policy == "IfNotPresent", "pull policy defaulted")
scale = apps.patch_namespaced_deployment_scale("web", ns, {"spec": {"replicas": 5}})
check(scale.spec.replicas == 5, "scale subresource: %s" % scale.spec.replicas)

# Pagination: 7 objects, 3 at a time, every one once, the pages at one resourceVersion.
for index in range(7):
    core.create_namespaced_config_map(ns, {"metadata": {"name": "page-%d" % index, "labels": {"paged": "yes"}}})
seen, token, pages, versions = [], None, 0, set()
while True:
    page = core.list_namespaced_config_map(ns, label_selector="paged=yes", limit=3, _continue=token)
    pages += 1
    seen += [item.metadata.name for item in page.items]
    versions.add(page.metadata.resource_version)
    token = page.metadata._continue
    if not token:
        break
check(sorted(seen) == ["page-%d" % i for i in range(7)] and pages == 3, "pages %d: %s" % (pages, seen))
check(len(versions) == 1, "one resourceVersion for all pages: %s" % versions)

# Watch from a resourceVersion: the changes after it, in order, then live ones.
start = core.list_namespaced_config_map(ns).metadata.resource_version
core.create_namespaced_config_map(ns, {"metadata": {"name": "watched"}, "data": {"v": "1"}})
core.patch_namespaced_config_map("watched", ns, {"data": {"v": "2"}})


def later():
    time.sleep(1)
    core.delete_namespaced_config_map("watched", ns)


threading.Thread(target=later).start()
events = []
stream = watch.Watch()
for event in stream.stream(core.list_namespaced_config_map, ns, resource_version=start, timeout_seconds=10):
    if event["object"].metadata.name == "watched":
        events.append((event["type"], (event["object"].data or {}).get("v")))
    if event["type"] == "DELETED":
        stream.stop()
check([kind for kind, _ in events] == ["ADDED", "MODIFIED", "DELETED"], "watch events: %s" % events)
check(events[1][1] == "2", "the modification carries the new data: %s" % events)

# A watch from a compacted resourceVersion is 410 Gone: the client must list again.
gone = False
try:
    for event in watch.Watch().stream(core.list_namespaced_config_map, ns, resource_version=compacted, timeout_seconds=5):
        if event["type"] == "ERROR" and event["raw_object"].get("code") == 410:
            gone = True
            break
except ApiException as error:
    gone = error.status == 410
check(gone, "watch from compacted resourceVersion %s is 410" % compacted)

# Delete with options; the namespace goes with its content.
core.delete_namespaced_config_map("settings", ns, body=client.V1DeleteOptions(grace_period_seconds=0))
expect_api_error(404, lambda: core.read_namespaced_config_map("settings", ns), "deleted")
core.delete_namespace(ns)
for _ in range(100):
    try:
        core.read_namespace(ns)
        time.sleep(0.1)
    except ApiException as error:
        if error.status == 404:
            break
expect_api_error(404, lambda: core.read_namespace(ns), "namespace gone")
print("OK %d checks" % checks)
