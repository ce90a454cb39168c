"""Register a run's model candidate: bundle it, create a version, set challenger/champion aliases."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.errors import RegistryError
from mloop.models.bundle import BundleInfo, write_bundle
from mloop.models.fetch import download_model, load_sklearn_model
from mloop.registry.promotion import Decision, check_metric, decide, score
from mloop.tracking.client import experiment_id, mlflow_client, tracking_error
from mloop.tracking.lineage import git_state, package_versions

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.pipeline.runner import RunResult

CHAMPION = "champion"
CHALLENGER = "challenger"
PIP_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "cloudpickle")


@dataclass
class Registration:
    model_name: str
    version: str
    aliases: list[str]
    decision: Decision
    reused: bool = False

    @property
    def uri(self) -> str:
        return f"models:/{self.model_name}/{self.version}"


def register_candidate(cfg: ProjectConfig, result: RunResult) -> Registration:
    """Register the model the run's pipeline returned, unless this exact model is registered already."""
    promotion = cfg.settings.promotion
    check_metric(promotion.metric)
    client = mlflow_client(cfg)
    name = cfg.model_name
    model_ref = result.ref(result.graph.results["model"])
    if model_ref is None:
        raise RegistryError("the pipeline's 'model' must be a step output", hint="return ModelCandidate(model=<step output>, ...)")
    test_key = result.ref(result.graph.results["test"])
    try:  # an identical model on the same test set is registered already: nothing to load or score
        existing = _version_with_digest(client, name, model_ref.digest, test_key.digest if test_key else "")
        if existing is not None:
            client.set_tag(result.run_id, "mloop.model_version", str(existing.version))
            aliases = list(getattr(existing, "aliases", []) or [])
            return Registration(name, str(existing.version), aliases,
                                Decision(CHAMPION in aliases, "the same model is registered already", float("nan")), True)
    except Exception as err:
        raise tracking_error(cfg, err) from err

    target = result.result("target")
    train, test = result.result("train"), result.result("test")
    for label, frame in (("train", train), ("test", test)):
        if target not in getattr(frame, "columns", []):
            raise RegistryError(
                f"ModelCandidate.{label} has no target column {target!r}",
                hint="pass DataFrames with the target column and ModelCandidate(target=NAME)",
            )
    model = result.result("model")
    metrics = result.result("metrics") or {}
    x_test, y_test = test.drop(columns=[target]), test[target]
    candidate_score = score(promotion.metric, model, x_test, y_test)
    champion_score, champion_version = _champion_score(cfg, client, name, promotion.metric, x_test, y_test)
    decision = decide(promotion.metric, promotion.direction, promotion.min_improvement,
                      candidate_score, champion_score, champion_version)

    git = git_state(cfg.root)
    lineage = {
        "run_id": result.run_id,
        "pipeline": result.pipeline,
        "data_sha256": sorted({d for r in result.steps.values() for d in r.file_digests.values()}),
        "git_commit": git.get("commit", ""),
        "git_dirty": git.get("dirty", ""),
        "model_digest": model_ref.digest,
        "packages": package_versions(),
    }
    try:
        with tempfile.TemporaryDirectory(prefix="mloop-bundle-") as tmp:
            model_dir = Path(tmp) / "model"
            _save_model(model, train.drop(columns=[target]), model_dir)
            from mloop.monitor.profile import ReferenceProfile

            info = BundleInfo(
                target=target,
                features=[str(c) for c in train.columns if c != target],
                classes=[_plain(c) for c in getattr(model, "classes_", [])],
                class_counts=({str(k): int(v) for k, v in train[target].value_counts().sort_index().items()}
                              if hasattr(model, "classes_") else {}),
                metrics={k: float(v) for k, v in dict(metrics).items()} | {f"test_{promotion.metric}": candidate_score},
                lineage=lineage,
            )
            write_bundle(model_dir, info, ReferenceProfile().fit(train), result.result("outlier_detector"))
            version = _create_version(client, cfg, name, result.run_id, model_dir, lineage, decision, test_key)
        client.set_registered_model_alias(name, CHALLENGER, version)
        aliases = [CHALLENGER]
        if decision.promote:
            client.set_registered_model_alias(name, CHAMPION, version)
            aliases.append(CHAMPION)
        client.set_tag(result.run_id, "mloop.model_version", version)
        client.set_tag(result.run_id, "mloop.promotion", decision.reason)
    except Exception as err:
        raise tracking_error(cfg, err) from err
    return Registration(name, version, aliases, decision)


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _save_model(model: Any, features: Any, model_dir: Path) -> None:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    example = features.head(5)
    signature = infer_signature(example, model.predict(example))
    versions = package_versions(PIP_REQUIREMENTS_PACKAGES)
    mlflow.sklearn.save_model(
        model, str(model_dir), signature=signature, input_example=example,
        pip_requirements=[f"{pkg}=={ver}" for pkg, ver in versions.items()],
    )


def _create_version(client: Any, cfg: ProjectConfig, name: str, run_id: str, model_dir: Path,
                    lineage: dict[str, Any], decision: Decision, test_ref: Any) -> str:
    from mlflow.exceptions import MlflowException

    exp = experiment_id(client, cfg) or "0"
    logged = client.create_logged_model(exp, name="model", source_run_id=run_id,
                                        tags={"mloop.model_digest": lineage["model_digest"]})
    client.log_model_artifacts(logged.model_id, str(model_dir))
    client.finalize_logged_model(logged.model_id, "READY")
    try:
        client.create_registered_model(name, description=f"registered by mloop from project {cfg.name}")
    except MlflowException as err:
        if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
            raise
    tags = {
        "mloop.model_digest": lineage["model_digest"],
        "mloop.test_digest": test_ref.digest if test_ref else "",
        "mloop.promotion": decision.reason,
        "mloop.data_sha256": ",".join(lineage["data_sha256"]),
        "mloop.git_commit": lineage["git_commit"],
    }
    version = client.create_model_version(name, source=logged.artifact_location, run_id=run_id, tags=tags,
                                          model_id=logged.model_id, description=json.dumps(lineage)[:5000])
    return str(version.version)


def _version_with_digest(client: Any, name: str, model_digest: str, test_digest: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return None
    for version in versions:
        tags = version.tags or {}
        if tags.get("mloop.model_digest") == model_digest and tags.get("mloop.test_digest") == test_digest:
            return client.get_model_version(name, version.version)  # search results carry no aliases
    return None


def _champion_score(cfg: ProjectConfig, client: Any, name: str, metric: str, features: Any, target: Any) -> tuple[float | None, str | None]:
    from mlflow.exceptions import MlflowException

    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None, None
    try:
        with tempfile.TemporaryDirectory(prefix="mloop-champion-") as tmp:
            model = load_sklearn_model(download_model(cfg, f"models:/{name}/{champion.version}", Path(tmp)))
        return score(metric, model, features, target), str(champion.version)
    except Exception as err:
        raise RegistryError(
            f"the champion, {name} v{champion.version}, cannot be scored on this run's test set: {err}",
            hint="if the features changed on purpose, move the alias by hand in the MLflow UI (mloop ui)",
        ) from err
