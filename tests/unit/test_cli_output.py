"""The CLI prints names, messages and categories as they are: square brackets are not markup."""

from mloop.cli.output import report_error
from mloop.errors import ConfigError, ModelError


def test_an_error_keeps_its_square_brackets_and_hint(capsys):
    code = report_error(ConfigError("[promotion] metric 'accuracy' does not fit [project] task 'regression'",
                                    hint="use one of: [r2]"), verbose=False)
    err = capsys.readouterr().err
    assert code == 2
    assert "error: [promotion] metric 'accuracy' does not fit [project] task 'regression'" in err
    assert "hint: use one of: [r2]" in err


def test_an_internal_error_says_so_and_keeps_brackets(capsys):
    assert report_error(ValueError("classes [0, 1]"), verbose=False) == 1
    assert "internal error: ValueError: classes [0, 1]" in capsys.readouterr().err
    assert report_error(ModelError("x [bold]y[/]"), verbose=False) == 2
    assert "x [bold]y[/]" in capsys.readouterr().err


def test_a_file_system_refusal_names_the_path_and_is_not_called_internal(capsys):
    import errno

    assert report_error(IsADirectoryError(errno.EISDIR, "Is a directory", "/p/.mloop/locks/mlflow-db.lock"),
                        verbose=False) == 2
    err = capsys.readouterr().err
    assert "error: Is a directory: /p/.mloop/locks/mlflow-db.lock" in err and "internal" not in err
    assert "mloop doctor" in err
    assert report_error(OSError(errno.ENOSPC, "No space left on device", "/p/.mloop/x"), verbose=False) == 2
    assert "free space on that disk" in capsys.readouterr().err
    assert report_error(OSError("no file named"), verbose=False) == 1  # no path: nothing to point at
