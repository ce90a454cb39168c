"""``mloop models promote VERSION``: a person moves the champion — through the gate's verdict, or over it
with ``--force --reason``, which is recorded (version tags and the audit log)."""

from __future__ import annotations

import getpass
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mloop.automation.agent import deployment_name, open_audit
from mloop.automation.cycle import AGENT_VERDICT
from mloop.errors import ConfigError, GateFailed
from mloop.registry.aliases import PROMOTED_AT, PROMOTED_BY

if TYPE_CHECKING:
    from mloop.config import ProjectConfig

OVERRIDE_REASON = "mloop.override.reason"


@dataclass
class Promoted:
    model: str
    version: str
    previous: str | None
    forced: bool
    deployment: str | None  # the deployment now serving it, if one ran


def promote(cfg: ProjectConfig, version: str, *, force: bool = False, reason: str = "",
            model: str | None = None) -> Promoted:
    from mloop._proc import process_alive
    from mloop.deploy.local import deploy, load_state
    from mloop.registry.aliases import champion_version, move_champion, version_tags

    model = model or cfg.model_name
    version = version.lstrip("v")
    tags = version_tags(cfg, model, version)
    if force and not reason.strip():
        raise ConfigError("--force needs --reason: an override is recorded with why it was made",
                          hint=f"mloop models promote {version} --force --reason \"...\"")
    verdict = tags.get(AGENT_VERDICT) or ("PASS" if tags.get(PROMOTED_BY) == "registration" else "")
    if verdict != "PASS" and not force:
        said = f"its gate verdict was {verdict}" if verdict else "it has no passed gate verdict"
        raise GateFailed(f"{model} v{version} was not promoted: {said}",
                         hint=f"promote it anyway, on the record: mloop models promote {version} --force --reason \"...\"")
    if champion_version(cfg, model) == version:
        return Promoted(model, version, version, force, None)
    name = deployment_name(cfg)
    served = load_state(cfg, name)
    serving = served is not None and served.model == model and process_alive(served.pid, started_by=served.started)
    if serving:
        from mloop.deploy.local import rollout_state

        rolling = rollout_state(cfg, name)
        if rolling.get("active"):
            raise ConfigError(f"deployment {name!r} is rolling out v{rolling.get('candidate_version')} (the agent's "
                              "cycle): promoting now would cut its watch short",
                              hint="wait for the cycle to end (mloop agent status), or stop the agent first "
                                   "(mloop agent stop gives the champion all traffic back)")  # it serves alone first, then the alias moves: the champion is always what serves
        deploy(cfg, f"models:/{model}/{version}", name=name)
    who = getpass.getuser()
    extra = {PROMOTED_AT: repr(time.time()), PROMOTED_BY: f"{who} (mloop models promote{' --force' if force else ''})"}
    if force:
        extra[OVERRIDE_REASON] = reason
    previous = move_champion(cfg, model, version, extra)
    how = "its gate PASS" if tags.get(AGENT_VERDICT) == "PASS" else "its registration's rule passed"
    summary = (f"{who} promoted v{version} over its gate ({verdict or 'no verdict'}): {reason}" if force
               else f"{who} promoted v{version} ({how})" + (f": {reason}" if reason else ""))
    open_audit(cfg).append("override" if force else "promote", model, summary, version=version, by=who,
                           champion=previous or "", deployment=name if serving else "", forced=force)
    return Promoted(model, version, previous, force, name if serving else None)
