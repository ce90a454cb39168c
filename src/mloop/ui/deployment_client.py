"""Requests from the app to a running deployment's server, as any client sends them (with the serving token
when the project has one), so what the app scores is logged and monitored like every other request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mloop.config import ProjectConfig
from mloop.deploy.local import Deployment
from mloop.errors import DeployError


@dataclass(frozen=True)
class Reply:
    """A server's answer: its status, body and the headers the app reads."""

    status: int
    body: bytes
    request_id: str = ""
    version: str = ""  # the model version that answered (x-model-version)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status < 400

    def json(self) -> Any:
        import orjson

        return orjson.loads(self.body)


def post(cfg: ProjectConfig, deployment: Deployment, path: str, *, json: Any = None, content: bytes | None = None,
         content_type: str = "application/json", timeout: float = 60.0) -> Reply:
    """POST to the deployment; a server that does not answer is a DeployError saying how to bring it back."""
    import httpx
    import orjson

    from mloop._http import client

    body = content if content is not None else orjson.dumps(json)
    try:
        with client(timeout=timeout, token=cfg.settings.serving.token.get_secret_value()) as http:
            response = http.post(f"{deployment.url}{path}", content=body, headers={"content-type": content_type})
    except httpx.HTTPError as err:
        raise DeployError(f"deployment {deployment.name!r} does not answer at {deployment.url}: "
                          f"{type(err).__name__}: {err}",
                          hint=f"see its state with 'mloop deployments'; start it again with "
                               f"'mloop deploy {deployment.model}/{deployment.version} --name {deployment.name}'"
                          ) from err
    return Reply(response.status_code, response.content, response.headers.get("x-request-id", ""),
                 response.headers.get("x-model-version", ""), dict(response.headers))


def refusal(deployment: Deployment, reply: Reply) -> str:
    """What to show for an answer of 400 or more: the server's message and field, and what to do."""
    try:
        payload = reply.json()
    except ValueError:
        payload = None
    message = str(payload.get("error", "")) if isinstance(payload, dict) else reply.body[:300].decode("utf-8", "replace")
    where = f" (field: {payload['field']})" if isinstance(payload, dict) and payload.get("field") else ""
    if reply.status == 401:
        fix = ("the server has a token and the app sent another (or none): set the same [serving] token in "
               "mloop.toml, or MLOOP_SERVING_TOKEN, where 'mloop ui' runs")
    elif reply.status >= 500:
        fix = f"the server failed on its side; see its log: {deployment.log or '.mloop/deployments/'}"
    else:
        fix = "correct the value named and send it again"
    return f"{deployment.name} answered HTTP {reply.status}: {message or 'no message'}{where}\n\n**Fix:** {fix}"
