"""One way to make HTTP calls: an httpx client with mloop's timeouts, and retries with backoff (tenacity)."""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_S = 10.0


def client(*, timeout: float = TIMEOUT_S, token: str = "") -> httpx.Client:
    """A client for one short conversation; ``token`` is sent as a bearer token."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)), headers=headers,
                        follow_redirects=False, trust_env=False)


def get_json(url: str, *, timeout: float = TIMEOUT_S) -> Any:
    """GET ``url`` and parse its JSON body; raises httpx.HTTPError (transport or status) or ValueError."""
    with client(timeout=timeout) as http:
        response = http.get(url)
        response.raise_for_status()
        return response.json()


def _retryable(error: BaseException) -> bool:
    if isinstance(error, httpx.HTTPStatusError):
        return error.response.status_code >= 500 or error.response.status_code == 429
    return isinstance(error, httpx.TransportError)


def post_with_retries(url: str, body: bytes, *, token: str = "", attempts: int = 4, backoff_s: float = 0.5,
                      timeout: float = TIMEOUT_S) -> httpx.Response:
    """POST a JSON ``body``, retrying transport errors, 429 and 5xx with exponential backoff.

    Raises the last httpx.HTTPError after ``attempts`` tries (a 4xx other than 429 is not retried).
    """
    from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

    with client(timeout=timeout, token=token) as http:
        for attempt in Retrying(stop=stop_after_attempt(attempts), wait=wait_exponential(multiplier=backoff_s),
                                retry=retry_if_exception(_retryable), reraise=True):
            with attempt:
                response = http.post(url, content=body, headers={"content-type": "application/json"})
                response.raise_for_status()
        return response
