"""The web app as a whole: its pages are listed, a project that cannot be read says why, the token gate."""

from __future__ import annotations

from pathlib import Path

from tests.support.ui import app_test, texts


def test_app_opens_on_the_predict_page_with_the_project_in_the_sidebar(first_run):
    root, _ = first_run
    at = app_test(root).run()
    assert not at.exception, at.exception
    assert "Predict" in texts(at)
    assert "breast_cancer" in "\n".join(str(m.value) for m in at.sidebar.markdown)


def test_a_project_that_does_not_validate_shows_the_error_and_the_fix(tmp_path: Path):
    (tmp_path / "mloop.toml").write_text('[project]\nname = "x"\n[serving]\nport = "many"\n')
    at = app_test(tmp_path).run()
    assert not at.exception
    [error] = at.error
    assert "serving.port" in error.value and "Fix:" in error.value


def test_with_a_token_the_pages_open_only_after_it_is_typed(tmp_path: Path):
    (tmp_path / "mloop.toml").write_text('[project]\nname = "x"\n[ui]\ntoken = "s3cret"\n')
    at = app_test(tmp_path).run()
    assert "Predict" not in texts(at)
    at.text_input[0].input("wrong")
    at.button[0].click().run()
    assert "not the app's token" in texts(at) and "Predict" not in texts(at)
    at.text_input[0].input("s3cret")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "Predict" in texts(at)


def test_an_app_bound_beyond_loopback_closes_when_its_token_is_removed(tmp_path: Path, monkeypatch):
    (tmp_path / "mloop.toml").write_text('[project]\nname = "x"\n')
    monkeypatch.setenv("MLOOP_UI_HOST", "0.0.0.0")  # what `mloop ui --host 0.0.0.0` hands the app
    at = app_test(tmp_path).run()
    assert not at.exception
    [error] = at.error
    assert "beyond loopback" in error.value and "[ui] token" in error.value
    assert "Predict" not in texts(at) and not at.text_input


def test_the_app_process_preloads_its_modules_and_keeps_streamlit_s_settings():
    """What `mloop ui` runs: every preloaded module imports (a typo would stop the app at start) and Streamlit's
    own command line takes the options (an unknown one would too); here with `config show` in place of `run`."""
    import subprocess
    import sys

    from mloop.cli.ui_cmd import streamlit_command

    command = streamlit_command("127.0.0.1", 8501)
    options = command[command.index("--server.address"):]
    done = subprocess.run([*command[:3], "config", "show", *options], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "WARNING" not in done.stderr, done.stderr  # e.g. the cache decorators' "No runtime found", once each
    assert 'fileWatcherType = "none"' in done.stdout
    assert command[command.index("--runner.postScriptGC") + 1] == "false"  # Streamlit took it (hidden from its show)
