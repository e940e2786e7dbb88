"""A griffe extension for the API reference (mkdocs.yml): the Rust core's docstrings into its stubs.

The stubs (``python/labelport/_labelport.pyi``) give the types; the docstrings of most of the core's methods are
written once, in Rust, and reach Python as ``__doc__`` of the built module (``tests/test_typing.py`` checks every
public one has one). Griffe reads the stubs statically, so each stub object without a docstring of its own takes the
built module's. The build fails without the built module (``make docs`` runs ``make develop`` first), or when no
docstring could be taken from it (griffe no longer reading the stubs as stubs, say): a reference of bare
signatures is not published silently.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import griffe

MODULE = "labelport._labelport"


class RuntimeDocstrings(griffe.Extension):
    def on_module(self, *, mod: griffe.Module, **kwargs: Any) -> None:
        if mod.path != MODULE:
            return
        try:
            runtime = importlib.import_module(MODULE)
        except ImportError as err:
            raise RuntimeError(
                f"the API reference needs the built module {MODULE} (make develop): {err}"
            ) from None
        if _fill(mod, runtime) == 0:
            raise RuntimeError(
                f"no docstring of {MODULE} reached its stubs: is allow_inspection still false?"
            )


def _fill(obj: griffe.Object, runtime: Any) -> int:
    """Fills the docstrings ``obj``'s members lack from ``runtime``'s; returns how many it filled."""
    filled = 0
    for name, member in obj.members.items():
        if member.is_alias or name.startswith("__"):
            continue
        # Looked up on the class itself, so that a property gives its descriptor (whose __doc__ is its own).
        value = inspect.getattr_static(runtime, name, None)
        if value is None:
            continue
        # An attribute holding a plain value (MAX_JSON_DEPTH) would give its type's docstring: not its own.
        own = not member.is_attribute or inspect.isdatadescriptor(value) or inspect.isclass(value)
        doc = inspect.getdoc(value) if own else None
        if doc and member.docstring is None:
            member.docstring = griffe.Docstring(doc, parent=member)
            filled += 1
        if member.is_class:
            filled += _fill(member, value)
    return filled
