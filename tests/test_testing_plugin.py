"""The pytest plugin as a user meets it: a separate project (tests/user_project, its own pytest.ini, no
conftest) run by its own pytest, with ``lp_sandbox`` coming from the ``pytest11`` entry point."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).parent / "user_project"


def pytest_in_user_project(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABELPORT_", "PYTEST_"))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-rA", "-p", "no:cacheprovider", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def outcomes(stdout: str) -> dict[str, str]:
    return dict(
        (m.group(2), m.group(1))
        for m in re.finditer(r"^(PASSED|FAILED|ERROR) test_pipeline\.py::(\w+)", stdout, re.M)
    )


def test_a_users_pipeline_tests_run_against_the_sandbox():
    proc = pytest_in_user_project()
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one test there fails on purpose
    assert outcomes(proc.stdout) == {
        "test_pipeline_labels_every_record": "PASSED",
        "test_pipeline_survives_rate_limits_and_reruns": "PASSED",
        "test_environment_is_set_only_when_asked": "PASSED",
        "test_a_wrong_label_fails_this_test": "FAILED",
        "test_sandboxes_stop_after_the_test": "PASSED",
        "test_the_previous_sandbox_is_gone": "PASSED",
    }, proc.stdout
    # The failing one failed on its own assertion (a real label came back), not on the plugin.
    assert "EXPECTED-TO-FAIL" in proc.stdout


def test_the_fixture_comes_from_the_plugin():
    proc = pytest_in_user_project(
        "-p", "no:labelport", "test_pipeline.py::test_environment_is_set_only_when_asked"
    )
    assert proc.returncode == 1
    assert "fixture 'lp_sandbox' not found" in proc.stdout
