"""Kubernetes artifacts for a registered model: an image build context, a KServe InferenceService and
a plain Deployment + Service, validated offline against the Kubernetes object models.

Written to ``DIR`` (default ``.mloop/deployments/<name>/kubernetes``)::

    image/Dockerfile, image/model/ (the bundle), image/mloop/ (the server), image/requirements.txt
    inferenceservice.yaml     KServe v1beta1, Open Inference (V2) protocol on port 8080
    deployment.yaml           apps/v1 Deployment + v1 Service, the alternative without KServe
    README.md                 how to build, create the token Secret and apply

The bearer token is never written: every manifest references the Secret ``<name>-token``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.config import ProjectConfig
from mloop.errors import DeployError

PORT = 8080
SERVING_PACKAGES = ("numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "cloudpickle", "mlflow-skinny", "typer",
                    "rich", "pydantic", "pydantic-settings", "uvicorn", "uvloop", "httptools", "orjson",
                    "prometheus-client")


@dataclass
class KubernetesOptions:
    image: str = ""
    replicas: int = 1
    cpu: str = "500m"
    memory: str = "512Mi"
    namespace: str = ""


def k8s_name(name: str) -> str:
    """A DNS-1123 label from a model name (``breast_cancer`` → ``breast-cancer``)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50]
    if not label or not label[0].isalpha():
        label = f"m-{label}".strip("-")
    return label


def manifests(name: str, model: str, version: str, opts: KubernetesOptions) -> dict[str, list[dict[str, Any]]]:
    """The manifest documents by file name."""
    label = k8s_name(name)
    image = opts.image or f"{label}:v{version}"
    meta: dict[str, Any] = {"name": label, "labels": {"app.kubernetes.io/name": label,
                                                      "app.kubernetes.io/managed-by": "mloop",
                                                      "mloop.dev/model": k8s_name(model),
                                                      "mloop.dev/version": str(version)}}
    if opts.namespace:
        meta["namespace"] = opts.namespace
    container = {
        "name": "kserve-container",
        "image": image,
        "args": ["serve", "/model", "--host", "0.0.0.0", "--port", str(PORT), "--no-access-log"],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "env": [{"name": "MLOOP_TOKEN", "valueFrom": {"secretKeyRef": {"name": f"{label}-token", "key": "token"}}}],
        "resources": {"requests": {"cpu": opts.cpu, "memory": opts.memory},
                      "limits": {"memory": opts.memory}},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": PORT}, "periodSeconds": 10,
                          "initialDelaySeconds": 10},
    }
    inference_service = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {**meta, "annotations": {"serving.kserve.io/enable-prometheus-scraping": "true",
                                             "prometheus.kserve.io/port": str(PORT),
                                             "prometheus.kserve.io/path": "/metrics"}},
        "spec": {"predictor": {"minReplicas": opts.replicas, "containers": [container]}},
    }
    plain_container = {**container, "name": "server"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": opts.replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": label}},
            "template": {"metadata": {"labels": meta["labels"],
                                      "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                                      "prometheus.io/path": "/metrics"}},
                         "spec": {"containers": [plain_container],
                                  "terminationGracePeriodSeconds": 40}},
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"selector": {"app.kubernetes.io/name": label},
                 "ports": [{"name": "http", "port": 80, "targetPort": PORT, "protocol": "TCP"}]},
    }
    return {"inferenceservice.yaml": [inference_service], "deployment.yaml": [deployment, service]}


_MODELS = {("apps/v1", "Deployment"): "V1Deployment", ("v1", "Service"): "V1Service"}


def validate(document: dict[str, Any]) -> None:
    """Check a manifest against the Kubernetes object models: required fields, types, and no unknown
    field (a misspelt key is dropped by the models, so the round trip must give the document back)."""
    from kubernetes.client import ApiClient

    api = ApiClient()
    kind = (document.get("apiVersion"), document.get("kind"))
    if kind == ("serving.kserve.io/v1beta1", "InferenceService"):
        _validate_inference_service(api, document)
        return
    model = _MODELS.get(kind)  # type: ignore[arg-type]
    if model is None:
        raise DeployError(f"no schema to check {kind[1]} ({kind[0]}) against")
    _roundtrip(api, document, model, f"{kind[1]} {document.get('metadata', {}).get('name')}")


def _validate_inference_service(api: Any, document: dict[str, Any]) -> None:
    name = document.get("metadata", {}).get("name", "")
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) or len(name) > 63:
        raise DeployError(f"InferenceService name {name!r} is not a DNS-1123 label")
    _roundtrip(api, document["metadata"], "V1ObjectMeta", "InferenceService metadata")
    predictor = document.get("spec", {}).get("predictor")
    if set(document.get("spec", {})) - {"predictor", "transformer", "explainer"}:
        raise DeployError("InferenceService spec has unknown fields")
    if not isinstance(predictor, dict) or not predictor.get("containers"):
        raise DeployError("InferenceService spec.predictor needs containers")
    allowed = {"containers", "minReplicas", "maxReplicas", "scaleTarget", "scaleMetric", "serviceAccountName",
               "timeout", "canaryTrafficPercent", "nodeSelector", "tolerations"}
    unknown = set(predictor) - allowed
    if unknown:
        raise DeployError(f"InferenceService spec.predictor has unknown fields {sorted(unknown)}")
    for container in predictor["containers"]:
        _roundtrip(api, container, "V1Container", f"InferenceService container {container.get('name')}")


