"""Register a run's model candidate: bundle it, create a version, set challenger/champion aliases.

Each kind of failure has its own error: the candidate does not fit its data (``RegistryError``), the
model fails to predict on its training rows (``ModelSignatureError``) or cannot be saved
(``ModelSerializationError``), the champion cannot be loaded (``RegistryError``; one that loads but cannot
be scored on the test set is a not-promoted decision saying why), or the tracking store refuses a write
(``TrackingError``, from the MLflow calls only).
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mloop.bundle.format import BundleInfo, Lineage, write_bundle
from mloop.bundle.profile import ReferenceProfile
from mloop.bundle.rows import TrainingRows, own_columns, read_bundle_columns, trained_by_one
from mloop.bundle.schema import describe
from mloop._fs import file_lock
from mloop.errors import ModelError, ModelSerializationError, ModelSignatureError, RegistryError, listed
from mloop.registry.fetch import download_model, load_sklearn_model
from mloop.registry.metrics import check_metric, live_metrics, score, task_of
from mloop.registry.promotion import Decision, decide
from mloop.tracking.client import experiment_id, mlflow_client, tracking_error
from mloop.tracking.lineage import git_state, package_versions

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from mloop.config import ProjectConfig, PromotionSection
    from mloop.pipeline.artifacts import ArtifactRef
    from mloop.pipeline.runner import RunResult

CHAMPION = "champion"
CHALLENGER = "challenger"
PIP_REQUIREMENTS_PACKAGES = ("scikit-learn", "pandas", "numpy", "cloudpickle")
T = TypeVar("T")


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


@contextmanager
def _store(cfg: ProjectConfig) -> Iterator[None]:
    """Around MLflow calls only: a failure there is the tracking store's (TrackingError)."""
    try:
        yield
    except Exception as err:
        raise tracking_error(cfg, err) from err


def _mlflow(cfg: ProjectConfig, call: Callable[[], T]) -> T:
    with _store(cfg):
        return call()


