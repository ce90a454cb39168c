"""One continuous-training cycle: snapshot → train → gate → check it can serve → roll out → watch →
promote, or roll back. Every step is journalled before its side effect and is idempotent per
(cycle, step), so a cycle interrupted anywhere — a kill -9 included — is driven to a final state by the
next agent: done steps keep their results, the step under way is redone, and a roll-out or watch under
way is started again from the champion serving everything.

The invariant, at every moment: the ``champion`` alias points at a version that passed its gate, and,
outside a roll-out, that version serves all the traffic of the deployment. So the alias moves only
after the server serves the candidate alone (``promote``), and a rollback gives the champion all the
traffic back without touching the alias.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mloop.automation.audit import AuditLog
from mloop.automation.journal import Cycle, Journal
from mloop.automation.triggers import AGENT_CYCLE_TAG as AGENT_CYCLE  # the version's cycle: its registration is no trigger
from mloop.automation.watch import Analysis, ProviderError, Reading, analyse
from mloop._proc import process_alive
from mloop.errors import MloopError
from mloop.registry.aliases import PROMOTED_AT, PROMOTED_BY

if TYPE_CHECKING:
    from mloop.config import ProjectConfig

AGENT_VERDICT, AGENT_GATE, AGENT_OUTCOME = "mloop.agent.verdict", "mloop.agent.gate", "mloop.agent.outcome"
# Fault injection for the crash tests: the agent SIGKILLs itself at this transition (a state, just after it is
# journalled, or "STEP:done", after a step's side effect and before its result is journalled).
CRASH_AT = "MLOOP_AGENT_CRASH_AT"


def crash_point(name: str) -> None:
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class CycleContext:
    """What a cycle works with: the project, the journal and audit log, the model and its deployment."""

    cfg: ProjectConfig
    journal: Journal
    audit: AuditLog
    model: str
    deployment: str
    stop: threading.Event = field(default_factory=threading.Event)
    own: Callable[[str], None] = lambda key: None  # tells the triggers a key this cycle produced
    sleep: Callable[[float], None] = time.sleep
    on_alert: Callable[[str, str], None] = lambda name, summary: None  # the agent raises an alert
    superseded: Callable[[], str] = lambda: ""  # why the cycle's candidate is superseded ('' while it is not)


class AgentStopping(Exception):
    """The agent stops: the cycle is left where it stands (journalled) for the next start to resume."""


class CycleFailed(Exception):
    def __init__(self, outcome: str, reason: str) -> None:
        super().__init__(reason)
        self.outcome, self.reason = outcome, reason


def holdout_path(cfg: ProjectConfig, cycle_id: str) -> Path:
    return cfg.store / "automation" / "holdouts" / f"{cycle_id}.parquet"


class CycleRunner:
    def __init__(self, ctx: CycleContext) -> None:
        self.ctx = ctx
        self.settings = ctx.cfg.settings.automation

    # ------------------------------------------------------------------------------------------ driving

    def drive(self, cycle: Cycle) -> Cycle:
        """Drive ``cycle`` to a final state (or leave it where it stands when the agent stops meanwhile)."""
        journal = self.ctx.journal
        if cycle.state in ("rolling_out", "watching"):  # interrupted: the roll-out and its analysis start over
            journal.reset(cycle.id, ("rollout", "watch"))
        try:
            self._run(cycle)
        except AgentStopping:
            self._audit("agent", cycle, f"the agent stopped during {cycle.state}: the next start resumes this cycle")
        except CycleFailed as done:
            self._final(cycle, done.outcome, done.reason)
        except MloopError as err:
            self._safe_traffic(cycle)
            self._final(cycle, "failed", f"{err.message}" + (f" ({err.hint})" if err.hint else ""))
        except Exception as err:  # the agent goes on with its next cycle; the reason is kept
            self._safe_traffic(cycle)
            self._final(cycle, "failed", f"{type(err).__name__}: {err}")
        found = journal.cycle(cycle.id)
        assert found is not None
        return found

    def _run(self, cycle: Cycle) -> None:
        if cycle.state == "rolling_back":
            self._rollback(cycle, cycle.reason or "the rollback was interrupted")
            return
        if cycle.state == "promoting":
            self._promote(cycle)
            return
        if self.settings.snapshot:
            self._state(cycle, "snapshot")
            self._step(cycle, "snapshot", lambda: self._snapshot(cycle))
        self._state(cycle, "training")
        trained = self._step(cycle, "train", lambda: self._train(cycle))
        cycle.candidate, cycle.champion = trained["version"], trained.get("champion")
        self._state(cycle, "training", candidate=cycle.candidate, champion=cycle.champion)
        if trained.get("unchanged"):
            raise CycleFailed("unchanged", trained["reason"])
        self._check_stop(cycle)
        self._state(cycle, "gating")
        gate = self._step(cycle, "gate", lambda: self._gate(cycle))
        verdict = gate["verdict"]
        shadow_only = False
        if verdict == "FAIL":
            raise CycleFailed("rejected", f"gate {gate['summary']}")
        if verdict == "INCONCLUSIVE":
            action = self._gate_settings().inconclusive
            if action != "shadow":
                raise CycleFailed("held" if action == "hold" else "rejected", f"gate {gate['summary']}")
            shadow_only = True
        serving = self._deployment_running()
        if not serving:
            if shadow_only:
                raise CycleFailed("held", f"gate INCONCLUSIVE, and no deployment {self.ctx.deployment!r} runs to shadow")
            self._state(cycle, "promoting")
            self._promote(cycle, note=f"no deployment {self.ctx.deployment!r} runs: the alias moved alone")
            return
        self._check_stop(cycle)
        self._state(cycle, "checking")
        infra = self._step(cycle, "infra", lambda: self._infra(cycle))
        if not infra.get("ok", False):
            raise CycleFailed("rejected", f"cannot serve: {infra.get('reason', '')}")
        self._check_stop(cycle)
        strategy = "shadow" if shadow_only else self.settings.strategy
        self._state(cycle, "rolling_out")
        self._step(cycle, "rollout", lambda: self._start_rollout(cycle, strategy))
        self._state(cycle, "watching")
        try:
            analysis = self._watch(cycle, strategy)
        except BaseException:
            self._safe_traffic(cycle)
            raise
        if analysis.verdict == "stopped":
            self._safe_traffic(cycle)
            newer = self.ctx.superseded()
            if newer and not self.ctx.stop.is_set():
                raise CycleFailed("abandoned", f"superseded during the watch by {newer}: the champion serves everything "
                                               "again, and the analysis starts over with the new candidate")
            raise AgentStopping()  # the champion serves everything; the next start rolls out and watches again
        if shadow_only and analysis.verdict == "passed":
            self._safe_traffic(cycle)
            raise CycleFailed("held", f"gate INCONCLUSIVE: shadowed only, never promoted; watch: {analysis.reason}")
        if analysis.verdict != "passed":
            self._state(cycle, "rolling_back", reason=f"watch {analysis.verdict}: {analysis.reason}")
            self._rollback(cycle, f"watch {analysis.verdict}: {analysis.reason}",
                           outcome="rolled_back" if analysis.verdict == "failed" else "held")
            return
        self._state(cycle, "promoting")
        self._promote(cycle, note=f"watch passed ({self.settings.strategy}): {analysis.reason}")

    # ------------------------------------------------------------------------------------------- steps

    def _snapshot(self, cycle: Cycle) -> dict[str, Any]:
        from mloop.errors import DataError
        from mloop.project.datasets import snapshot_production

        try:
            snap = snapshot_production(self.ctx.cfg, self.ctx.cfg.root / self.settings.snapshot_to,
                                       model=self.ctx.deployment)
        except DataError as err:  # nothing labelled served yet: train on what there is
            self._audit("run", cycle, f"no production snapshot: {err.message}")
            return {"skipped": err.message}
        from mloop.automation.triggers import data_key

        self.ctx.own(data_key(snap.md5))
        self._audit("run", cycle, f"production snapshot {snap.path.name} md5 {snap.md5}: {snap.rows.labelled} rows",
                    path=str(snap.path), md5=snap.md5)
        return {"path": str(snap.path), "md5": snap.md5}

    def _train(self, cycle: Cycle) -> dict[str, Any]:
        from mloop.automation.gate import load_holdout
        from mloop.pipeline.runner import raise_for_failures
        from mloop.project.run import run_project
        from mloop.registry.aliases import champion_version

        cfg = self.ctx.cfg
        registered = [t for t in cycle.triggers if t.get("kind") == "registry" and (t.get("detail") or {}).get("version")]
        if registered:  # someone else (CI) trained it: that version is the candidate
            return self._adopt(cycle, registered)
        champion = champion_version(cfg, self.ctx.model)
        run = run_project(cfg, promote=False, version_tags={AGENT_CYCLE: cycle.id})
        raise_for_failures(run.result)  # StepFailed: the cycle fails with the step's reason
        if run.registration is None:
            raise CycleFailed("failed", "the pipeline returned no ModelCandidate: there is nothing to roll out")
        from mloop.automation.triggers import version_key

        version = run.registration.version
        self.ctx.own(version_key(self.ctx.model, version))
        self._audit("run", cycle, f"run {run.tracking_id} registered v{version}"
                    + (" (the same model as before)" if run.registration.reused else ""),
                    version=version, run_id=run.tracking_id, reused=run.registration.reused)
        result = {"version": version, "champion": champion, "run_id": run.tracking_id}
        if version == champion:
            return {**result, "unchanged": True, "reason": f"the run trained v{version}, the champion already"}
        holdout = load_holdout(cfg, self._gate_settings(), run.result)
        path = holdout_path(cfg, cycle.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = holdout.features.assign(**{holdout.target_name: holdout.target.to_numpy()})
        from mloop._fs import atomic_path

        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return {**result, "holdout": str(path), "holdout_source": holdout.source, "holdout_digest": holdout.digest,
                "target": holdout.target_name}

    def _adopt(self, cycle: Cycle, registered: list[dict[str, Any]]) -> dict[str, Any]:
        """A cycle started by versions registered outside the agent: the newest is the candidate, judged against
        the version the deployment serves (CI's registration may have moved the alias already), on the
        configured holdout, else the candidate's own test frame when this project's store holds it (a
        registration made here), else the holdout the last cycle froze."""
        import shutil

        from mloop.errors import ConfigError
        from mloop.registry.aliases import champion_version
        from mloop.registry.fetch import fetch_bundle

        cfg = self.ctx.cfg
        newest = max(registered, key=lambda t: int(t["detail"]["version"]))
        version = str(newest["detail"]["version"])
        champion = self._served_version() or champion_version(cfg, self.ctx.model)
        self._audit("run", cycle, f"v{version}, registered outside the agent, is the candidate (no training): "
                    f"{newest.get('reason', '')}", version=version)
        result: dict[str, Any] = {"version": version, "champion": champion, "adopted": True}
        if version == champion:
            return {**result, "unchanged": True, "reason": f"v{version} is the version serving already"}
        target = fetch_bundle(cfg, f"models:/{self.ctx.model}/{version}").info.target
        if self._gate_settings().holdout:
            return {**result, "target": target}
        from mloop.registry.aliases import version_tags

        digest = version_tags(cfg, self.ctx.model, version).get("mloop.test_digest", "")
        test_frame = cfg.store / "objects" / digest[:2] / f"{digest}.parquet"
        frozen = sorted((cfg.store / "automation" / "holdouts").glob("*.parquet"), key=lambda f: f.stat().st_mtime)
        if digest and test_frame.is_file():
            frozen.append(test_frame)
            source = f"the test frame v{version} was registered with"
        elif frozen:
            source = f"the holdout frozen by cycle {frozen[-1].stem}"
        else:
            raise ConfigError(f"v{version} was registered outside the agent, and there is no holdout to gate it on",
                              hint="set [automation.gate] holdout = \"data/holdout.csv\" (a frozen file with the "
                                   "features and the target), or let one cycle of the agent train first")
        path = holdout_path(cfg, cycle.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(frozen[-1], path)
        from mloop.automation.gate import file_digest

        return {**result, "holdout": str(path), "holdout_source": source, "holdout_digest": file_digest(path),
                "target": target}

    def _served_version(self) -> str | None:
        from mloop.deploy.local import load_state

        deployment = load_state(self.ctx.cfg, self.ctx.deployment)
        if deployment is None or not process_alive(deployment.pid, started_by=deployment.started):
            return None
        return deployment.version

    def _gate_settings(self) -> Any:
        return self.settings.gate

    def _gate(self, cycle: Cycle) -> dict[str, Any]:
        from mloop.automation.gate import gate_versions, load_holdout
        from mloop.registry.aliases import set_version_tags

        cfg, gate = self.ctx.cfg, self._gate_settings()
        trained = self.ctx.journal.step_result(cycle.id, "train")
        frozen = gate if gate.holdout or "holdout" not in trained else gate.model_copy(update={
            "holdout": str(Path(trained["holdout"]).relative_to(cfg.root))})
        holdout = load_holdout(cfg, frozen, None, target=trained["target"])
        if not gate.holdout and "holdout" in trained:  # the run's test frame, frozen by the train step: named as the run's
            holdout.source, holdout.digest = trained["holdout_source"], trained["holdout_digest"]
        report = gate_versions(cfg, self.ctx.model, str(cycle.candidate), cycle.champion, holdout, gate,
                               gate.effective_rules(cfg.settings.promotion))
        summary = report.summary()
        set_version_tags(cfg, self.ctx.model, str(cycle.candidate), {
            AGENT_VERDICT: report.verdict, AGENT_GATE: json.dumps(report.to_dict())[:5000]})
        self._audit("gate", cycle, f"gate {summary}", version=str(cycle.candidate),
                    report=report.to_dict())
        return {"verdict": report.verdict, "summary": summary}

    def _infra(self, cycle: Cycle) -> dict[str, Any]:
        from mloop.automation.infra import check_can_serve

        settings = self.settings.infra
        uri = f"models:/{self.ctx.model}/{cycle.candidate}"
        if not settings.enabled:
            return {"ok": True, "reason": "the infra check is off ([automation.infra] enabled = false)"}
        report = check_can_serve(self.ctx.cfg, uri, settings, deployment=self.ctx.deployment)
        self._audit("infra", cycle, f"infra check {'passed' if report.ok else 'FAILED'}: {report.reason}",
                    version=str(cycle.candidate), report=report.to_dict())
        return {"ok": report.ok, "reason": report.reason}

    def _start_rollout(self, cycle: Cycle, strategy: str) -> dict[str, Any]:
        from mloop.deploy.local import start_rollout

        weight = {"swap": 1.0, "shadow": 0.0}.get(strategy, self.settings.canary_steps[0])
        uri = f"models:/{self.ctx.model}/{cycle.candidate}"
        start_rollout(self.ctx.cfg, self.ctx.deployment, uri, "shadow" if strategy == "shadow" else "canary",
                      None if strategy == "shadow" else weight)
        self._audit("traffic", cycle, f"{strategy}: v{cycle.candidate} gets {weight:.0%} of the requests"
                    + (" (scored in shadow, never answered)" if strategy == "shadow" else ""),
                    version=str(cycle.candidate), strategy=strategy, weight=weight)
        return {"strategy": strategy, "weight": weight}

    def _watch(self, cycle: Cycle, strategy: str) -> Analysis:
        from mloop.deploy.local import set_rollout_weight

        started = self.settings.canary_steps[0]

        def set_weight(weight: float) -> None:
            nonlocal started
            if weight == started:  # the roll-out began at it
                started = -1.0
                return
            set_rollout_weight(self.ctx.cfg, self.ctx.deployment, weight)
            self._audit("traffic", cycle, f"canary: v{cycle.candidate} gets {weight:.0%} of the requests",
                        version=str(cycle.candidate), strategy=strategy, weight=weight)

        self.ctx.journal.begin(cycle.id, "watch")
        analysis = analyse(self.settings.watch, lambda: self._read(cycle, strategy),
                           weights=self.settings.canary_steps if strategy == "canary" else None,
                           set_weight=set_weight, stopped=lambda: self.ctx.stop.is_set() or bool(self.ctx.superseded()),
                           sleep=self.ctx.sleep)
        self.ctx.journal.finish(cycle.id, "watch", analysis.to_dict())
        self._audit("watch", cycle, f"watch {analysis.verdict}: {analysis.reason}", version=str(cycle.candidate),
                    counts=analysis.counts(), measurements=[m.__dict__ for m in analysis.measurements[-20:]])
        return analysis

    def _read(self, cycle: Cycle, strategy: str) -> Reading:
        from mloop.deploy.local import rollout_state
        from mloop.errors import DeployError

        try:
            state = rollout_state(self.ctx.cfg, self.ctx.deployment)
        except DeployError as err:
            raise ProviderError(err.message) from err
        return reading_of(state, str(cycle.candidate), self._drift_share())

    def _drift_share(self) -> tuple[float | None, int]:
        from mloop.monitor.queries import status

        found = status(self.ctx.cfg.store / "monitor" / self.ctx.deployment)
        if found is None or found.drift is None:
            return None, 0
        share = getattr(found.drift, "drifted_share", None)
        return share, int(getattr(found.drift, "window_rows", 0) or 0)

    def _promote(self, cycle: Cycle, note: str = "") -> None:
        """The candidate serves alone, then the alias moves: both idempotent, so a resumed promotion ends
        where an uninterrupted one would."""
        from mloop.registry.aliases import move_champion

        cfg, candidate = self.ctx.cfg, str(cycle.candidate)
        serving = self._deployment_running()
        if serving:
            self._serve_alone(candidate)
        gate = self.ctx.journal.step_result(cycle.id, "gate").get("summary", "")
        before = move_champion(cfg, self.ctx.model, candidate, {
            AGENT_OUTCOME: "promoted", PROMOTED_AT: repr(time.time()), PROMOTED_BY: f"agent cycle {cycle.id}"})
        self.ctx.journal.put("rollbacks_in_a_row", 0)
        reason = (f"v{candidate} promoted (champion before: {'v' + before if before else 'none'}): gate {gate}"
                  + (f"; {note}" if note else ""))
        self.ctx.audit.append("promote", self.ctx.model, reason, cycle=cycle.id, version=candidate, previous=before,
                              champion=cycle.champion or "", deployment=self.ctx.deployment if serving else "")
        raise CycleFailed("promoted", reason)

    def _serve_alone(self, version: str) -> None:
        from mloop.deploy.local import deploy, load_state, promote_rollout, rollout_state

        cfg, name = self.ctx.cfg, self.ctx.deployment
        state = rollout_state(cfg, name)
        if state.get("candidate_version") == version:
            promote_rollout(cfg, name)
            return
        current = load_state(cfg, name)
        if current is None or current.version != version:  # the roll-out was lost (a server restarted): swap
            deploy(cfg, f"models:/{self.ctx.model}/{version}", name=name)

    def _rollback(self, cycle: Cycle, reason: str, outcome: str = "rolled_back") -> None:
        from mloop.registry.aliases import champion_version, move_champion

        self._safe_traffic(cycle)
        if cycle.champion and champion_version(self.ctx.cfg, self.ctx.model) != cycle.champion:
            move_champion(self.ctx.cfg, self.ctx.model, cycle.champion)  # moved outside (CI): back to what serves
        count = int(self.ctx.journal.get("rollbacks_in_a_row") or 0) + (outcome == "rolled_back")
        self.ctx.journal.put("rollbacks_in_a_row", count)
        self._audit("rollback" if outcome == "rolled_back" else "watch", cycle,
                    f"v{cycle.candidate} {'rolled back' if outcome == 'rolled_back' else 'held'}, v{cycle.champion} "
                    f"serves everything: {reason}", version=str(cycle.candidate), rollbacks_in_a_row=count)
        if count >= self.settings.max_rollbacks:
            self.ctx.journal.put("stopped", {"at": time.time(), "reason": f"{count} automatic rollbacks in a row"})
            self.ctx.on_alert("AgentStopped", f"{count} automatic rollbacks in a row: the agent stopped; "
                              "look at `mloop agent history`, then `mloop agent start`")
        raise CycleFailed(outcome, reason)

    def _safe_traffic(self, cycle: Cycle) -> None:
        """The champion serves all the traffic again (a roll-out aborted); harmless when there is none."""
        from mloop.deploy.local import abort_rollout

        if not self._deployment_running():
            return
        try:
            answer = abort_rollout(self.ctx.cfg, self.ctx.deployment)
        except MloopError as err:
            self._audit("rollback", cycle, f"could not abort the roll-out: {err.message}")
            raise
        self.ctx.journal.reset(cycle.id, ("rollout",))
        if answer.get("aborted"):
            served = str((answer.get("serving") or {}).get("version") or cycle.champion or "")
            self._audit("traffic", cycle, f"roll-out of v{cycle.candidate} ended: v{served} serves everything",
                        version=served, weight=1.0)

    # ------------------------------------------------------------------------------------------ helpers

    def _deployment_running(self) -> bool:
        return self._served_version() is not None

    def _step(self, cycle: Cycle, name: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        done = self.ctx.journal.begin(cycle.id, name)
        if done is not None:
            return done.result
        try:
            result = action()
            crash_point(f"{name}:done")
        except CycleFailed as failed:
            self.ctx.journal.finish(cycle.id, name, {"outcome": failed.outcome, "reason": failed.reason}, failed=True)
            raise
        except Exception as err:
            self.ctx.journal.finish(cycle.id, name, {"error": getattr(err, "message", None) or str(err)}, failed=True)
            raise
        self.ctx.journal.finish(cycle.id, name, result)
        return result

    def _state(self, cycle: Cycle, state: str, **fields: Any) -> None:
        self.ctx.journal.set_state(cycle.id, state, **fields)
        cycle.state = state
        crash_point(state)

    def _check_stop(self, cycle: Cycle) -> None:
        if self.ctx.stop.is_set():
            raise AgentStopping()

    def _final(self, cycle: Cycle, outcome: str, reason: str) -> None:
        self.ctx.journal.set_state(cycle.id, outcome, outcome=outcome, reason=reason)
        prune_holdouts(self.ctx.cfg)
        cycle.state, cycle.outcome, cycle.reason = outcome, outcome, reason
        if cycle.candidate and outcome != "promoted":
            from mloop.registry.aliases import set_version_tags

            try:
                set_version_tags(self.ctx.cfg, self.ctx.model, cycle.candidate, {AGENT_OUTCOME: outcome})
            except MloopError:
                pass  # the journal and the audit log say it; the tag is a convenience
        self._audit("cycle", cycle, f"cycle {outcome}: {reason}", version=cycle.candidate or "", outcome=outcome)

    def _audit(self, kind: str, cycle: Cycle, summary: str, *, version: str = "", **data: Any) -> None:
        self.ctx.audit.append(kind, self.ctx.model, summary, cycle=cycle.id, version=version,
                              deployment=self.ctx.deployment, champion=cycle.champion or "", **data)


HOLDOUTS_KEPT = 10


def prune_holdouts(cfg: ProjectConfig, keep: int = HOLDOUTS_KEPT) -> None:
    """The frozen holdouts of the last ``keep`` cycles stay (the next adopted version may be gated on the
    newest); older ones go."""
    folder = cfg.store / "automation" / "holdouts"
    frozen = sorted(folder.glob("*.parquet"), key=lambda f: f.stat().st_mtime) if folder.is_dir() else []
    for old in frozen[:-keep]:
        old.unlink(missing_ok=True)


def reading_of(state: dict[str, Any], candidate: str, drift: tuple[float | None, int]) -> Reading:
    """The candidate's figures from the server's roll-out state (``GET /admin/rollout``), since it started."""
    if not state.get("active") or not state.get("candidate_version"):
        raise ProviderError("the deployment has no roll-out in progress (its server restarted?)")
    if str(state["candidate_version"]) != candidate:
        raise ProviderError(f"the deployment rolls out v{state['candidate_version']}, not v{candidate}")
    figures = state.get("candidate") or {}
    requests = int(figures.get("requests") or 0)
    values: dict[str, float | None] = {"error_ratio": figures.get("error_ratio"),
                                       "p99_latency_ms": figures.get("p99_latency_ms"),
                                       "drifted_features_share": drift[0]}
    samples = {"error_ratio": requests, "p99_latency_ms": requests, "drifted_features_share": drift[1]}
    shadow = state.get("shadow") or {}
    values["shadow_disagreement"] = shadow.get("disagreement_rate")
    samples["shadow_disagreement"] = int(shadow.get("compared_rows") or 0)
    labelled = int(figures.get("labelled") or 0)
    for name, value in (figures.get("scores") or {}).items():
        values[name] = value
        samples[name] = labelled
    return Reading(values, samples)
