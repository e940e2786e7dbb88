"""No Rust panic reaches Python as anything but a `LabelportError`: panics set off on purpose (through the
internal, test-only `_labelport._debug_panic` and `_debug_panic_async`) in a Python-facing function's own
body, inside the blocking bridge, the results stream's bridge, a page producer task and the async bridge all
come out as `LabelportError` with code "internal" (an `Exception`, so `except Exception` in a scheduler
catches it), and the process goes on. Every Python-facing body is guarded: the sources are checked."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import labelport as lp
import pytest
from labelport import _labelport

MESSAGE = "deliberate panic from _labelport._debug_panic"


def check(e: BaseException) -> None:
    assert type(e) is lp.LabelportError, type(e)
    assert isinstance(e, Exception)
    assert e.code == "internal"
    assert MESSAGE in str(e)
    assert "report" in str(e)


@pytest.mark.parametrize("place", ["body", "sync", "stream", "producer"])
def test_a_panic_in_a_blocking_call_is_a_labelport_error(place):
    with pytest.raises(lp.LabelportError) as info:
        _labelport._debug_panic(place)
    check(info.value)
    # The runtime still works after it: a real call through the same bridges.
    with lp.sandbox.start("alegion") as sb, sb.client() as c:
        assert c.create_batch("after-panic").name == "after-panic"


def test_a_panic_in_a_coroutine_is_a_labelport_error():
    async def main() -> list[BaseException | None]:
        outcomes = await asyncio.gather(
            *(_labelport._debug_panic_async() for _ in range(20)), return_exceptions=True
        )
        return outcomes

    outcomes = asyncio.run(main())
    assert len(outcomes) == 20
    for e in outcomes:
        assert isinstance(e, BaseException)
        check(e)

    async def after() -> str:
        with lp.sandbox.start("alegion") as sb:
            c = lp.AsyncClient("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
            return (await c.create_batch("after-async-panic")).name

    assert asyncio.run(after()) == "after-async-panic"


def test_an_unknown_place_is_invalid_input():
    with pytest.raises(lp.InvalidInput):
        _labelport._debug_panic("nowhere")


def python_facing_functions() -> list[tuple[str, str, str]]:
    """(file, name, the body's first line) of every #[pymethods] method and #[pyfunction] returning PyResult."""
    found = []
    for path in sorted((Path(__file__).parents[1] / "src" / "py").glob("*.rs")):
        text = path.read_text()
        # rustfmt closes an impl block with a brace alone at column 0; a #[pyfunction] is one fn.
        blocks = re.findall(r"#\[pymethods\]\n(.*?)\n\}\n", text, re.S)
        blocks += re.findall(r"#\[pyfunction\]\n(.*?\n\}\n)", text, re.S)
        for block in blocks:
            for m in re.finditer(r"(?:^|\n) *(?:pub(?:\(\w+\))? )?fn (\w+)\b(.*?)\{\n(.*?)\n", block, re.S):
                name, signature, first = m.groups()
                if re.search(r"->\s*PyResult<", signature):
                    found.append((path.name, name, first.strip()))
    return found


def test_every_python_facing_body_runs_under_the_panic_guard():
    functions = python_facing_functions()
    assert len(functions) > 80  # the check sees the methods (the count was 84 when it was written)
    unguarded = [f"{file}: {name}" for file, name, first in functions if not first.startswith("no_panic(")]
    assert unguarded == []