def register_candidate(cfg: ProjectConfig, result: RunResult, data_versions: list[dict[str, str]] | None = None,
                       *, promote: bool = True, defer_to_agent: bool = False,
                       tags: dict[str, str] | None = None) -> Registration:
    """Register the model the run's pipeline returned, unless this exact model is registered already.

    The model is checked, scored and saved first; then, under the model's registry lock (so runs at
    once, here or in CI, take turns), the gate compares it with the champion *of that moment*, the
    version is created, and the aliases move. The version is marked ``mloop.decided`` last: a version
    found without the mark (its run was killed on the way) has its gate decision made by the next run of
    the same model, instead of being left with no alias for good.

    ``promote=False`` (the continuous-training agent, which gates, rolls out and watches before it moves
    the champion) records the rule's decision but moves only ``challenger``; ``defer_to_agent`` (a run in a
    project whose agent owns the champion) does the same once there is a champion (the first model
    becomes champion, there is nothing to protect yet); ``tags`` go on the version when it is created, so
    that no one ever sees it without them.
    """
    candidate = result.candidate
    if candidate is None:
        raise RegistryError("the pipeline returned no ModelCandidate", hint="return mloop.ModelCandidate(...)")
    promotion = cfg.settings.promotion
    check_metric(promotion.metric)
    client = mlflow_client(cfg)
    name = cfg.model_name
    model_ref, test_ref = result.ref(candidate.model), result.ref(candidate.test)
    if model_ref is None:
        raise RegistryError("the pipeline's 'model' must be a step output", hint="return ModelCandidate(model=<step output>, ...)")
    test_digest = test_ref.digest if test_ref else ""
    # An identical model on the same test set is registered (and decided) already: nothing to load or score.
    existing = _version_with_digest(cfg, client, name, model_ref.digest, test_digest)
    if existing is not None and _decided(existing):
        return _reused(cfg, client, result, name, existing)

    target: str = candidate.target
    train, test = result.value(candidate.train), result.value(candidate.test)
    for label, frame in (("train", train), ("test", test)):
        if target not in getattr(frame, "columns", []):
            raise RegistryError(
                f"ModelCandidate.{label} has no target column {target!r}",
                hint="pass DataFrames with the target column and ModelCandidate(target=NAME)",
            )
    model = result.value(candidate.model)
    task = task_of(model)
    declared = cfg.settings.project.task
    if declared is not None and declared != task:
        raise ModelError(f"the pipeline's model is a {task} model, but [project] task = {declared!r}",
                         hint="return a model of that task, or change [project] task in mloop.toml")
    promotion.check_task(task, source=f"the model is a {type(model).__name__}, a {task} model")
    metrics = result.value(candidate.metrics) or {}
    x_test, y_test = test.drop(columns=[target]), test[target]
    _check_classes(model, target, y_test)
    try:
        candidate_score = score(promotion.metric, model, x_test, y_test)
    except Exception as err:
        raise ModelError(f"the model cannot be scored with {promotion.metric!r} on its test set: "
                         f"{type(err).__name__}: {err}",
                         hint="check that the model predicts from the test frame without the target column, and that "
                              "[promotion] metric fits the task") from err

    git = git_state(cfg.root)
    lineage = Lineage(run_id=result.tracking_id, pipeline=result.pipeline,
                      data_sha256=sorted({d for r in result.steps.values() for d in r.file_digests.values()}),
                      git_commit=git.commit if git else "", git_dirty=git.dirty if git else None,
                      model_digest=model_ref.digest, packages=package_versions(), data_versions=data_versions or [])
    with tempfile.TemporaryDirectory(prefix="mloop-bundle-", dir=cfg.scratch()) as tmp:
        model_dir = Path(tmp) / "model"
        _save_model(model, train.drop(columns=[target]), model_dir)
        info = BundleInfo(
            target=target,
            features=[str(c) for c in train.columns if c != target],
            task=task,
            schema=describe(train.drop(columns=[target])),
            classes=[_plain(c) for c in getattr(model, "classes_", [])],
            class_counts=({str(k): int(v) for k, v in train[target].value_counts().sort_index().items()}
                          if hasattr(model, "classes_") else {}),
            metrics={k: float(v) for k, v in dict(metrics).items()} | {f"test_{promotion.metric}": candidate_score},
            test_scores=_test_scores(model, x_test, y_test),
            lineage=lineage,
        )
        trained = TrainingRows.of_frame(train, [*info.features, target])
        write_bundle(model_dir, info, ReferenceProfile().fit(train), result.value(candidate.outlier_detector), trained)
        with file_lock(cfg.lock_path(f"registry-{_lock_name(name)}")):
            # Looked up again under the lock: another run may have registered or decided it meanwhile.
            existing = _version_with_digest(cfg, client, name, model_ref.digest, test_digest)
            if existing is not None and _decided(existing):
                return _reused(cfg, client, result, name, existing)
            champion = _champion(cfg, client, name, exclude=None if existing is None else str(existing.version))
            decision = _decision(promotion, model, test, target, candidate_score, trained, champion)
            passed = decision.promote
            if not promote or (defer_to_agent and champion is not None):
                decision = replace(decision, promote=False,
                                   reason=f"{decision.reason}; the champion alias is left to the agent's gate")
            if existing is None:
                version = _create_version(client, cfg, name, result.tracking_id, model_dir, lineage, decision, test_ref,
                                          tags or {})
            else:  # registered by a run that was killed before its gate decision: decide it now
                version = str(existing.version)
                with _store(cfg):
                    decided = decision_tags(decision)
                    for key, value in {**(tags or {}), **decided}.items():
                        client.set_model_version_tag(name, version, key, value)
                    for key in ({COMPARED_WITH, CHAMPION_SCORE} - set(decided)) & set(existing.tags or {}):
                        client.delete_model_version_tag(name, version, key)  # compared with a champion the first time
            with _store(cfg):
                client.set_registered_model_alias(name, CHALLENGER, version)
                aliases = [CHALLENGER]
                if decision.promote:
                    client.set_model_version_tag(name, version, "mloop.promoted.at", repr(time.time()))
                    client.set_model_version_tag(name, version, "mloop.promoted.by", "registration")
                    client.set_registered_model_alias(name, CHAMPION, version)
                    aliases.append(CHAMPION)
                client.set_model_version_tag(name, version, RULE_PASSED, str(passed).lower())
                client.set_model_version_tag(name, version, DECIDED, "true")  # last: the version is complete
                client.set_tag(result.tracking_id, "mloop.model_version", version)
                client.set_tag(result.tracking_id, "mloop.promotion", decision.reason)
    return Registration(name, version, aliases, decision)