def _roundtrip(api: Any, document: dict[str, Any], model: str, what: str) -> None:
    try:
        obj = api._ApiClient__deserialize(document, model)
    except (ValueError, TypeError) as err:
        raise DeployError(f"{what} is not a valid {model}: {err}") from err
    back = api.sanitize_for_serialization(obj)
    lost = _dropped(document, back)
    if lost:
        raise DeployError(f"{what}: unknown field {lost} (not in {model})")


def _dropped(original: Any, back: Any, path: str = "") -> str:
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return path or "."
        for key, value in original.items():
            if key not in back:
                return f"{path}.{key}".lstrip(".")
            found = _dropped(value, back[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(original, list) and isinstance(back, list):
        for index, (a, b) in enumerate(zip(original, back, strict=False)):
            found = _dropped(a, b, f"{path}[{index}]")
            if found:
                return found
    return ""


def to_yaml(documents: list[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents)


def write(cfg: ProjectConfig, uri: str, out: Path | None, opts: KubernetesOptions, *, name: str | None = None) -> Path:
    """Fetch the model, write the image context and manifests to ``out``, validate them; returns ``out``."""
    import importlib.metadata as md

    import mloop
    from mloop.models.fetch import download_model, parse_model_uri, resolve_version

    model, _, _ = parse_model_uri(uri)
    version = resolve_version(cfg, uri)
    name = name or model
    out = out or cfg.store / "deployments" / name / "kubernetes"
    docs = manifests(name, model, version, opts)
    for documents in docs.values():
        for document in documents:
            validate(document)
    image = out / "image"
    if image.exists():
        shutil.rmtree(image)
    import tempfile

    image.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="mloop-k8s-") as tmp:
        shutil.move(str(download_model(cfg, f"models:/{model}/{version}", Path(tmp))), image / "model")
    # The registered name and version, so the server in the image answers on /v2/models/<model>.
    (image / "model" / "mloop" / "served.json").write_text(json.dumps({"name": model, "version": version}),
                                                           encoding="utf-8")
    shutil.copytree(Path(mloop.__file__).parent, image / "mloop", ignore=shutil.ignore_patterns("__pycache__"))
    pins = []
    for package in SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={md.version(package)}")
        except md.PackageNotFoundError:
            continue
    (image / "requirements.txt").write_text("\n".join(pins) + "\n", encoding="utf-8")
    (image / "Dockerfile").write_text(DOCKERFILE, encoding="utf-8")
    (image / ".dockerignore").write_text("**/__pycache__\n", encoding="utf-8")
    for filename, documents in docs.items():
        (out / filename).write_text(to_yaml(documents), encoding="utf-8")
    label = k8s_name(name)
    (out / "README.md").write_text(README.format(label=label, image=opts.image or f"{label}:v{version}",
                                                 model=model, version=version), encoding="utf-8")
    (out / "manifest.json").write_text(json.dumps({"model": model, "version": version, "name": label}), encoding="utf-8")
    return out


def apply(out: Path, *, which: str = "inferenceservice.yaml") -> str:
    """``kubectl apply -f`` one of the written manifests (only when the user asks for it)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        raise DeployError("kubectl is not on PATH", hint=f"install it, or apply {out / which} with your own tooling")
    done = subprocess.run([kubectl, "apply", "-f", str(out / which)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise DeployError(f"kubectl apply failed: {done.stderr.strip()[:500]}", hint="check the cluster context")
    return done.stdout.strip()


DOCKERFILE = """\
# The mloop model server with one registered model baked in (written by `mloop deploy --target kubernetes`).
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/app MLFLOW_DISABLE_TELEMETRY=true
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY mloop/ /app/mloop/
COPY model/ /model/
RUN useradd --uid 10001 --no-create-home mloop
USER 10001
EXPOSE 8080
ENTRYPOINT ["python", "-m", "mloop.cli.main"]
CMD ["serve", "/model", "--host", "0.0.0.0", "--port", "8080"]
"""

README = """\
# {label}: {model} v{version} on Kubernetes

    docker build -t {image} image/              # then push it where the cluster pulls from
    kubectl create secret generic {label}-token --from-literal=token="$(openssl rand -hex 24)"
    kubectl apply -f inferenceservice.yaml      # with KServe (Open Inference / V2 protocol)
    kubectl apply -f deployment.yaml            # or: a plain Deployment + Service, without KServe

Clients send `Authorization: Bearer <token>`; `/v2/health/live` and `/v2/health/ready` (the probes)
need none. `mloop deploy --target kubernetes --apply` runs the `kubectl apply` for you.
"""
