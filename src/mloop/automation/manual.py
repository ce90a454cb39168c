"""Traffic changes a person makes to a local deployment (the CLI, the web app), each recorded in the audit log so
``mloop history --at`` sees it: a deploy, a rollback, an undeploy, a roll-out's candidate promoted or aborted.

Where the agent owns the champion (the project has an ``[automation]`` table) it also owns the roll-outs of its
deployment: a hand that promoted or aborted one under it would leave the journal saying one thing and the server
serving another, so those two are refused here with the command that does it the agent's way; so is a rollback of
that deployment while the agent's roll-out on it is active.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mloop.automation.agent import deployment_name, open_audit
from mloop.automation.history import record_deploy
from mloop.errors import DeployError

if TYPE_CHECKING:
    from mloop.config import ProjectConfig
    from mloop.deploy import DeployResult


def audited(cfg: ProjectConfig, result: DeployResult, *, by: str = "mloop deploy") -> DeployResult:
    """``result`` of a local deployment's traffic change, recorded in the audit log; returned as it is."""
    if result.target == "local":
        record_deploy(cfg, result, by=by)
    return result


ROLLBACK_UNDER_AGENT = ("wait for the agent's watch to decide (mloop agent status), or stop the agent first "
                        "(mloop agent stop gives the champion all the traffic back), then roll back")
ROLLOUT_READ_TIMEOUT_S = 10.0  # how long the rollback's check waits for the server to say its roll-out


def rollback(cfg: ProjectConfig, name: str, *, by: str = "mloop rollback",
             expect: tuple[str, str] | None = None) -> DeployResult:
    """Swap the running deployment ``name`` back to the version it served before (``deploy.local.rollback``),
    recorded in the audit log. DeployError if it is not running, served one version only, or is the agent's own
    deployment while the agent's roll-out on it is active (the model would change under the agent's watch).
    ``expect``: see ``deploy.local.rollback``."""
    from mloop.deploy import local

    if agent_owns_rollouts(cfg, name) and local.rollout_state(cfg, name, timeout=ROLLOUT_READ_TIMEOUT_S).get("active"):
        raise DeployError(f"the agent is rolling out a candidate on deployment {name!r} ([automation] in "
                          "mloop.toml): rolling it back by hand now would swap the model under the agent's watch",
                          hint=ROLLBACK_UNDER_AGENT)
    return audited(cfg, local.rollback(cfg, name, expect=expect), by=by)


def agent_owns_rollouts(cfg: ProjectConfig, name: str) -> bool:
    """True when the project's agent gates, rolls out and promotes on deployment ``name``."""
    return cfg.settings.agent_owns_champion and deployment_name(cfg) == name


def _refuse_under_agent(cfg: ProjectConfig, name: str, what: str, hint: str) -> None:
    if agent_owns_rollouts(cfg, name):
        raise DeployError(f"the agent owns the roll-outs of deployment {name!r} ([automation] in mloop.toml): "
                          f"{what} by hand would leave its journal and the server disagreeing", hint=hint)


def promote_rollout(cfg: ProjectConfig, name: str, *, by: str) -> DeployResult:
    """Make the candidate of deployment ``name``'s roll-out its only served version (``deploy.local.promote_rollout``),
    recorded in the audit log. DeployError without a roll-out, or on the agent's own deployment."""
    from mloop.deploy import local

    _refuse_under_agent(cfg, name, "promoting its candidate",
                        "let the agent's watch decide (mloop agent status); to promote a version yourself, stop the "
                        "agent (mloop agent stop gives the champion all the traffic back), then: mloop models promote "
                        "VERSION")
    return audited(cfg, local.promote_rollout(cfg, name), by=by)


def abort_rollout(cfg: ProjectConfig, name: str, *, by: str) -> dict[str, Any]:
    """Drop the candidate of deployment ``name``'s roll-out (``deploy.local.abort_rollout``): the served version
    answers everything again, recorded in the audit log when a roll-out was aborted. DeployError on the agent's
    own deployment. Returns the server's answer (``"aborted"``: whether there was one)."""
    from mloop.deploy import local

    _refuse_under_agent(cfg, name, "aborting its roll-out",
                        "mloop agent stop gives the champion all the traffic back (the next mloop agent start resumes "
                        "the cycle)")
    answer = local.abort_rollout(cfg, name)
    if answer.get("aborted"):
        serving = answer.get("serving") or {}
        served = str(serving.get("version") or "")
        model = str(serving.get("name") or cfg.model_name)
        candidate = str((answer.get("candidate") or {}).get("version") or "")
        open_audit(cfg).append("traffic", model, f"{by}: {name} roll-out of v{candidate} aborted, v{served} serves "
                               "everything",
                               version=served, deployment=name, weight=1.0, by=by)
    return answer
