"""Nothing left behind: loading, inspecting and serving registered models leaves the temporary folder as it was."""

from __future__ import annotations

import io
import json
import tempfile
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from mloop.config import load_project
from mloop.registry.fetch import fetch_bundle, load_registered
from mloop.registry.queries import version_detail
from tests.support.servers import post, start_server, stop

pytestmark = pytest.mark.integration


def left_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def test_loading_a_registered_model_again_and_again_leaves_no_copy_behind(first_run, tmp_path, monkeypatch):
    root, _ = first_run
    cfg = load_project(root)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))  # (tempfile reads TMPDIR once per process)
    assert Path(tempfile.mkdtemp()).parent == tmp and left_in(tmp)  # the check sees what is made there
    for leftover in tmp.iterdir():
        leftover.rmdir()
    for _ in range(3):
        model = load_registered(cfg, "models:/breast_cancer@champion")
        assert model.version == "1" and len(model.features) == 30
    fetch_bundle(cfg, "models:/breast_cancer/1")
    version_detail(cfg, "breast_cancer")
    assert left_in(tmp) == []
    assert left_in(cfg.scratch()) == []  # the project's own scratch space, where the copies are made, too


def test_a_server_that_loads_swaps_and_scores_files_leaves_no_temporary_file(first_run, tmp_path):
    root, _ = first_run
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc, url = start_server(root, "--no-access-log", env={"TMPDIR": str(tmp), "MLOOP_SERVING_ADMIN_TOKEN": "adm"})
    try:
        features = pd.read_csv(root / "data" / "breast_cancer.csv").drop(columns=["target"])
        status, answer = post(f"{url}/predict", json.dumps({"instances": features.head(2).to_dict(orient="records")})
                              .encode())
        assert status == 200 and len(answer["predictions"]) == 2
        buffer = io.StringIO()
        features.to_csv(buffer, index=False)
        request = urllib.request.Request(f"{url}/predict/batch", data=buffer.getvalue().encode(), method="POST",
                                         headers={"content-type": "text/csv"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 200 and response.headers["x-rows-scored"] == str(len(features))
        for _ in range(2):  # a hot swap loads the version again, each time
            status, swapped = post(f"{url}/admin/model", b'{"uri": "models:/breast_cancer/1"}',
                                   {"authorization": "Bearer adm"})
            assert status == 200 and swapped["serving"]["version"] == "1"
        assert left_in(tmp) == [], "while serving"
        assert left_in(root / ".mloop" / "tmp") == [], "while serving"
    finally:
        stop(proc)
    assert left_in(tmp) == [], "after the server stopped"
