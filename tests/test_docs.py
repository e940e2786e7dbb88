"""The documentation's own claims, where a test can hold them (the site itself is built by `make docs` in
.ci/run, strictly: a broken link, anchor or API reference fails CI).

- The getting-started page's first round trip runs as written, in a fresh interpreter.
- The README keeps its two-command quick start.
- Every page under docs/ is in the site's navigation (a page left out would be built but unreachable).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"), flags=re.M | re.S)


def test_the_getting_started_round_trip_runs_as_written():
    code = python_blocks(ROOT / "docs" / "getting-started.md")[0]
    assert "lp.sandbox.start" in code
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "'state': 'completed'" in lines[0] and "'done': 200" in lines[0], lines
    assert lines[1].startswith("200 ") and " completed " in lines[1], lines


def test_the_readme_quick_start_is_two_commands():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```sh\n(.*?)^```", quick, flags=re.M | re.S)[0].splitlines()
    assert [c.split("#")[0].strip() for c in commands] == ["make demo", "make test"]


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8").split("\nnav:", 1)[1]
    listed = set(re.findall(r":\s*(\S+\.(?:md|ipynb))\s*$", nav, flags=re.M))
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert pages <= listed, sorted(pages - listed)