DECIDED = "mloop.decided"  # version tag: "false" at creation, "true" once its gate decision and aliases are done
RULE_PASSED = "mloop.promotion.passed"  # version tag: whether the registration's rule passed (promoted or left to the agent)
# Version tags of the gate's decision: the reason in words, and what it compared (read by registry.report)
PROMOTION, COMPARED_WITH = "mloop.promotion", "mloop.promotion.champion"
CANDIDATE_SCORE, CHAMPION_SCORE = "mloop.promotion.candidate_score", "mloop.promotion.champion_score"


def decision_tags(decision: Decision) -> dict[str, str]:
    """The gate's decision as version tags: the reason, the champion it was compared with and both scores
    (the champion's on the candidate's test set); no champion tags when there was none."""
    tags = {PROMOTION: decision.reason, CANDIDATE_SCORE: repr(decision.candidate_score)}
    if decision.champion_version is not None:
        tags[COMPARED_WITH] = decision.champion_version
        tags[CHAMPION_SCORE] = repr(decision.champion_score)
    return tags



def _decided(version: Any) -> bool:
    """Whether a version got its gate decision (versions registered before the tag existed did)."""
    return bool((version.tags or {}).get(DECIDED, "true") == "true")


def _reused(cfg: ProjectConfig, client: MlflowClient, result: RunResult, name: str, existing: Any) -> Registration:
    _mlflow(cfg, lambda: client.set_tag(result.tracking_id, "mloop.model_version", str(existing.version)))
    aliases = list(getattr(existing, "aliases", []) or [])
    return Registration(name, str(existing.version), aliases,
                        Decision(CHAMPION in aliases, "the same model is registered already", float("nan")), True)


def _lock_name(name: str) -> str:
    """A model name as a file name (registry names may hold characters a path should not)."""
    import hashlib
    import re

    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:60]
    return safe if safe == name else f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _save_model(model: Any, features: Any, model_dir: Path) -> None:
    """The MLflow sklearn model with its signature and input example, checked by loading it back.

    The format is MLflow's skops, which loads only the types it is told to trust. mloop saves the
    model itself, so it trusts exactly the types this model is made of at save time (recorded in
    MLmodel), and it loads models only from the project's own registry (or a folder the user names).
    A model that cannot be saved, or does not come back predicting the same, is a ModelSerializationError.
    """
    import mlflow.sklearn
    import numpy as np
    import skops.io
    from mlflow.models import infer_signature

    example = features.head(5)
    try:
        predicted = model.predict(example)
        signature = infer_signature(example, predicted)
    except Exception as err:
        raise ModelSignatureError(
            f"the model ({type(model).__name__}) failed to predict on 5 of its own training rows: "
            f"{type(err).__name__}: {err}",
            hint="check that it predicts from the train frame without the target column (ModelCandidate.target)",
        ) from err
    versions = package_versions(PIP_REQUIREMENTS_PACKAGES)
    what = f"the model ({type(model).__name__})"
    try:
        trusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        mlflow.sklearn.save_model(model, str(model_dir), signature=signature, input_example=example,
                                  pip_requirements=[f"{pkg}=={ver}" for pkg, ver in versions.items()],
                                  serialization_format="skops", skops_trusted_types=trusted)
        again = mlflow.sklearn.load_model(str(model_dir))
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelSerializationError(
            f"{what} cannot be saved and loaded back as an MLflow scikit-learn model: {first[:300]}",
            hint="return a scikit-learn estimator or Pipeline (XGBoost and LightGBM through their scikit-learn "
                 "API); a class of your own must come from an installed package, not the pipeline file",
        ) from err
    back = np.asarray(again.predict(example))
    same = (np.allclose(back, predicted, equal_nan=True) if np.asarray(predicted).dtype.kind in "fc"
            else np.array_equal(back, np.asarray(predicted)))
    if not same:
        raise ModelSerializationError(f"{what} predicts differently after it was saved and loaded back",
                                      hint="check that the model has no state outside what scikit-learn saves")


