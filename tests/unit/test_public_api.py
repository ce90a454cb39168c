import subprocess
import sys

import mloop

HEAVY = ("mlflow", "sklearn", "pandas", "pyarrow", "scipy", "matplotlib")


def test_all_lists_exactly_the_public_names():
    import types

    public = {name for name, value in vars(mloop).items()
              if not name.startswith("_") and not isinstance(value, types.ModuleType)}
    assert set(mloop.__all__) - {"__version__"} == public


def _imported_after(code: str) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(m.split('.')[0] for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split()) & set(HEAVY)


def test_import_mloop_loads_no_heavy_library():
    assert _imported_after("import mloop") == set()


def test_cli_help_loads_no_heavy_library():
    code = "from mloop.cli.main import main\nassert main(['--help']) == 0"
    assert _imported_after(code) == set()
