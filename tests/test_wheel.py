"""The wheel a user installs: built by maturin, installed into a clean virtualenv with no Rust toolchain on PATH,
where `labelport demo` runs against the sandbox inside it; and the sdist builds.

CI builds with the release profile it already compiled (a relink, not a rebuild); `make wheel` builds the
release wheel (manylinux2014 through zig, the dist profile) the same way for publishing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def _maturin() -> str:
    found = shutil.which("maturin", path=str(VENV_BIN)) or shutil.which("maturin")
    assert found, "maturin is not installed (make venv installs it)"
    return found


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert proc.returncode == 0, (
        f"{cmd}: exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


def test_the_wheel_installs_without_rust_and_runs_the_demo(tmp_path):
    dist = tmp_path / "dist"
    _run([_maturin(), "build", "--release", "--out", dist], cwd=ROOT, timeout=1800)
    (wheel,) = dist.glob("labelport-*.whl")
    # One abi3 wheel: CPython 3.10 and every later version.
    assert "-cp310-abi3-" in wheel.name, wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
    assert any(n.startswith("labelport/_labelport") and n.endswith(".so") for n in names), names
    for wanted in (
        "labelport/__init__.py",
        "labelport/py.typed",
        "labelport/_labelport.pyi",
        "labelport/cli/__init__.py",
        "labelport/cli/_batches.py",
        "labelport/testing.py",
        "labelport/callbacks.py",
        "labelport/spark.py",
        "labelport/dask.py",
    ):
        assert wanted in names, (wanted, names)
    assert not [n for n in names if n.startswith(("src/", "tests/", "target/"))], names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    with zipfile.ZipFile(wheel) as z:
        scripts = z.read(entry_points).decode().replace(" ", "")
    assert "labelport=labelport.cli:main" in scripts, scripts
    assert "[pytest11]" in scripts and "labelport=labelport.testing" in scripts, scripts  # the user's fixture

    with zipfile.ZipFile(wheel) as z:
        metadata = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    # orjson reads each page of results (src/py/envelope_pages.rs): a requirement, so `pip install labelport`
    # is the fast install; the only one.
    requires = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
    assert [r for r in requires if "extra ==" not in r] == ["orjson>=3.10"], requires

    clean = tmp_path / "clean"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", clean], timeout=300)
    # The requirement from the package index (as `make venv` gets everything), labelport from this wheel only.
    import orjson

    _run(
        [clean / "bin" / "python", "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:"]
        + ["--dest", dist, f"orjson=={orjson.__version__}"],
        timeout=300,
    )
    _run(
        [
            clean / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--find-links",
            dist,
            wheel,
        ],
        timeout=300,
    )

    path = f"{clean / 'bin'}:/usr/bin:/bin"
    assert shutil.which("cargo", path=path) is None and shutil.which("rustc", path=path) is None, path
    env = {"PATH": path, "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    where = _run(
        [clean / "bin" / "python", "-c", "import labelport; print(labelport.__file__)"],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert where.stdout.strip().startswith(str(clean)), where.stdout  # the installed copy, not the checkout
    fast = _run(
        [
            clean / "bin" / "python",
            "-c",
            "import labelport._labelport as n; print(n._fast_pages_available())",
        ],
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert fast.stdout.strip() == "True", fast.stdout
    demo = _run([clean / "bin" / "labelport", "demo", "--records", "200"], cwd=tmp_path, env=env, timeout=300)
    out = demo.stdout + demo.stderr
    assert "upload   200 records" in out and "total 200 · done" in out, out
    assert re.search(r"results  \d+ downloaded", out), out


def test_the_sdist_holds_what_a_build_needs(tmp_path):
    _run([_maturin(), "sdist", "--out", tmp_path], cwd=ROOT, timeout=300)
    (sdist,) = tmp_path.glob("labelport-*.tar.gz")
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    for wanted in (
        "pyproject.toml",
        "Cargo.toml",
        "Cargo.lock",
        "README.md",
        "src/lib.rs",
        "src/engine/http.rs",
        "python/labelport/__init__.py",
        "python/labelport/_labelport.pyi",
        "python/labelport/py.typed",
    ):
        assert wanted in names, wanted
    assert not [n for n in names if n.startswith(("target/", ".venv/"))]
