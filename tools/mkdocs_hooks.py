"""mkdocs hooks for labelport's documentation site (mkdocs.yml, ``make docs``).

- Pages from outside ``docs/``: the README is the home page, RELIABILITY.md, BENCHMARKS.md and CHANGELOG.md are
  pages, the notebooks in ``examples/`` are rendered (and run) by mkdocs-jupyter, and each example script is a page.
- Links: every page is written to be read in the repository too, so its relative links point at repository files
  (``docs/contract.md`` from the README, ``../examples/quickstart.ipynb`` from ``docs/``). Each link that names a
  file the site carries is rewritten to that file's page; any other relative link is left as written, so that
  mkdocs' own validation (``mkdocs build --strict``) fails on it.
- The API reference (``api.md``) must show the Rust core's docstrings, which reach the stubs through
  ``tools/griffe_runtime_docs.py``: the build fails if a public method's docstring is missing from the page.
- ``<!-- labelport:cli-help -->`` in a page becomes the ``--help`` of ``labelport`` and of each of its commands,
  from the argument parser itself (``labelport.cli.build_parser``), so the CLI reference cannot drift.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import os
import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError
from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent
DOCS = "docs"

# Repository files outside docs/ that the site carries, and where: repository path -> site path.
PAGES_FROM_ROOT = {
    "README.md": "index.md",
    "RELIABILITY.md": "project/reliability.md",
    "BENCHMARKS.md": "project/benchmarks.md",
    "CHANGELOG.md": "project/changelog.md",
}
NOTEBOOKS = ("examples/quickstart.ipynb", "examples/bake_off.ipynb")
SCRIPTS = ("examples/dataframes.py", "examples/dlt_pipeline.py", "examples/airflow_dag.py")

CLI_MARKER = "<!-- labelport:cli-help -->"
# A markdown link or image target: ](target) or ](target "title"); the target has no spaces.
LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")

# site path -> repository path, for every page of the site (filled by on_files).
_REPO_PATH: dict[str, str] = {}
# repository path -> site path, for every file of the site.
_SITE_PATH: dict[str, str] = {}


@event_priority(100)  # before the plugins (mkdocs-jupyter must see the notebooks)
def on_files(files: Files, config: Any) -> Files:
    _REPO_PATH.clear()
    _SITE_PATH.clear()
    for file in files:
        repo = f"{DOCS}/{file.src_uri}"
        _REPO_PATH[file.src_uri] = repo
        _SITE_PATH[repo] = file.src_uri
    for repo, site in PAGES_FROM_ROOT.items():
        text = (ROOT / repo).read_text(encoding="utf-8")
        files.append(File.generated(config, site, content=text))
        _REPO_PATH[site], _SITE_PATH[repo] = repo, site
    for repo in NOTEBOOKS:
        # A real file (mkdocs-jupyter reads and runs it from its path), placed in the site at its repository path.
        files.append(File(repo, src_dir=str(ROOT), dest_dir=config["site_dir"], use_directory_urls=True))
        _REPO_PATH[repo], _SITE_PATH[repo] = repo, repo
    for repo in SCRIPTS:
        site = repo.removesuffix(".py") + ".md"
        source = (ROOT / repo).read_text(encoding="utf-8")
        docstring = _module_docstring(source)
        page = f"# `{repo}`\n\n{docstring}\n\n```python\n{source}```\n"
        files.append(File.generated(config, site, content=page))
        _REPO_PATH[site], _SITE_PATH[repo] = repo, site
    return files


def _module_docstring(source: str) -> str:
    return ast.get_docstring(ast.parse(source)) or ""


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    site_path = page.file.src_uri
    repo_path = _REPO_PATH.get(site_path, f"{DOCS}/{site_path}")
    markdown = rewrite_links(markdown, repo_path, site_path)
    if CLI_MARKER in markdown:
        markdown = markdown.replace(CLI_MARKER, cli_reference())
    return markdown


# The classes whose every public member's docstring the API page must show.
API_CLASSES = (
    "Client",
    "ClientSpec",
    "AsyncClient",
    "Batch",
    "Job",
    "ResultStream",
    "AsyncBatch",
    "AsyncJob",
)


def on_page_content(html: str, page: Any, config: Any, files: Files) -> str:
    if page.file.src_uri == "api.md":
        missing = missing_docstrings(html)
        if missing:
            raise PluginError(f"the API reference lacks the docstrings of {', '.join(missing)}")
    return html


def missing_docstrings(html: str) -> list[str]:
    """Public members of API_CLASSES without a docstring of their own in the stubs whose built module's docstring
    (its first words) is not in the page's text."""
    import html as html_lib
    import inspect

    import labelport as lp

    text = " ".join(html_lib.unescape(re.sub(r"<[^>]+>", "", html)).split())
    stubbed = _stub_docstrings(ROOT / "python" / "labelport" / "_labelport.pyi")
    missing = []
    for cls_name in API_CLASSES:
        for name, value in vars(getattr(lp, cls_name)).items():
            doc = inspect.getdoc(value) if not name.startswith("_") else None
            if not doc or f"{cls_name}.{name}" in stubbed:
                continue
            words = " ".join(doc.replace("`", "").replace("*", "").split()[:5])
            if words not in text:
                missing.append(f"{cls_name}.{name}")
    return missing


def _stub_docstrings(path: Path) -> set[str]:
    """``Class.member`` for each member of a class in the stub file that has a docstring there."""
    out = set()
    for cls in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(cls, ast.ClassDef):
            for item in cls.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and ast.get_docstring(item):
                    out.add(f"{cls.name}.{item.name}")
    return out


def rewrite_links(markdown: str, repo_path: str, site_path: str) -> str:
    """Links to repository files the site carries, rewritten to their pages; others left alone."""

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        # A URL, an anchor on the same page, a site-absolute path: left as written.
        if re.match(r"^[a-z][a-z0-9+.-]*:|^#|^/", target):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        repo_target = posixpath.normpath(posixpath.join(posixpath.dirname(repo_path), path))
        site_target = _SITE_PATH.get(repo_target)
        if site_target is None:
            return match.group(0)  # not on the site: mkdocs reports it if it is not found
        relative = posixpath.relpath(site_target, posixpath.dirname(site_path) or ".")
        return f"{match.group(1)}{relative}{hash_}{anchor}{match.group(3)}"

    # Code blocks are left as they are.
    parts = re.split(r"(^```.*?^```)", markdown, flags=re.M | re.S)
    return "".join(part if part.startswith("```") else LINK.sub(fix, part) for part in parts)


def cli_reference() -> str:
    """``labelport --help`` and each command's ``--help``, as argparse prints them at 100 columns."""
    from labelport.cli import build_parser

    with _columns(100):
        parser = build_parser()
        out = ["```text", "$ labelport --help", parser.format_help().rstrip(), "```"]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    out += ["", f"### `labelport {name}`", "", "```text", f"$ labelport {name} --help"]
                    out += [sub.format_help().rstrip(), "```"]
    return "\n".join(out)


@contextlib.contextmanager
def _columns(n: int) -> Any:
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(n)
    try:
        yield
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved
