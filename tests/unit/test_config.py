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
