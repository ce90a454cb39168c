"""Calling an ASGI app in memory (httpx's ASGI transport)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx


def call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path, **kwargs)
    return asyncio.run(go())


def app_for(model: Any, *, monitor: Any = None, monitor_dir: Any = None, loader: Any = None, access_log: Any = None,
            **serving: Any) -> Any:
    """The server's ASGI app for ``model`` in memory; ``serving`` are ``[serving]`` settings (token=..., ...)."""
    from mloop.config import ServingSection
    from mloop.serving.server import create_app

    return create_app(model, ServingSection.model_validate(serving), monitor=monitor, monitor_dir=monitor_dir,
                      loader=loader, access_log=access_log)
