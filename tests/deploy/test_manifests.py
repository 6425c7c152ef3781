"""The Kubernetes manifests behave (issue 12): probes on the health paths, shutdown within the
grace period, disruption budgets, topology spread, autoscaling (HPA for the APIs, KEDA on task
queue backlog for the workers), NetworkPolicies, an Ingress with TLS that keeps /internal/* in,
secrets only from Secrets, resources, pinned images, mTLS to Temporal. kubernetes-validate checks
the schema (test_validators.py); these check what the schema cannot."""

from __future__ import annotations

import argparse
import ipaddress
import tomllib
from typing import Any

import pytest

from closeflow.cli import API_SHUTDOWN_SECONDS, cmd_serve
from closeflow.registry import JOURNEYS, QUEUES
from services.outreach.webhooks import INBOUND_EMAIL_PATHS
from shared.relay import RelayTiming
from shared.settings import SERVICES, Settings
from tests.deploy.files import (
    CUSTOM_API_GROUPS,
    K8S_APPLIED,
    K8S_EXAMPLES,
    NAMESPACE,
    ROOT,
    by_name,
    config_map,
    containers,
    filled,
    k8s_docs,
    of_kind,
    pod_specs,
    quantity,
)

API_DEPLOYMENTS = {f"closeflow-{s}": s for s in SERVICES}
WORKER_DEPLOYMENTS = {f"closeflow-worker-{q}": q for q in QUEUES}


def container_of(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def port_number(container: dict[str, Any], name: str) -> int:
    for port in container.get("ports", []):
        if port["name"] == name:
            return int(port["containerPort"])
    raise AssertionError(f"{container['name']} has no port named {name}")


def pod_labels(deployment: dict[str, Any]) -> dict[str, str]:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert isinstance(labels, dict)
    return labels


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


# --- namespace ---------------------------------------------------------------------------------


def test_everything_is_in_the_closeflow_namespace() -> None:
    (namespace,) = of_kind("Namespace")
    assert namespace["metadata"]["name"] == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    for doc in k8s_docs():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]


def test_pods_meet_the_restricted_pod_security_standard() -> None:
    for name, spec in pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"] == {"drop": ["ALL"]}, name


# --- probes and shutdown -------------------------------------------------------------------------


def test_apis_probe_liveness_on_healthz_and_readiness_on_readyz() -> None:
    settings = Settings()
    deployments = by_name("Deployment")
    for name, service in API_DEPLOYMENTS.items():
        container = container_of(deployments[name])
        assert port_number(container, "http") == settings.port(service)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"


def test_workers_probe_their_health_port() -> None:
    config = config_map()
    deployments = by_name("Deployment")
    for name in WORKER_DEPLOYMENTS:
        container = container_of(deployments[name])
        assert port_number(container, "health") == int(config["CLOSEFLOW_WORKER_HEALTH_PORT"])
        assert port_number(container, "metrics") == int(config["CLOSEFLOW_WORKER_METRICS_PORT"])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "health"}


def test_workers_get_longer_than_their_grace_period_to_stop() -> None:
    # the kubelet's SIGKILL must come after the worker's own deadline for in-flight activities
    grace = int(config_map()["CLOSEFLOW_WORKER_GRACE_SECONDS"])
    deployments = by_name("Deployment")
    for name in WORKER_DEPLOYMENTS:
        spec = deployments[name]["spec"]["template"]["spec"]
        assert spec["terminationGracePeriodSeconds"] >= grace + 10, name