def _create_version(client: MlflowClient, cfg: ProjectConfig, name: str, run_id: str, model_dir: Path,
                    lineage: Lineage, decision: Decision, test_ref: ArtifactRef | None, extra: dict[str, str]) -> str:
    from mlflow.exceptions import MlflowException

    with _store(cfg):
        exp = experiment_id(client, cfg) or "0"
        logged = client.create_logged_model(exp, name="model", source_run_id=run_id,
                                            tags={"mloop.model_digest": lineage.model_digest})
        client.log_model_artifacts(logged.model_id, str(model_dir))
        client.finalize_logged_model(logged.model_id, "READY")
        try:
            client.create_registered_model(name, description=f"registered by mloop from project {cfg.name}")
        except MlflowException as err:
            if "already exists" not in str(err).lower() and "RESOURCE_ALREADY_EXISTS" not in str(err):
                raise
        tags = {
            **extra,
            DECIDED: "false",  # until its aliases moved (register_candidate)
            "mloop.model_digest": lineage.model_digest,
            "mloop.test_digest": test_ref.digest if test_ref else "",
            **decision_tags(decision),
            "mloop.data_sha256": ",".join(lineage.data_sha256),
            "mloop.git_commit": lineage.git_commit,
        }
        version = client.create_model_version(name, source=logged.artifact_location, run_id=run_id, tags=tags,
                                              model_id=logged.model_id, description=json.dumps(asdict(lineage))[:5000])
    return str(version.version)


def _version_with_digest(cfg: ProjectConfig, client: MlflowClient, name: str, model_digest: str,
                         test_digest: str) -> Any:
    with _store(cfg):
        for version in client.search_model_versions(f"name = '{name}'"):  # none yet: an empty list
            tags = version.tags or {}
            if tags.get("mloop.model_digest") == model_digest and tags.get("mloop.test_digest") == test_digest:
                return client.get_model_version(name, version.version)  # search results carry no aliases
    return None


def _test_scores(model: Any, features: Any, target: Any) -> dict[str, float]:
    """The live scores (as the monitor defines them from feedback) on the test set: what alert rules with
    ``worse_than_test`` compare live scores with."""
    import math

    import numpy as np

    predicted, truth = np.asarray(model.predict(features)), np.asarray(target)
    found = {m.name: float(m.fn(truth, predicted)) for m in live_metrics(list(getattr(model, "classes_", [])))}
    return {name: value for name, value in found.items() if not math.isnan(value)}


def _check_classes(model: Any, target: str, truth: Any) -> None:
    """A classifier must predict the values of the target column (not, say, 0/1 for "yes"/"no")."""
    classes = list(getattr(model, "classes_", []))
    if not classes:
        return
    known = {str(c) for c in classes}
    values = [v for v in dict.fromkeys(truth.dropna().tolist()) if str(v) not in known]
    if values and len(values) == truth.dropna().nunique():
        shown = ", ".join(repr(c.item() if hasattr(c, "item") else c) for c in classes[:5])
        held = ", ".join(repr(v) for v in values[:5])
        raise ModelError(f"the model predicts the classes ({shown}), but the target column {target!r} holds "
                         f"({held}): no prediction can be right",
                         hint="train the model on the target column as it is in ModelCandidate.test (or encode the "
                              "target the same way in the train and test frames)")


