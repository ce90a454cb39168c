from pathlib import Path

import pytest

from mloop.config import load_project, parse_settings
from mloop.errors import ConfigError, ProjectNotFound


def write(root: Path, text: str) -> Path:
    (root / "mloop.toml").write_text(text)
    return root


def test_defaults_and_store_paths(tmp_path: Path):
    cfg = load_project(write(tmp_path, '[project]\nname = "p"\n'))
    assert cfg.tracking_uri == f"sqlite:///{tmp_path.resolve() / '.mloop' / 'mlflow.db'}"
    assert cfg.experiment == "p" and cfg.model_name == "p"
    assert cfg.settings.promotion.metric == "accuracy"


def test_project_found_from_a_subfolder(tmp_path: Path):
    write(tmp_path, '[project]\nname = "p"\n')
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert load_project(tmp_path / "a" / "b").root == tmp_path.resolve()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, '[project]\nname = "p"\n[tracking]\nuri = "sqlite:///x.db"\n')
    monkeypatch.setenv("MLOOP_TRACKING_URI", "http://127.0.0.1:5001")
    monkeypatch.setenv("MLOOP_PROMOTION_MIN_IMPROVEMENT", "0.02")
    cfg = load_project(tmp_path)
    assert cfg.tracking_uri == "http://127.0.0.1:5001"
    assert cfg.settings.promotion.min_improvement == 0.02


def test_step_params_table(tmp_path: Path):
    cfg = load_project(write(tmp_path, '[project]\nname = "p"\n[params.knn]\nn_neighbors = 7\n'))
    assert cfg.settings.params == {"knn": {"n_neighbors": 7}}


def test_malformed_toml_names_the_line(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"mloop.toml is not valid TOML: .*line 2"):
        load_project(write(tmp_path, '[project]\nname = "p\n'))


@pytest.mark.parametrize(("data", "message"), [
    ({"project": {"name": "p"}, "promotion": {"metrc": "f1"}}, r"unknown setting 'promotion.metrc'; did you mean 'metric'"),
    ({"projekt": {"name": "p"}}, r"unknown setting 'projekt'; did you mean 'project'"),
    ({"project": {"name": "p"}, "promotion": {"direction": "up"}}, r"promotion.direction = 'up': Input should be 'maximize' or 'minimize'"),
    ({"project": {"name": "p", "pipeline": "pipeline"}}, r"expected 'module:attribute'"),
    ({}, r"required setting 'project' is missing"),
])
def test_bad_settings_name_the_key_and_the_problem(data, message):
    with pytest.raises(ConfigError, match=message):
        parse_settings(data)


def test_no_project_file_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(ProjectNotFound) as info:
        load_project(tmp_path)
    assert "mloop init" in info.value.hint


def test_serving_settings_come_from_the_file_and_one_variable_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, '[project]\nname = "p"\n[serving]\nport = 9000\nmax_body_mb = 2\n')
    monkeypatch.setenv("MLOOP_SERVING_TOKEN", "s3cret")
    monkeypatch.setenv("MLOOP_SERVING_MAX_BATCH_ROWS", "64")
    serving = load_project(tmp_path).settings.serving
    assert (serving.port, serving.max_body_bytes, serving.max_batch_rows) == (9000, 2 * 1024 * 1024, 64)
    assert serving.token.get_secret_value() == "s3cret" and "s3cret" not in repr(serving)
    assert serving.receiver_token == "s3cret"  # the alert receiver takes the server's token unless it has its own


def test_connection_deadlines_and_limit_have_defaults_and_one_variable_each(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, '[project]\nname = "p"\n[serving]\nheader_timeout = 2.5\n')
    monkeypatch.setenv("MLOOP_SERVING_MAX_CONNECTIONS", "50")
    serving = load_project(tmp_path).settings.serving
    assert (serving.header_timeout, serving.body_timeout, serving.keep_alive_timeout, serving.max_connections) == (
        2.5, 60.0, 5.0, 50)
    monkeypatch.setenv("MLOOP_SERVING_BODY_TIMEOUT", "0")
    with pytest.raises(ConfigError, match="body_timeout"):
        load_project(tmp_path)


def test_a_server_without_a_project_reads_the_same_variables(monkeypatch: pytest.MonkeyPatch):
    from mloop.config import serving_settings

    monkeypatch.setenv("MLOOP_SERVING_PORT", "9100")
    monkeypatch.setenv("MLOOP_SERVING_ALERT_TOKEN", "am")
    settings = serving_settings(host="0.0.0.0", port=None)
    assert (settings.host, settings.port, settings.receiver_token) == ("0.0.0.0", 9100, "am")
    monkeypatch.setenv("MLOOP_SERVING_PORT", "http")
    with pytest.raises(ConfigError, match="serving setting port"):
        serving_settings()


@pytest.mark.parametrize(("old", "new"), [("MLOOP_TOKEN", "MLOOP_SERVING_TOKEN"),
                                          ("MLOOP_WEBHOOK_TOKEN", "MLOOP_MONITOR_WEBHOOK_TOKEN")])
def test_a_variable_mloop_no_longer_reads_is_refused_naming_the_new_one(monkeypatch: pytest.MonkeyPatch, old, new):
    from mloop.config import check_renamed_variables

    monkeypatch.setenv(old, "x")
    with pytest.raises(ConfigError, match=f"{old} is set, but mloop reads {new} instead"):
        check_renamed_variables()


def test_the_webhook_token_is_a_secret_with_its_one_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path, '[project]\nname = "p"\n')
    monkeypatch.setenv("MLOOP_MONITOR_WEBHOOK_TOKEN", "hook")
    token = load_project(tmp_path).settings.monitor.webhook_token
    assert token.get_secret_value() == "hook" and "hook" not in str(token)