def test_apis_stop_before_the_kubelet_kills_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn waits for the requests in flight without end unless told: one that hangs would
    # take the pod to SIGKILL, and the lifespan's shutdown (relays handing back the rows they
    # claimed, the engine closed) would never run
    import uvicorn

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *_, **options: served.update(options))
    cmd_serve(Settings(), argparse.Namespace(service="deals"))
    requests = served.get("timeout_graceful_shutdown")
    assert requests is not None, "uvicorn.run without timeout_graceful_shutdown"
    deployments = by_name("Deployment")
    for name in API_DEPLOYMENTS:
        spec = deployments[name]["spec"]["template"]["spec"]
        pre_stop = container_of(deployments[name])["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep", name
        # what is left after the requests for the lifespan's shutdown: the relays' stop
        left = spec["terminationGracePeriodSeconds"] - int(pre_stop[1]) - requests
        assert left >= API_SHUTDOWN_SECONDS >= RelayTiming().stop_grace, (name, left)


# --- availability and scaling --------------------------------------------------------------------


def test_every_deployment_has_a_disruption_budget() -> None:
    budgets = of_kind("PodDisruptionBudget")
    for name, deployment in by_name("Deployment").items():
        covering = [
            b
            for b in budgets
            if selects(b["spec"]["selector"]["matchLabels"], pod_labels(deployment))
        ]
        assert len(covering) == 1, name
        assert covering[0]["spec"]["minAvailable"] == 1, name


def test_replicas_spread_over_nodes_and_zones() -> None:
    for name, deployment in by_name("Deployment").items():
        constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"]: c for c in constraints}
        assert set(keys) == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, name
        # two replicas never share a node; zones are preferred (a single-zone cluster still runs)
        assert keys["kubernetes.io/hostname"]["whenUnsatisfiable"] == "DoNotSchedule"
        for constraint in constraints:
            assert selects(constraint["labelSelector"]["matchLabels"], pod_labels(deployment))


def test_apis_scale_on_cpu_with_an_hpa() -> None:
    autoscalers = {
        h["spec"]["scaleTargetRef"]["name"]: h for h in of_kind("HorizontalPodAutoscaler")
    }
    assert set(autoscalers) == set(API_DEPLOYMENTS)
    for hpa in autoscalers.values():
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


# The temporal scaler's trigger metadata and authentication parameters as KEDA documents them
# (keda.sh, scalers/temporal, KEDA 2.17 and later): kubernetes-validate has no schema for custom
# resources, so their fields are checked here.
TEMPORAL_TRIGGER_METADATA = {
    "endpoint",
    "endpointFromEnv",
    "namespace",
    "taskQueue",
    "targetQueueSize",
    "activationTargetQueueSize",
    "queueTypes",
    "minConnectTimeout",
    "unsafeSsl",
    "tlsServerName",
}
TEMPORAL_AUTH_PARAMETERS = {"apiKey", "ca", "cert", "key", "keyPassword"}
SCALED_OBJECT_SPEC = {
    "scaleTargetRef",
    "pollingInterval",
    "cooldownPeriod",
    "initialCooldownPeriod",
    "idleReplicaCount",
    "minReplicaCount",
    "maxReplicaCount",
    "fallback",
    "advanced",
    "triggers",
}


def test_workers_scale_on_their_task_queue_backlog_with_keda() -> None:
    config = config_map()
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind("ScaledObject")}
    assert set(scaled) == set(WORKER_DEPLOYMENTS)
    auths = by_name("TriggerAuthentication")
    for name, queue in WORKER_DEPLOYMENTS.items():
        spec = scaled[name]["spec"]
        assert set(spec) <= SCALED_OBJECT_SPEC, name
        assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "temporal"
        metadata = trigger["metadata"]
        assert set(metadata) <= TEMPORAL_TRIGGER_METADATA, name
        assert all(isinstance(v, str) for v in metadata.values()), "KEDA metadata are strings"
        assert metadata["endpoint"] == config["CLOSEFLOW_TEMPORAL_ADDRESS"]
        assert metadata["namespace"] == config["CLOSEFLOW_TEMPORAL_NAMESPACE"]
        assert metadata["tlsServerName"] == config["CLOSEFLOW_TEMPORAL_TLS_SERVER_NAME"]
        assert metadata["taskQueue"] == Settings().task_queue(queue)
        # the journeys queue holds workflow tasks, the services' queues activity tasks
        assert metadata["queueTypes"] == ("workflow" if queue == JOURNEYS else "activity")
        assert int(metadata["targetQueueSize"]) > 0
        auth = auths[trigger["authenticationRef"]["name"]]
        references = auth["spec"]["secretTargetRef"]
        assert {r["parameter"] for r in references} <= TEMPORAL_AUTH_PARAMETERS
        # KEDA connects with closeflow's own client certificate
        assert {r["parameter"]: (r["name"], r["key"]) for r in references} == {
            "cert": ("closeflow-temporal-client-tls", "tls.crt"),
            "key": ("closeflow-temporal-client-tls", "tls.key"),
            "ca": ("closeflow-temporal-client-tls", "ca.crt"),
        }


