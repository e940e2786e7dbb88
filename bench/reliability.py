"""The fault matrix: for every vendor, a full upload and read-back under every sandbox fault at once, counting
from the sandbox's own statistics that every key was created exactly once and returned exactly once.

    python bench/reliability.py                       # 10 seeds x 5,000 records per vendor (RELIABILITY.md)
    python bench/reliability.py --seeds 1 --records 300   # what CI runs (tests/test_fault_matrix.py)
    python bench/reliability.py --vendor playment --first-seed 5 --seeds 2   # a slice, to run slices in parallel
"""

from __future__ import annotations

import argparse
import collections
import time
from typing import Any

import labelport as lp

#: Every fault the sandbox has, at once. The token lives one second, so it expires several times a run.
FAULTS: dict[str, float] = {
    "rate_limit": 0.05,
    "server_error": 0.1,
    "commit_then_fail": 0.05,
    "reset": 0.02,
    "slow": 0.02,
    "slow_s": 0.3,
    "token_ttl": 1.0,
}


#: Retries per request under these faults (the default is 5).
MAX_RETRIES = 10


def vendors() -> list[str]:
    """The vendors this build has both a simulator and an adapter for."""
    out = []
    for vendor in lp.vendors():
        try:
            with lp.sandbox.start(vendor) as sb:
                sb.client()
        except lp.LabelportError:
            continue
        out.append(vendor)
    return out


def make_records(vendor: str, prefix: str, n: int) -> tuple[list[dict[str, Any]], str]:
    """Records a vendor's sandbox project accepts, and the name of their key field."""
    return lp.sandbox.sample_records(vendor, n, prefix=prefix)


def run_one(vendor: str, seed: int, n: int, faults: dict[str, float] | None = None) -> dict[str, Any]:
    """One upload and read-back under faults; what the sandbox saw."""
    faults = FAULTS if faults is None else faults
    started = time.monotonic()
    with lp.sandbox.start(vendor, seed=seed, faults=faults) as sb:
        # One request in five fails here, far beyond a real network: each read may need more than the default
        # five retries, so the run uses ten.
        client = sb.client(max_retries=MAX_RETRIES)
        batch = client.create_batch(f"fault-matrix-{seed}", exist_ok=True)
        records, key = make_records(vendor, f"s{seed}", n)
        job = batch.upload(records, key=key)
        job.wait(timeout=600)
        batch.wait(timeout=600, poll_interval=0.2)
        returned = collections.Counter(r["key"] for r in batch.results())
        stats = sb.stats()
    created = stats["records_created"]
    wanted = {r[key] for r in records}
    requests = stats["requests"]
    faulted = sum(int(c) for k, c in requests.items() if not k.rsplit(" ", 1)[1].startswith("2"))
    return {
        "vendor": vendor,
        "seed": seed,
        "records": n,
        "requests": int(stats["requests_total"]),
        "faults": faulted,
        "lost": len(wanted - set(created)) + len(wanted - set(returned)),
        "duplicated": sum(c - 1 for c in created.values() if c > 1)
        + sum(c - 1 for c in returned.values() if c > 1),
        "seconds": time.monotonic() - started,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="seeds first-seed .. first-seed+seeds-1: to split a long run",
    )
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--vendor", action="append", help="only these vendors (default: every vendor available)")
    args = p.parse_args()
    faults = ", ".join(f"{k}={v}" for k, v in FAULTS.items())
    print(f"Faults, all at once: {faults}; clients with max_retries={MAX_RETRIES}\n")
    print(
        "| vendor | seeds | records each | requests | non-2xx answers | records lost | records duplicated | seconds |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for vendor in args.vendor or vendors():
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        rows = [run_one(vendor, seed, args.records) for seed in seeds]
        print(
            f"| {vendor} | {len(rows)} | {args.records:,} | {sum(r['requests'] for r in rows):,} | "
            f"{sum(r['faults'] for r in rows):,} | {sum(r['lost'] for r in rows)} | "
            f"{sum(r['duplicated'] for r in rows)} | {sum(r['seconds'] for r in rows):.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
