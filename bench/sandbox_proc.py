"""Runs one vendor sandbox in its own process for the benchmarks, so the simulator's CPU never counts
against the client being measured. Prints one JSON line (url, project, credentials), then serves until
stdin closes."""

from __future__ import annotations

import argparse
import json
import sys

import labelport as lp


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("vendor")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--latency", type=float, default=None)
    args = p.parse_args()
    sb = lp.sandbox.start(args.vendor, seed=args.seed, latency=args.latency)
    print(json.dumps({"url": sb.url, "project": sb.project, "credentials": sb.credentials}), flush=True)
    sys.stdin.read()
    sb.stop()


if __name__ == "__main__":
    main()