def test_only_keda_resources_are_custom() -> None:
    custom = {d["kind"] for d in k8s_docs() if d["apiVersion"].startswith(CUSTOM_API_GROUPS)}
    assert custom == {"ScaledObject", "TriggerAuthentication"}


# --- resources and images ------------------------------------------------------------------------


def test_every_container_has_requests_within_limits() -> None:
    for name, container in containers():
        resources = container["resources"]
        for kind in ("cpu", "memory"):
            request = quantity(resources["requests"][kind])
            assert 0 < request <= quantity(resources["limits"][kind]), (name, kind)


def test_images_are_pinned() -> None:
    # closeflow's own image at the project's version, never a moving tag
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, container in containers():
        assert container["image"] == f"closeflow:{version}", name
        assert container.get("imagePullPolicy", "IfNotPresent") == "IfNotPresent", name


# --- secrets ------------------------------------------------------------------------------------


# the settings that hold secrets: SecretStr fields, and database URLs (they carry passwords)
SECRET_SETTINGS = {
    f"CLOSEFLOW_{name.upper()}"
    for name, field in Settings.model_fields.items()
    if "SecretStr" in str(field.annotation) or name.endswith("_database_url")
}


def test_secrets_come_from_secret_objects_only() -> None:
    # no secret in the ConfigMap or in a container's literal env; the Secret itself is not applied
    # with the rest (examples/ holds its shape), so an apply never overwrites the real one
    config = config_map()
    assert {"CLOSEFLOW_API_KEYS", "CLOSEFLOW_PROSPECTING_DATABASE_URL"} <= SECRET_SETTINGS
    assert not set(config) & SECRET_SETTINGS
    assert [d["kind"] for p in K8S_APPLIED for d in k8s_docs([p]) if d["kind"] == "Secret"] == []
    assert [d["metadata"]["name"] for d in k8s_docs(K8S_EXAMPLES)] == ["closeflow-secrets"]
    for name, container in containers():
        assert not container.get("env"), f"{name}: literal env; use the ConfigMap or Secret"
        sources = [next(iter(s)) for s in container["envFrom"]]
        assert sources == ["configMapRef", "secretRef"], name


def test_temporal_mtls_files_are_mounted_from_their_secret() -> None:
    config = config_map()
    files = [config[f"CLOSEFLOW_TEMPORAL_TLS_{n}"] for n in ("CERT", "KEY", "CA")]
    assert [f.rsplit("/", 1)[1] for f in files] == ["tls.crt", "tls.key", "ca.crt"]
    directory = {f.rsplit("/", 1)[0] for f in files}
    # the settings are valid together (a certificate with its key)
    tls = {k.removeprefix("CLOSEFLOW_").lower(): v for k, v in config.items() if "_TLS" in k}
    assert Settings(environment="test", **tls).temporal_tls_server_name == "temporal-frontend"
    deployments = by_name("Deployment")
    for name in [*API_DEPLOYMENTS, *WORKER_DEPLOYMENTS]:
        spec = deployments[name]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        (mount,) = [
            m
            for m in container_of(deployments[name])["volumeMounts"]
            if m["mountPath"] in directory
        ]
        assert mount["readOnly"] is True
        assert volumes[mount["name"]]["secret"]["secretName"] == "closeflow-temporal-client-tls"


