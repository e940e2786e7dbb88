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


SRC = Path(__file__).parents[1] / "src" / "py"
# rustfmt leaves a `two_faces!` invocation alone: its sections are read by their names.
FACES = re.compile(r"two_faces! \{\n(.*?)\n\}\n", re.S)
SECTION = r"\n    {name} \{{\n(.*?)\n    \}}\n"
FN = re.compile(r"(?:^|\n) *(?:pub(?:\(\w+\))? )?fn (\w+)\b(.*?)\{\n(.*?)\n", re.S)


def python_facing_functions() -> list[tuple[str, str, str]]:
    """(file, name, the body's first line) of every hand-written #[pymethods] method and #[pyfunction] returning
    PyResult, the `sync_only`/`async_only` methods of the `two_faces!` invocations included."""
    found = []
    for path in sorted(SRC.glob("*.rs")):
        text = path.read_text()
        # rustfmt closes an impl block with a brace alone at column 0; a #[pyfunction] is one fn.
        blocks = re.findall(r"#\[pymethods\]\n(.*?)\n\}\n", text, re.S)
        blocks += re.findall(r"#\[pyfunction\]\n(.*?\n\}\n)", text, re.S)
        blocks += re.findall(r"stream_exports! \{\n\w+ \{\n(.*?)\n\}\n\}\n", text, re.S)
        for faces in FACES.findall(text):
            for name in ("sync_only", "async_only"):
                blocks += re.findall(SECTION.format(name=name), faces, re.S)
        for block in blocks:
            for m in FN.finditer(block):
                name, signature, first = m.groups()
                if re.search(r"->\s*PyResult<", signature):
                    found.append((path.name, name, first.strip()))
    return found


def generated_methods() -> list[tuple[str, str]]:
    """(file, name) of every `shared` and `ops` method of the `two_faces!` invocations: the macro writes each
    on both faces, its body under the guard."""
    found = []
    for path in sorted(SRC.glob("*.rs")):
        for faces in FACES.findall(path.read_text()):
            for name in ("shared", "ops"):
                for section in re.findall(SECTION.format(name=name), faces, re.S):
                    found += [(path.name, m.group(1)) for m in FN.finditer(section)]
    return found


def test_every_python_facing_body_runs_under_the_panic_guard():
    functions = python_facing_functions()
    generated = generated_methods()
    # The check sees the methods: 84 hand-guarded when it was written; since the faces are made by
    # `two_faces!` (and the streams' exports by `stream_exports!`), 28 by hand and 26 written by the macro on
    # both faces.
    assert len(functions) > 25 and len(generated) > 25, (len(functions), len(generated))
    unguarded = [f"{file}: {name}" for file, name, first in functions if not first.startswith("no_panic(")]
    assert unguarded == []


def test_the_faces_macro_puts_every_method_it_writes_under_the_guard():
    """`two_faces!` writes the `shared` and `ops` methods on both faces through one rule that runs each body
    through `no_panic`; `stream_exports!` writes the results streams' exports, also under it."""
    macro = (SRC / "faces.rs").read_text()
    body = macro[macro.index("=> {") :]
    assert body.count("$crate::py::runtime::no_panic(|| $sbody)") == 1
    assert body.count("$crate::py::runtime::no_panic(|| {\n                        let op =") == 1
    assert body.count("fn $sname $(<$slt>)? ( $($sparams)* ) -> $sret {") == 1
    assert body.count("fn $oname<'py>(") == 1
    # The faces macro writes both faces through one rule, called once per face.
    assert macro.count("two_faces!(@face ") == 2
    # The exports of both results streams: one method, under the guard, for each entry of one list.
    exports = macro[macro.index("macro_rules! stream_exports") :]
    assert exports.count("$crate::py::runtime::no_panic(|| Self::export(slf, $kind, args, kwargs))") == 1
    assert re.findall(r"^ +(to_\w+) \"\w+\"", exports, re.M) == [
        "to_pandas",
        "to_polars",
        "to_arrow",
        "to_parquet",
        "to_csv",
    ]
