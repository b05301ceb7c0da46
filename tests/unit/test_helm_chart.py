"""The Helm chart, rendered offline by Helm's own engine and checked against Kubernetes schemas."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "oms"
KUBERNETES_VERSION = "1.30.0"
RELEASE = "shop"
NAMESPACE = "oms-test"
COMPONENTS = {"orders", "inventory", "shipping", "fulfilment", "returns", "gateway"}
WITH_DATABASE = {"orders", "inventory", "shipping", "fulfilment", "returns"}
# Every component with a database of its own: the gRPC services and the gateway.
MIGRATED = WITH_DATABASE | {"gateway"}
# Components that consume a stream, and so are scaled by KEDA on its lag.
WITH_CONSUMER = {"orders", "inventory", "fulfilment"}
GRPC_HEALTH = {
    "orders": "oms.orders.v1.OrdersService",
    "inventory": "oms.inventory.v1.InventoryService",
    "shipping": "oms.shipping.v1.ShippingService",
    "fulfilment": "oms.fulfilment.v1.FulfilmentService",
    "returns": "oms.returns.v1.ReturnsService",
}
ALL_FEATURES = {
    "networkPolicy": {"enabled": True},
    "keda": {"enabled": True},
    "global": {"otlpEndpoint": "http://otel-collector.observability:4317",
               "imagePullSecrets": [{"name": "registry"}]},
}


@pytest.fixture(scope="module")
def chart() -> Iterator[helm_python.Chart]:
    loaded = helm_python.Chart.load(CHART)
    yield loaded
    loaded.close()


def render(chart: helm_python.Chart, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    files = chart.render(values=values or {}, name=RELEASE, namespace=NAMESPACE)
    return [
        document
        for path, text in files.items()
        if path.endswith(".yaml")
        for document in yaml.safe_load_all(text)
        if document
    ]


def by_kind(manifests: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        m["metadata"]["labels"]["app.kubernetes.io/component"]: m
        for m in manifests
        if m["kind"] == kind and "app.kubernetes.io/component" in m["metadata"]["labels"]
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["defaults", "all-features"])
def test_lint_is_clean_in_strict_mode(values: dict[str, Any] | None) -> None:
    report = helm_python.lint(CHART, values, strict=True, namespace=NAMESPACE)

    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values", [None, ALL_FEATURES], ids=["defaults", "all-features"])
def test_every_manifest_is_valid_kubernetes(
    chart: helm_python.Chart, values: dict[str, Any] | None
) -> None:
    manifests = render(chart, values)

    for manifest in manifests:
        if manifest["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema ships with kubernetes-validate
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    names = [(m["kind"], m["metadata"]["name"]) for m in manifests]
    assert len(names) == len(set(names))


def test_each_component_gets_its_own_workload_objects(chart: helm_python.Chart) -> None:
    manifests = render(chart)

    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget",
                 "ServiceAccount"):
        assert set(by_kind(manifests, kind)) == COMPONENTS, kind
    assert not [m for m in manifests if m["kind"] in ("NetworkPolicy", "ScaledObject")]


def test_labels_and_selectors_tie_the_objects_together(chart: helm_python.Chart) -> None:
    manifests = render(chart)
    deployments = by_kind(manifests, "Deployment")
    services = by_kind(manifests, "Service")
    autoscalers = by_kind(manifests, "HorizontalPodAutoscaler")
    budgets = by_kind(manifests, "PodDisruptionBudget")

    for name in COMPONENTS:
        deployment = deployments[name]
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector == {
            "app.kubernetes.io/name": "oms",
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/component": name,
        }
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
        for manifest in (deployment, services[name], autoscalers[name], budgets[name]):
            labels = manifest["metadata"]["labels"]
            assert labels["app.kubernetes.io/managed-by"] == "Helm"
            assert labels["app.kubernetes.io/part-of"] == "oms"
            assert labels["app.kubernetes.io/version"] == "0.1.0"
            assert selector.items() <= labels.items()
        assert services[name]["spec"]["selector"] == selector
        assert budgets[name]["spec"]["selector"]["matchLabels"] == selector
        assert autoscalers[name]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"


def test_autoscaling_is_per_component(chart: helm_python.Chart) -> None:
    manifests = render(chart, {
        "components": {
            "orders": {"autoscaling": {"minReplicas": 3, "maxReplicas": 20}},
            "gateway": {"autoscaling": {"enabled": False}, "replicas": 4},
        },
    })
    autoscalers = by_kind(manifests, "HorizontalPodAutoscaler")
    deployments = by_kind(manifests, "Deployment")

    orders = autoscalers["orders"]["spec"]
    assert (orders["minReplicas"], orders["maxReplicas"]) == (3, 20)
    cpu = orders["metrics"][0]["resource"]
    assert cpu["name"] == "cpu" and cpu["target"]["averageUtilization"] == 70
    assert autoscalers["inventory"]["spec"]["maxReplicas"] == 10
    assert "gateway" not in autoscalers
    assert deployments["gateway"]["spec"]["replicas"] == 4


def test_grpc_services_use_native_grpc_readiness(chart: helm_python.Chart) -> None:
    deployments = by_kind(render(chart), "Deployment")

    for name, health_service in GRPC_HEALTH.items():
        main = container(deployments[name])
        assert main["ports"] == [{"name": "grpc", "containerPort": 50051, "protocol": "TCP"}]
        assert main["readinessProbe"]["grpc"] == {"port": 50051, "service": health_service}
        # Not the overall health "": it also needs NATS, and a restart cannot fix NATS.
        assert main["livenessProbe"]["tcpSocket"] == {"port": "grpc"}
        assert main["startupProbe"]["tcpSocket"] == {"port": "grpc"}


def test_gateway_uses_its_http_health_endpoints(chart: helm_python.Chart) -> None:
    gateway = container(by_kind(render(chart), "Deployment")["gateway"])

    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_configuration_comes_from_the_environment(chart: helm_python.Chart) -> None:
    manifests = render(chart, {"global": {"natsUrl": "nats://nats.messaging:4222"}})
    deployments = by_kind(manifests, "Deployment")
    services = by_kind(manifests, "Service")

    for name in WITH_DATABASE:
        variables = env(container(deployments[name]))
        assert variables["OMS_DATABASE_URL"] == {
            "secretKeyRef": {"name": f"oms-{name}-database", "key": "url"}
        }
        assert variables["OMS_NATS_URL"] == "nats://nats.messaging:4222"
        assert variables["OMS_GRPC_HOST"] == "0.0.0.0"
        assert variables["OMS_GRPC_PORT"] == "50051"
        assert variables["OMS_LOG_FORMAT"] == "json"

    gateway = env(container(deployments["gateway"]))
    orders = services["orders"]
    assert gateway["OMS_GATEWAY_ORDERS_TARGET"] == (
        f"{orders['metadata']['name']}.{NAMESPACE}.svc.cluster.local:"
        f"{orders['spec']['ports'][0]['port']}"
    )
    inventory = services["inventory"]
    assert gateway["OMS_GATEWAY_INVENTORY_TARGET"] == (
        f"{inventory['metadata']['name']}.{NAMESPACE}.svc.cluster.local:"
        f"{inventory['spec']['ports'][0]['port']}"
    )
    assert gateway["OMS_GATEWAY_HTTP_HOST"] == "0.0.0.0"
    assert gateway["OMS_GATEWAY_HTTP_PORT"] == "8080"
    assert gateway["OMS_DATABASE_URL"] == {
        "secretKeyRef": {"name": "oms-gateway-database", "key": "url"}}
    for deployment in deployments.values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False
        assert not [v for v in container(deployment)["env"] if v["name"].startswith("OTEL_")]


def test_tracing_is_exported_when_a_collector_is_given(chart: helm_python.Chart) -> None:
    deployments = by_kind(render(chart, ALL_FEATURES), "Deployment")

    for deployment in deployments.values():
        variables = env(container(deployment))
        assert variables["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4317"
        assert "k8s.pod.name=$(POD_NAME)" in variables["OTEL_RESOURCE_ATTRIBUTES"]


def test_pods_meet_the_restricted_security_standard(chart: helm_python.Chart) -> None:
    manifests = render(chart)
    pods = [d["spec"]["template"]["spec"] for d in by_kind(manifests, "Deployment").values()]
    pods += [j["spec"]["template"]["spec"] for j in manifests if j["kind"] == "Job"]

    for pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        (main,) = pod["containers"]
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert main["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in main["volumeMounts"]
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"]
        assert set(main["resources"]) == {"requests", "limits"}


def test_pods_outlive_the_services_shutdown_grace(chart: helm_python.Chart) -> None:
    for deployment in by_kind(render(chart), "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
        assert pod["terminationGracePeriodSeconds"] > int(pre_stop[-1]) + 10


def test_migrations_run_as_a_hook_for_services_with_a_database(chart: helm_python.Chart) -> None:
    manifests = render(chart)
    jobs = by_kind(manifests, "Job")
    deployments = by_kind(manifests, "Deployment")

    assert set(jobs) == {f"{name}-migrations" for name in MIGRATED}
    for name in MIGRATED:
        job = jobs[f"{name}-migrations"]
        annotations = job["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        pod = job["spec"]["template"]["spec"]
        (migrate,) = pod["containers"]
        assert migrate["args"] == ["migrate"]
        assert migrate["image"] == container(deployments[name])["image"]
        assert env(migrate)["OMS_DATABASE_URL"]["secretKeyRef"]["name"] == f"oms-{name}-database"
        assert pod["restartPolicy"] == "Never"
        assert "serviceAccountName" not in pod
        service_selector = deployments[name]["spec"]["selector"]["matchLabels"]
        assert not service_selector.items() <= job["spec"]["template"]["metadata"]["labels"].items()

    assert not by_kind(render(chart, {"migrations": {"enabled": False}}), "Job")


def test_network_policies_deny_by_default_and_allow_what_is_needed(
    chart: helm_python.Chart,
) -> None:
    manifests = render(chart, ALL_FEATURES)
    policies = {m["metadata"]["name"]: m["spec"] for m in manifests if m["kind"] == "NetworkPolicy"}

    assert set(policies) == {
        "shop-oms-default-deny", "shop-oms-orders", "shop-oms-inventory", "shop-oms-shipping",
        "shop-oms-fulfilment", "shop-oms-returns", "shop-oms-gateway",
        "shop-oms-orders-migrations", "shop-oms-inventory-migrations",
        "shop-oms-shipping-migrations", "shop-oms-fulfilment-migrations",
        "shop-oms-returns-migrations", "shop-oms-gateway-migrations",
    }
    deny = policies["shop-oms-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert "ingress" not in deny and "egress" not in deny
    assert deny["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "oms", "app.kubernetes.io/instance": RELEASE,
    }

    gateway_pods = {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "oms", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "gateway",
    }}}
    returns_pods = {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "oms", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "returns",
    }}}
    (orders_ingress,) = policies["shop-oms-orders"]["ingress"]
    assert orders_ingress["from"] == [gateway_pods, returns_pods], "returns reads orders"
    assert orders_ingress["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    fulfilment_pods = {"podSelector": {"matchLabels": {
        "app.kubernetes.io/name": "oms", "app.kubernetes.io/instance": RELEASE,
        "app.kubernetes.io/component": "fulfilment",
    }}}
    (inventory_ingress,) = policies["shop-oms-inventory"]["ingress"]
    assert inventory_ingress["from"] == [fulfilment_pods, gateway_pods], (
        "fulfilment reads nodes and bins, the gateway available-to-sell")
    assert "ingress" not in policies["shop-oms-fulfilment"]
    (shipping_ingress,) = policies["shop-oms-shipping"]["ingress"]
    assert shipping_ingress["from"] == [fulfilment_pods, gateway_pods, returns_pods], (
        "fulfilment and returns buy labels, the gateway records carriers' tracking webhooks")
    assert "ingress" not in policies["shop-oms-returns"]

    gateway_egress = policies["shop-oms-gateway"]["egress"]
    to_pods = {rule["to"][0]["podSelector"]["matchLabels"].get("app.kubernetes.io/component"):
               rule["ports"] for rule in gateway_egress
               if rule.get("to") and "podSelector" in rule["to"][0]}
    assert {"port": 50051, "protocol": "TCP"} in to_pods["orders"]
    assert "shipping" in to_pods, "tracking webhooks go to shipping"
    webhooks_out = [rule for rule in gateway_egress
                    if rule.get("to") and "ipBlock" in rule["to"][0]]
    assert webhooks_out and "10.0.0.0/8" in webhooks_out[0]["to"][0]["ipBlock"]["except"]
    ports = {name: {p["port"] for rule in policies[f"shop-oms-{name}"]["egress"]
                    for p in rule["ports"]} for name in WITH_DATABASE}
    assert ports == {"orders": {53, 4222, 5432, 587}, "inventory": {53, 4222, 5432},
                     "shipping": {53, 4222, 5432, 443},
                     "fulfilment": {53, 4222, 5432, 50051},
                     "returns": {53, 4222, 5432, 50051}}, (
        "orders also reaches its mail server, shipping the carriers' APIs, fulfilment "
        "inventory and shipping, returns orders and shipping"
    )


def test_keda_scales_consumers_on_jetstream_lag(chart: helm_python.Chart) -> None:
    manifests = render(chart, ALL_FEATURES)
    scaled = by_kind(manifests, "ScaledObject")
    deployments = by_kind(manifests, "Deployment")

    assert set(scaled) == WITH_CONSUMER
    # KEDA owns the HPA of a scaled Deployment; a second one would fight it.
    assert set(by_kind(manifests, "HorizontalPodAutoscaler")) == {"gateway", "shipping",
                                                                   "returns"}
    expected = {"orders": ("OMS_INVENTORY", "orders"), "inventory": ("OMS_ORDERS", "inventory"),
                "fulfilment": ("OMS_ORDERS", "fulfilment")}
    for name, (stream, consumer) in expected.items():
        spec = scaled[name]["spec"]
        assert scaled[name]["apiVersion"] == "keda.sh/v1alpha1"
        assert spec["scaleTargetRef"]["name"] == deployments[name]["metadata"]["name"]
        assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 10)
        triggers = {t["type"]: t for t in spec["triggers"]}
        assert triggers["nats-jetstream"]["metadata"] == {
            "natsServerMonitoringEndpoint": "nats.nats.svc.cluster.local:8222",
            "account": "$G",
            "stream": stream,
            "consumer": consumer,
            "lagThreshold": "100",
        }
        assert triggers["cpu"]["metadata"] == {"value": "70"}


@pytest.mark.parametrize(
    "values",
    [
        {"components": {"orders": {"grpc": {"port": "fifty"}}}},
        {"components": {"orders": {"autoscalling": {"maxReplicas": 3}}}},
        {"components": {"orders": {"autoscaling": {"minReplicas": 0}}}},
        {"components": {"gateway": {"grpc": {"port": 50051, "healthService": "a.v1.B"}}}},
        {"components": {"inventory": {"databaseSecret": {"name": ""}}}},
        {"global": {"logFormat": "yaml"}},
        {"default": {"terminationGracePeriodSeconds": 5}},
        {"keda": {"enabled": "yes"}},
        {"unknownTopLevelKey": True},
    ],
    ids=lambda v: str(v),
)
def test_schema_rejects_invalid_values(chart: helm_python.Chart, values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        chart.validate_schema(values)
    with pytest.raises(helm_python.HelmValuesError):
        chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def test_schema_accepts_the_defaults_and_every_feature(chart: helm_python.Chart) -> None:
    chart.validate_schema()
    chart.validate_schema(ALL_FEATURES)


def test_inverted_replica_bounds_fail_the_render(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match="maxReplicas is below minReplicas"):
        render(chart, {"components": {"orders": {"autoscaling": {"maxReplicas": 1}}}})


def test_notes_tell_how_to_reach_each_component(chart: helm_python.Chart) -> None:
    files = chart.render(values={}, name=RELEASE, namespace=NAMESPACE)
    notes = next(text for path, text in files.items() if path.endswith("NOTES.txt"))

    assert f"orders: shop-oms-orders.{NAMESPACE}.svc.cluster.local:50051" in notes
    assert "create secret generic oms-inventory-database" in notes


def test_a_target_component_must_be_enabled(chart: helm_python.Chart) -> None:
    with pytest.raises(helm_python.HelmRenderError, match='"orders" is not enabled'):
        render(chart, {"components": {"orders": {"enabled": False}}})

    with pytest.raises(helm_python.HelmRenderError, match='"inventory" is not enabled'):
        render(chart, {"components": {"inventory": {"enabled": False}}})

    alone = render(chart, {"components": {"orders": {"enabled": False},
                                          "gateway": {"enabled": False},
                                          "fulfilment": {"enabled": False},
                                          "returns": {"enabled": False}}})
    assert set(by_kind(alone, "Deployment")) == {"inventory", "shipping"}
