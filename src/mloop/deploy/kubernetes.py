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

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop._fs import atomic_write_text
from mloop.config import ProjectConfig
from mloop.deploy import DeployOptions, DeployResult, DeployTarget
from mloop.errors import DeployError

PORT = 8080
SERVING_PACKAGES = ("numpy", "scipy", "pandas", "pyarrow", "scikit-learn", "cloudpickle", "mlflow-skinny", "typer",
                    "rich", "pydantic", "pydantic-settings", "uvicorn", "uvloop", "httptools", "orjson",
                    "prometheus-client", "httpx", "tenacity")


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
        "env": [{"name": "MLOOP_SERVING_TOKEN", "valueFrom": {"secretKeyRef": {"name": f"{label}-token", "key": "token"}}}],
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


SCHEMAS = {("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice-v1beta1.json",
           ("apps/v1", "Deployment"): "deployment-apps-v1.json", ("v1", "Service"): "service-v1.json"}
_DNS_1123_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


@functools.cache
def _validator(schema_file: str) -> Any:
    from jsonschema import Draft7Validator

    path = Path(__file__).with_name("schemas") / schema_file
    return Draft7Validator(json.loads(path.read_text(encoding="utf-8")))


def validate(document: dict[str, Any]) -> None:
    """Check a manifest against its kind's strict JSON Schema: required fields, types, and no unknown field
    (a misspelt key, which an API server would silently drop). Raises DeployError naming the path."""
    kind = (document.get("apiVersion"), document.get("kind"))
    schema_file = SCHEMAS.get(kind)  # type: ignore[arg-type]
    if schema_file is None:
        raise DeployError(f"no schema to check {kind[1]} ({kind[0]}) against")
    name = document.get("metadata", {}).get("name", "")
    what = f"{kind[1]} {name}"
    errors = sorted(_validator(schema_file).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        raise DeployError(f"{what}: {errors[0].json_path}: {errors[0].message}"
                          + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""))
    if not isinstance(name, str) or not _DNS_1123_LABEL.fullmatch(name) or len(name) > 63:
        raise DeployError(f"{what}: the name {name!r} is not a DNS-1123 label (lower-case letters, digits and '-')")


def to_yaml(documents: list[dict[str, Any]]) -> str:
    import yaml

    return "---\n".join(yaml.safe_dump(d, sort_keys=False) for d in documents)


class KubernetesTarget(DeployTarget):
    """An image build context and validated manifests for a cluster; ``apply`` runs ``kubectl apply``."""

    def deploy(self, uri: str, options: DeployOptions) -> DeployResult:
        result = write(self.cfg, uri, options.out, KubernetesOptions(image=options.image, replicas=options.replicas),
                       name=options.name)
        if options.apply:
            assert result.artifacts is not None
            result.applied = apply(result.artifacts)
        return result


def write(cfg: ProjectConfig, uri: str, out: Path | None, opts: KubernetesOptions, *, name: str | None = None) -> DeployResult:
    """Fetch the model, write the image context and manifests to ``out``, validate them."""
    import importlib.metadata as md
    import tempfile

    from mloop.bundle.format import BUNDLE_DIR, ServedAs, write_served_as
    from mloop.bundle.rows import TRAIN_ROWS
    from mloop.registry.fetch import download_model, parse_model_uri, resolve_version

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
    image.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="mloop-k8s-") as tmp:
        shutil.move(str(download_model(cfg, f"models:/{model}/{version}", Path(tmp))), image / "model")
    # The registered name and version, so the server in the image answers on /v2/models/<model>.
    write_served_as(image / "model", ServedAs(model, version))
    # The training rows' fingerprints are for the gates, not the server: an image does not carry them.
    (image / "model" / BUNDLE_DIR / TRAIN_ROWS).unlink(missing_ok=True)
    server = Path(__file__).resolve().parents[1]  # the installed mloop package: the image's server
    shutil.copytree(server, image / "mloop", ignore=shutil.ignore_patterns("__pycache__"))
    pins = []
    for package in SERVING_PACKAGES:
        try:
            pins.append(f"{package}=={md.version(package)}")
        except md.PackageNotFoundError:
            continue
    atomic_write_text(image / "requirements.txt", "\n".join(pins) + "\n")
    atomic_write_text(image / "Dockerfile", DOCKERFILE)
    atomic_write_text(image / ".dockerignore", "**/__pycache__\n")
    for filename, documents in docs.items():
        atomic_write_text(out / filename, to_yaml(documents))
    label = k8s_name(name)
    atomic_write_text(out / "README.md", README.format(label=label, image=opts.image or f"{label}:v{version}",
                                                       model=model, version=version))
    atomic_write_text(out / "manifest.json", json.dumps({"model": model, "version": version, "name": label}))
    return DeployResult("kubernetes", "written", name, model, version, artifacts=out)


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

The server reads the token from `MLOOP_SERVING_TOKEN`; clients send `Authorization: Bearer <token>`; `/v2/health/live` and `/v2/health/ready` (the probes)
need none. `mloop deploy --target kubernetes --apply` runs the `kubectl apply` for you.
"""