# --- network ------------------------------------------------------------------------------------


def policies_for(labels: dict[str, str], direction: str) -> list[dict[str, Any]]:
    return [
        p
        for p in of_kind("NetworkPolicy")
        if direction in p["spec"]["policyTypes"]
        and p["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
    ]


def test_network_policies_deny_by_default() -> None:
    (deny,) = [p for p in of_kind("NetworkPolicy") if p["spec"]["podSelector"] == {}]
    assert set(deny["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny["spec"] and "egress" not in deny["spec"]


def test_apis_accept_only_the_ingress_controller_closeflow_and_prometheus() -> None:
    for name in API_DEPLOYMENTS:
        labels = pod_labels(by_name("Deployment")[name])
        sources = [
            peer
            for policy in policies_for(labels, "Ingress")
            for rule in policy["spec"].get("ingress", [])
            for peer in rule["from"]
        ]
        namespaces = {
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            for p in sources
            if "namespaceSelector" in p
        }
        assert namespaces == {"ingress-nginx", "monitoring"}, name
        pods = [p["podSelector"]["matchLabels"] for p in sources if set(p) == {"podSelector"}]
        assert pods == [{"app.kubernetes.io/part-of": "closeflow"}], name
        assert not any("ipBlock" in p for p in sources), name


def test_workers_accept_only_prometheus() -> None:
    for name in WORKER_DEPLOYMENTS:
        labels = pod_labels(by_name("Deployment")[name])
        rules = [r for p in policies_for(labels, "Ingress") for r in p["spec"].get("ingress", [])]
        assert [r["ports"] for r in rules] == [[{"protocol": "TCP", "port": "metrics"}]], name


def test_egress_to_the_internet_skips_private_and_metadata_addresses() -> None:
    labels = {"app.kubernetes.io/part-of": "closeflow"}
    (egress,) = policies_for(labels, "Egress")[1:]  # the first is the default deny
    internet = [
        peer["ipBlock"]
        for rule in egress["spec"]["egress"]
        for peer in rule["to"]
        if "ipBlock" in peer and {p["port"] for p in rule["ports"]} & {443, 587}
    ]
    assert internet, "no egress to the providers"
    v4 = next(b for b in internet if b["cidr"] == "0.0.0.0/0")
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(v4["except"])


def _allows_to_the_internet(rule: dict[str, Any], port: int) -> bool:
    """Whether an egress rule lets a pod reach `port` on a public address (203.0.113.7)."""
    public = ipaddress.ip_address("203.0.113.7")
    reaches = any(
        public in ipaddress.ip_network(peer["ipBlock"]["cidr"])
        and not any(public in ipaddress.ip_network(n) for n in peer["ipBlock"].get("except", []))
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    )
    return reaches and any(
        p["port"] <= port <= p.get("endPort", p["port"]) for p in rule.get("ports", [])
    )


@pytest.mark.parametrize(
    ("what", "port"),
    [
        ("Twilio, webhooks and event subscribers over https", 443),
        ("SMTP with STARTTLS (CLOSEFLOW_SMTP_PORT in config.yaml)", 587),
        ("SMTP over TLS", 465),
        ("the IMAP reply mailbox over TLS (CLOSEFLOW_IMAP_PORT 0, imap_tls=tls)", 993),
        ("the IMAP reply mailbox with STARTTLS", 143),
        ("Temporal Cloud, as config.yaml tells (<namespace>.<account>.tmprl.cloud:7233)", 7233),
    ],
)
def test_egress_reaches_every_provider_the_settings_name(what: str, port: int) -> None:
    """The default deny drops whatever the egress policy does not name: an IMAP mailbox or
    Temporal Cloud configured as the docs say was never reached (connections time out)."""
    labels = {"app.kubernetes.io/part-of": "closeflow"}
    (egress,) = policies_for(labels, "Egress")[1:]  # the first is the default deny
    rules = egress["spec"]["egress"]
    assert any(_allows_to_the_internet(rule, port) for rule in rules), f"{what}: port {port}"


# --- ingress ------------------------------------------------------------------------------------


def test_ingress_serves_every_api_over_tls_and_never_internal_routes() -> None:
    ingress = by_name("Ingress")["closeflow"]
    tls_hosts = {h for t in ingress["spec"]["tls"] for h in t["hosts"]}
    services = by_name("Service")
    routed = set()
    for rule in ingress["spec"]["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']} has no TLS certificate"
        paths = {p["path"]: p for p in rule["http"]["paths"]}
        # the longest matching path wins (Ingress spec): these go to a Service with no endpoints
        for hidden, kind in (("/internal", "Prefix"), ("/metrics", "Exact"), ("/readyz", "Exact")):
            assert paths[hidden]["pathType"] == kind
            blocked = services[paths[hidden]["backend"]["service"]["name"]]
            assert "selector" not in blocked["spec"], "an unpublished path must reach no pod"
        root = paths["/"]["backend"]["service"]["name"]
        assert services[root]["spec"].get("selector"), root
        routed.add(root)
    assert routed == set(API_DEPLOYMENTS)


def _body_size(ingress: dict[str, Any]) -> int:
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size.endswith("m"), size
    return int(size.removesuffix("m")) * 1024 * 1024


def test_ingress_lets_through_what_each_path_accepts_and_no_more() -> None:
    """The controller's body cap is the app's: 1 MiB everywhere, the inbound email webhooks'
    own (a reply with its attachments) on exactly those two paths of outreach, over TLS."""
    ingresses = by_name("Ingress")
    assert set(ingresses) == {"closeflow", "closeflow-inbound-email"}
    defaults = Settings(environment="test")
    assert _body_size(ingresses["closeflow"]) == defaults.max_body_bytes
    inbound = ingresses["closeflow-inbound-email"]
    assert _body_size(inbound) == defaults.inbound_email_max_body_bytes
    (rule,) = inbound["spec"]["rules"]
    assert rule["host"] in {h for t in inbound["spec"]["tls"] for h in t["hosts"]}
    outreach = next(r for r in ingresses["closeflow"]["spec"]["rules"] if r["host"] == rule["host"])
    assert outreach["http"]["paths"][-1]["backend"]["service"]["name"] == "closeflow-outreach"
    paths = {(p["path"], p["pathType"]): p["backend"]["service"] for p in rule["http"]["paths"]}
    assert set(paths) == {(path, "Exact") for path in INBOUND_EMAIL_PATHS}
    assert all(
        s == {"name": "closeflow-outreach", "port": {"name": "http"}} for s in paths.values()
    )


@pytest.mark.parametrize(
    "setting",
    [
        "CLOSEFLOW_OUTREACH_PUBLIC_URL",
        "CLOSEFLOW_REFERRALS_PUBLIC_URL",
        "CLOSEFLOW_DEALS_PUBLIC_URL",
    ],
)
def test_public_urls_are_ingress_hosts_over_https(setting: str) -> None:
    ingress = by_name("Ingress")["closeflow"]
    url = config_map()[setting]
    assert url.startswith("https://")
    assert url.removeprefix("https://").rstrip("/") in {r["host"] for r in ingress["spec"]["rules"]}


def test_the_config_with_its_secret_filled_in_passes_the_production_checks() -> None:
    # what an operator applies: the ConfigMap, and the Secret's shape with generated values
    (secret,) = k8s_docs(K8S_EXAMPLES)
    secrets = {
        name: filled(name) if value == "" and name in SECRET_SETTINGS else str(value)
        for name, value in secret["stringData"].items()
    }
    values = {**config_map(), **secrets}
    settings = Settings(**{k.removeprefix("CLOSEFLOW_").lower(): v for k, v in values.items()})
    assert settings.environment == "production"
    assert settings.temporal_tls and settings.temporal_tls_cert
