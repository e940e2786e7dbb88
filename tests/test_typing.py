"""The typed API: mypy --strict passes on examples/, the stubs are precise enough to catch a wrong call, stubtest
finds no mismatch between the stubs and the built module, and every public class and method has a docstring that
help() and Jupyter's ? show."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import labelport as lp
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("mypy")


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-incremental",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


def test_mypy_strict_passes_on_the_examples():
    run = mypy("--strict", "examples")
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_stubs_catch_wrong_calls(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        textwrap.dedent(
            """
            import labelport as lp

            def use(batch: lp.Batch) -> None:
                batch.upload(42, key="k")
                batch.upload([{"k": 1}], on_error="ignore")
                batch.wait(progress="yes")
                n: str = batch.results().to_csv("out.csv")
            """
        )
    )
    run = mypy("--strict", str(bad))
    assert run.returncode == 1
    for line in (5, 6, 7, 8):
        assert f"bad.py:{line}: error" in run.stdout, run.stdout


def test_stubtest_finds_no_mismatch(tmp_path):
    # stubtest imports every module, labelport.airflow too: Airflow sets up its home on import, never ~/airflow.
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow-home")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy.stubtest",
            "labelport",
            "--allowlist",
            str(ROOT / "tests" / "stubtest-allowlist.txt"),
            "--mypy-config-file",
            str(ROOT / "pyproject.toml"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]


def public_members():
    for name in lp.__all__:
        obj = getattr(lp, name)
        if not inspect.isclass(obj):
            continue
        yield name, obj
        if issubclass(obj, BaseException):
            continue  # the error fields are plain attributes, documented on LabelportError
        for attr, value in vars(obj).items():
            if not attr.startswith("_"):
                yield f"{name}.{attr}", value


def test_every_public_class_and_method_has_a_docstring():
    missing = [name for name, obj in public_members() if not (getattr(obj, "__doc__", None) or "").strip()]
    assert missing == []
    assert "DataFrame" in (lp.Batch.upload.__doc__ or "")
    assert "flatten" in (lp.ResultStream.to_pandas.__doc__ or "")
    text = subprocess.run(
        [sys.executable, "-c", "import labelport as lp; help(lp.ResultStream.to_pandas)"],
        capture_output=True,
        text=True,
        env={"PAGER": "cat", "PATH": "/usr/bin:/bin"},
    ).stdout
    assert "to_pandas(self, /, flatten=False, *, key_type=None, progress=None)" in text, text
