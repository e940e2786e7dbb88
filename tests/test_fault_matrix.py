"""The fault matrix, small: every vendor available, one seed, a few hundred records, every sandbox fault at
once (bench/reliability.py runs the full 10 seeds x 5,000 for RELIABILITY.md)."""

from __future__ import annotations

import importlib.util
import pathlib

import pytest

_spec = importlib.util.spec_from_file_location(
    "reliability", pathlib.Path(__file__).resolve().parent.parent / "bench" / "reliability.py"
)
assert _spec and _spec.loader
reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)


@pytest.mark.parametrize("vendor", reliability.vendors())
def test_every_key_created_once_and_returned_once_under_every_fault(vendor):
    row = reliability.run_one(vendor, seed=7, n=300)
    assert row["lost"] == 0 and row["duplicated"] == 0, row
    assert row["faults"] > 0, f"seed 7 met no fault for {vendor}: the run proves nothing ({row})"
