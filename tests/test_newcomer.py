"""A newcomer's first minutes (issue 21, item 4): `make demo` installs only what the build needs (maturin), the
test toolchain comes with `make test`, and the demo runs with nothing but labelport and the standard library.

Cheap guards: `make -n` against a venv path that does not exist yet shows what a fresh clone would install,
and the demo runs in a child process where every import outside the standard library and labelport fails."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def dry_run(target: str, venv: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    proc = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.replace("\\\n", " ").splitlines()


def pip_installs(commands: list[str]) -> list[str]:
    return [c for c in commands if re.search(r"-m pip install\b", c)]


def test_make_demo_on_a_fresh_clone_installs_only_maturin(tmp_path):
    installs = pip_installs(dry_run("demo", tmp_path / ".venv"))
    assert len(installs) == 1, installs
    wanted = [w for w in installs[0].partition("pip install")[2].split() if not w.startswith("-")]
    assert wanted == ['"maturin>=1.7,<2"'], installs  # no -r requirements, no pandas, pyspark, dask, mypy


def test_make_test_installs_the_test_toolchain(tmp_path):
    installs = " ".join(pip_installs(dry_run("test", tmp_path / ".venv")))
    for requirements in ("tests/requirements.txt", "tests/requirements-extras.txt"):
        assert f"-r {requirements}" in installs, installs


# Run as a child: every top-level module outside the standard library and labelport is refused, as in a venv
# that holds only maturin (a binary) and the labelport it built.
ONLY_STDLIB = """
import sys
refused = []

class OnlyStdlib:
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in sys.stdlib_module_names or top in ("labelport", "_labelport"):
            return None
        refused.append(top)
        raise ModuleNotFoundError(f"No module named {name!r} (not installed by make demo)", name=name)

sys.meta_path.insert(0, OnlyStdlib())
from labelport.cli import main
code = main(["demo", "--records", "200"])
print("refused:", sorted(set(refused)), file=sys.stderr)
sys.exit(code)
"""


def test_the_demo_needs_nothing_but_labelport_and_the_standard_library(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", ONLY_STDLIB],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "upload   200 records" in out and "total 200 · done" in out, out
