"""Record a pipeline run in MLflow: one parent run, one nested run per step, lineage and inputs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop._proc import started_at
from mloop.tracking.client import experiment_id, mlflow_client, short, tracking_error
from mloop.tracking.lineage import environment, git_state, package_versions

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.data.versions import DataVersion
    from mloop.pipeline.runner import RunResult, StepRecord

_STATUS = {"cached": "FINISHED", "done": "FINISHED", "failed": "FAILED", "skipped": "KILLED"}


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


class MlflowTracker:
    """Implements the runner's Tracker protocol with an explicit ``MlflowClient`` (no fluent globals)."""

    def __init__(self, cfg: ProjectConfig, *, source: str = "") -> None:
        self.cfg = cfg
        self.source = source
        self.client: Any = None
        self.experiment_id = ""
        self.run_id = ""
        self.data_versions: list[DataVersion] = []  # of the files the run read, when DVC tracks them

    def start(self, result: RunResult) -> str:
        from mlflow.entities import Param

        try:
            self.client = mlflow_client(self.cfg)
            self.experiment_id = experiment_id(self.client, self.cfg) or ""
            git = git_state(self.cfg.root)
            tags = {
                "mlflow.source.type": "LOCAL",
                "mlflow.source.name": self.source or result.pipeline,
                "mloop.pipeline": result.pipeline,
                "mloop.project": self.cfg.name,
                "mloop.kind": "pipeline",
                "mloop.local_run_id": result.id,
                # whose run it is: a RUNNING run whose process is gone was killed (tracking/queries.py)
                "mloop.host": socket.gethostname(), "mloop.pid": str(os.getpid()),
                "mloop.pid_started": f"{started_at():.3f}",
                **{f"mloop.env.{name}": version for name, version in package_versions().items()},
                "mloop.env.python": str(environment()["python"]),
            }
            if git:
                tags.update({"mlflow.source.git.commit": git.commit, "mloop.git.commit": git.commit,
                             "mloop.git.dirty": str(git.dirty).lower(), "mlflow.source.git.branch": git.branch})
            run = self.client.create_run(self.experiment_id, start_time=_ms(result.started), tags=tags,
                                         run_name=f"{result.pipeline}-{time.strftime('%Y%m%d-%H%M%S')}")
            self.run_id = run.info.run_id
            params = [Param(f"{node.name}.{k}", short(v)) for node in result.graph for k, v in node.params.items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i:i + 100])
            datasets = self._datasets(result)
            if datasets:
                self.client.log_inputs(self.run_id, datasets=datasets)
                digests = [tag.value for d in datasets for tag in d.tags if tag.key == "mloop.sha256"]
                self.client.set_tag(self.run_id, "mloop.data.sha256", ",".join(digests))
                versions = [v for v in self.data_versions if v.md5]
                if versions:  # searchable: mloop data versions finds the runs that read a version
                    self.client.set_tag(self.run_id, "mloop.data.md5", ",".join(sorted({v.md5 for v in versions})))
                    self.client.set_tag(self.run_id, "mloop.data.versions",
                                        ",".join(sorted({v.version for v in versions if v.version})))
            self._log_json(self.run_id, "environment.json", environment())
        except Exception as err:
            raise tracking_error(self.cfg, err) from err
        return self.run_id

    def _datasets(self, result: RunResult) -> list[Any]:
        """One MLflow dataset input per file a step read, pointing at its DVC version when it has one."""
        from mlflow.entities import Dataset, DatasetInput, InputTag

        from mloop.data.repo import configured_remote, dvc_root
        from mloop.data.versions import version_of

        root = dvc_root(self.cfg.root)
        remote = configured_remote(root) if root is not None else ""
        datasets = []
        for node in result.graph:
            for pname, digest in result.steps[node.name].file_digests.items():
                path = str(node.params[pname])
                version = version_of(self.cfg.root, Path(path), remote) if root is not None else None
                source: dict[str, Any] = {"uri": path, "sha256": digest}
                tags = [InputTag("mlflow.data.context", "training"), InputTag("mloop.step", node.name),
                        InputTag("mloop.sha256", digest)]
                if version is not None and version.md5:
                    self.data_versions.append(version)
                    source["dvc"] = version.as_dict()
                    tags += [InputTag("mloop.dvc.md5", version.md5), InputTag("mloop.dvc.state", version.state)]
                    if version.commit:
                        tags.append(InputTag("mloop.dvc.commit", version.commit))
                # MLflow keeps one dataset per (name, digest) in an experiment, with the source it was first
                # logged with: the digest is the content's, and for a DVC-tracked file ends with its DVC
                # record's, so the same bytes in a later state (added, committed) get their own record
                text = json.dumps(source, sort_keys=True)
                versioned = "dvc" in source
                digest_text = digest[:24] + hashlib.sha256(text.encode()).hexdigest()[:8] if versioned else digest[:32]
                datasets.append(DatasetInput(
                    Dataset(name=Path(path).name, digest=digest_text,
                            source_type="dvc" if "dvc" in source else "local", source=text),
                    tags=tags,
                ))
        return datasets

    def log_step(self, result: RunResult, record: StepRecord) -> None:
        from mlflow.entities import Metric, Param

        client = self.client
        started = record.started or time.time()
        tags = {
            "mlflow.parentRunId": self.run_id,
            "mloop.kind": "step",
            "mloop.step": record.name,
            "mloop.state": record.state,
            "mloop.cache_hit": str(record.cached).lower(),
            "mloop.cache_key": record.key,
        }
        if record.error:
            tags["mloop.error"] = short(record.error, 5000)
        if record.skipped_because:
            tags["mloop.skipped_because"] = record.skipped_because
        child = client.create_run(self.experiment_id, start_time=_ms(started), tags=tags, run_name=record.name)
        child_id = child.info.run_id
        now = _ms(time.time())
        metrics = [Metric(k, v, now, 0) for k, v in record.metrics.items()]
        metrics.append(Metric("duration_s", record.duration_s, now, 0))
        params = [Param(k, short(v)) for k, v in record.params.items()]
        params += [Param(f"output.{k}", ref.digest) for k, ref in record.outputs.items()]
        client.log_batch(child_id, metrics=metrics, params=params)
        if record.metrics:
            client.log_batch(self.run_id, metrics=[Metric(f"{record.name}.{k}", v, now, 0)
                                                   for k, v in record.metrics.items()])
        if record.files:
            with tempfile.TemporaryDirectory(prefix="mloop-artifacts-", dir=self.cfg.scratch()) as tmp:
                for name, ref in record.files.items():
                    shutil.copyfile(result.store.file_path(ref), Path(tmp) / name)
                client.log_artifacts(child_id, tmp)
        if record.traceback:
            client.log_text(child_id, record.traceback, "traceback.txt")
        client.set_terminated(child_id, _STATUS.get(record.state, "FINISHED"), end_time=_ms(record.ended or time.time()))

    def finish(self, result: RunResult) -> None:
        from mlflow.entities import Metric

        if not self.run_id:
            return
        now = _ms(time.time())
        counts = {state: sum(r.state == state for r in result.steps.values()) for state in _STATUS}
        metrics = [Metric(f"steps_{state}", float(n), now, 0) for state, n in counts.items()]
        metrics.append(Metric("duration_s", result.ended - result.started, now, 0))
        self.client.log_batch(self.run_id, metrics=metrics)
        status = "FINISHED" if result.ok else "FAILED"
        self.client.set_terminated(self.run_id, status, end_time=_ms(result.ended or time.time()))

    def mark_failed(self, reason: str) -> None:
        """Record the run as failed after it finished (its model could not be registered), with the reason."""
        if not self.run_id:
            return
        try:
            self.client.set_tag(self.run_id, "mloop.error", short(reason, 5000))
            self.client.set_terminated(self.run_id, "FAILED")
        except Exception as err:
            raise tracking_error(self.cfg, err) from err

    def _log_json(self, run_id: str, name: str, data: Any) -> None:
        self.client.log_dict(run_id, data, name)
