"""``labelport check``: probe a real account against the vendor's ledger (``client.check()``), print the report."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from labelport.cli import _batches


def add_command(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        parents=[_batches.common_options()],
        help="probe the account: which documented and guessed API facts the live API confirms",
        description="A read-only probe of the account: login, the batch list, one page of a batch's records and "
        "results, the page size the server serves, and every response field the vendor's ledger "
        "(docs/vendors/<vendor>.md) lists, each reported confirmed, contradicted or not seen. Secrets are "
        "redacted: attach the report to a bug report. Nothing is written unless --write is given.",
    )
    p.add_argument("--batch", metavar="ID", help="the batch to read (default: the newest the account lists)")
    p.add_argument(
        "--write",
        action="store_true",
        help="first create one tiny batch holding one record, and probe it (says so in the report)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(run=cmd_check)


def cmd_check(args: argparse.Namespace, out: TextIO) -> int:
    with _batches.client(args) as client:
        if args.write:
            print("labelport check --write: creating one batch with one record", file=sys.stderr)
        report = client.check(batch=args.batch, write=args.write)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False), file=out)
    else:
        out.write(report.to_text())
    return 0
