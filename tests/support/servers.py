"""Starting, waiting for and stopping real processes on 127.0.0.1 (mloop serve, MLflow, Prometheus, ...)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

MLOOP = str(Path(sys.executable).with_name("mloop"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> bytes:
    """Poll ``url`` until it answers 200 and return the body; fail early with the output if ``proc`` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            output = proc.stderr.read() if proc.stderr else (proc.stdout.read() if proc.stdout else "")
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode} before {url} answered: {output!r}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return bytes(response.read())
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def start_server(root: Path, *args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """``mloop serve`` in project ``root`` on a free port; returns the process and its URL once ready."""
    port = free_port()
    proc = subprocess.Popen([MLOOP, "serve", "--port", str(port), *args], cwd=root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/v2/health/ready", proc)
    except TimeoutError:
        proc.kill()
        raise
    return proc, url


def stop(proc: subprocess.Popen) -> str:
    """SIGTERM, then the process's stderr (SIGKILL after 30 s)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


def post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    """POST a JSON body; returns the status and the JSON answer (4xx and 5xx included)."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def system_binary(name: str, package: str) -> str:
    """The path of a program from a Debian package, installing the package first if it is missing (as root)."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"{name} is missing and only root can install it: apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True, timeout=600)
    done = subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", package],
                          env=env, capture_output=True, text=True, timeout=900)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"installing {package} did not give {name}: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return found


def start_s3(root: Path) -> tuple[subprocess.Popen, str]:
    """moto's standalone S3 API server on a free port of 127.0.0.1 (no MinIO here); returns it and its URL."""
    port = free_port()
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/moto-api/", proc, timeout=60)
    return proc, url