@dataclass
class _Champion:
    version: str
    model: Any
    features: list[str]  # the columns it takes, in its order (empty: not known, the test set's)
    trained: TrainingRows | None  # the rows it trained on (None: its bundle predates them)


def _champion(cfg: ProjectConfig, client: MlflowClient, name: str, *, exclude: str | None = None) -> _Champion | None:
    """The champion, loaded, or None when there is none yet (or the champion is ``exclude``, the version being
    decided: it keeps the alias).

    A store that fails is a TrackingError (never taken for "no champion": that would skip the gate);
    a champion that cannot be loaded is a RegistryError.
    """
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):  # no model, or no champion yet
            return None
        raise tracking_error(cfg, err) from err
    except Exception as err:
        raise tracking_error(cfg, err) from err
    version = str(found.version)
    if version == exclude:
        return None
    with tempfile.TemporaryDirectory(prefix="mloop-champion-", dir=cfg.scratch()) as tmp:
        try:
            folder = download_model(cfg, f"models:/{name}/{version}", Path(tmp))  # RegistryError if it is gone
        except RegistryError:
            raise
        except Exception as err:
            raise tracking_error(cfg, err) from err
        try:
            model = load_sklearn_model(folder)
        except Exception as err:
            raise RegistryError(f"the champion, {name} v{version}, cannot be loaded: {type(err).__name__}: {err}",
                                hint="move the champion alias to a version this environment can load "
                                     "(mloop models, mloop models promote), or retrain it") from err
        return _Champion(version, model, *read_bundle_columns(folder))


def _decision(promotion: PromotionSection, model: Any, test: Any, target: str, candidate_score: float,
              trained: TrainingRows, champion: _Champion | None) -> Decision:
    """The registration's rule on the candidate and the champion, both scored on this run's test set less the
    rows exactly one of the two trained on (a model scored on rows it learned looks better than it is, and a
    new split of grown data puts rows the champion trained on into this test set), each on its own columns.

    A champion that cannot be scored on the test set (it takes columns the set lacks, or its library
    refuses the values) is no comparison: the candidate is registered, not promoted, and the reason says why.
    """
    metric = promotion.metric
    if champion is None:
        return decide(metric, promotion.better, promotion.min_improvement, candidate_score, None)

    def incomparable(why: str) -> Decision:
        return Decision(False, f"{why}, so the two cannot be compared on it: not promoted (if it should be: mloop "
                               f"models promote VERSION)", candidate_score, None, champion.version)

    left_out = trained_by_one(test, trained, champion.trained)
    fair = test if left_out is None else test[~left_out]
    if fair.empty:
        return incomparable(f"each of the {len(test)} rows of this run's test set was trained on by exactly one of the "
                            f"two (the champion v{champion.version} or this run's model)")
    features, truth = fair.drop(columns=[target]), fair[target]
    theirs, missing = own_columns(features, champion.features)
    if missing:  # the features changed
        return incomparable(f"the champion v{champion.version} takes columns this run's test set does not have "
                            f"({listed(missing)})")
    try:
        champion_score = score(metric, champion.model, theirs, truth)
    except Exception as err:  # noqa: BLE001 (whatever the champion's library raises: said in the decision)
        return incomparable(f"the champion v{champion.version} cannot be scored on this run's test set "
                            f"({type(err).__name__}: {str(err)[:200]})")
    if len(fair) == len(test):
        return decide(metric, promotion.better, promotion.min_improvement, candidate_score, champion_score,
                      champion.version)
    return decide(metric, promotion.better, promotion.min_improvement, score(metric, model, features, truth),
                  champion_score, champion.version,
                  on=f"the same {len(fair)} of this run's {len(test)} test rows (the {len(test) - len(fair)} others left "
                     f"out: one of the two models trained on them)")
