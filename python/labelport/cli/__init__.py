"""The ``labelport`` command line.

    labelport batches | create-batch NAME | upload FILE --key COL --batch ID | status | wait | results
    labelport check [--batch ID] [--write]            probe the account against the vendor's ledger
    labelport demo [--records N]                      a full round trip against the Alegion sandbox
    labelport sandbox --vendor alegion --port 8080    run a vendor simulator until Ctrl-C

The batch commands live in ``_batches.py``. Exit codes: 0 ok, 1 usage (also an operation the vendor's API
lacks, UnsupportedOperation), 2 InvalidInput (and unreadable or unwritable files), 3 AuthError, 4 NotFound,
5 Timeout or Stalled, 75 any other LabelportError, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TextIO, TypeVar

from labelport._labelport import vendors
from labelport.cli import _batches, _probe

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_INVALID_INPUT = 2
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_TIMEOUT = 5
EXIT_LABELPORT_ERROR = 75  # EX_TEMPFAIL: the vendor or the network; trying again later may help
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


class _Parser(argparse.ArgumentParser):
    """argparse exits with 2 on a usage error; 2 is InvalidInput here, so usage errors exit with 1."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


_T = TypeVar("_T")


def _parsed(text: str, parse: Callable[[str], _T], what: str) -> _T:
    """`parse(text)`, or an argparse error saying the text is not `what`."""
    try:
        return parse(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None


def _positive_int(text: str) -> int:
    value = _parsed(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _port(text: str) -> int:
    value = _parsed(text, int, "a port number")
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"not a port number (0 to 65535): {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = _parsed(text, float, "a number")
    if not value >= 0.0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text}")
    return value


def _probability(text: str) -> float:
    value = _non_negative_float(text)
    if value > 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="labelport",
        description="One vendor-neutral API to send records to data-labeling vendors and get the labels back.",
        epilog="Exit codes: 0 ok, 1 usage, 2 invalid input, 3 auth, 4 not found, 5 timeout or stalled, "
        "75 other labelport errors (a scheduler may retry), 130 interrupted; an operation the vendor lacks is 1.",
    )
    from labelport import __version__

    parser.add_argument("--version", action="version", version=f"labelport {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _batches.add_commands(sub)
    _probe.add_command(sub)

    def command(name: str, help: str, description: str, run: Callable[..., Any]) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
        p.set_defaults(run=run)
        return p

    demo = command(
        "demo",
        "upload generated records to a local vendor sandbox, wait, download the labels",
        "Start a local vendor sandbox, upload generated records, wait for the labels with a progress line, "
        "download them and print a short summary. Needs no account and no network.",
        _cmd_demo,
    )
    demo.add_argument(
        "--records", type=_positive_int, default=1000, metavar="N", help="records to upload (1000)"
    )
    demo.add_argument(
        "--vendor", default="alegion", help=f"vendor whose sandbox to use: {', '.join(vendors())} (alegion)"
    )

    sb = command(
        "sandbox",
        "run a local simulator of a vendor's API until Ctrl-C",
        "Run a local simulator of a vendor's API on 127.0.0.1 and print its URL, project and throwaway "
        "credentials. Point labelport (or the vendor's own SDK) at it. Stops on Ctrl-C.",
        _cmd_sandbox,
    )
    sb.add_argument(
        "--vendor",
        default="alegion",
        help=f"vendor to simulate: {', '.join(vendors())} (alegion)",
    )
    sb.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="P",
        help="port on 127.0.0.1 (0: any free port)",
    )
    sb.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="seed of the labels and faults (0)",
    )
    sb.add_argument(
        "--complete-after",
        type=_non_negative_float,
        default=0.0,
        metavar="S",
        help="seconds until an uploaded record is labeled (0)",
    )
    sb.add_argument(
        "--exception-rate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="probability that a record ends as an exception instead of a result (0)",
    )
    return parser


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from labelport import demo

    demo.run(n=args.records, vendor=args.vendor, out=out)
    return EXIT_OK


class _Terminate(Exception):
    """SIGTERM while serving: stop the sandbox cleanly."""


def _raise_terminate(signum: int, frame: Any) -> None:
    raise _Terminate


def _is_secret(name: str) -> bool:
    return any(word in name.lower() for word in ("password", "secret", "key", "token"))


def _banner(sb: Any) -> str:
    prefix = f"LABELPORT_{sb.vendor.upper()}_"
    # Names first (username), secrets last (password, api_key, ...), whatever order the vendor gives.
    creds = dict(sorted(sb.credentials.items(), key=lambda kv: _is_secret(kv[0])))
    lines = [
        f"labelport sandbox: {sb.vendor} simulator listening on {sb.url}",
        f"  url:      {sb.url}",
        f"  project:  {sb.project}",
    ]
    lines += [f"  {name + ':':<9} {value}" for name, value in creds.items()]
    lines += [
        "Throwaway credentials of this local simulator. Use them from Python:",
        f"  client = labelport.Client({sb.vendor!r}, project={sb.project!r}, base_url={sb.url!r},",
        "                            " + ", ".join(f"{k}={v!r}" for k, v in creds.items()) + ")",
        "or from the environment:",
        f"  export {prefix}BASE_URL={shlex.quote(sb.url)}",
        f"  export {prefix}PROJECT={shlex.quote(sb.project)}",
    ]
    lines += [f"  export {prefix}{name.upper()}={shlex.quote(value)}" for name, value in creds.items()]
    lines.append("Serving until Ctrl-C.")
    return "\n".join(lines)


def _cmd_sandbox(args: argparse.Namespace, out: TextIO) -> int:
    from labelport import sandbox

    sb = sandbox.start(
        args.vendor,
        seed=args.seed,
        complete_after=args.complete_after,
        exception_rate=args.exception_rate,
        port=args.port,
    )
    previous = None
    on_main_thread = threading.current_thread() is threading.main_thread()
    try:
        # SIGTERM can arrive from here on, even in the middle of printing: every such moment is
        # inside this try.
        if on_main_thread:
            previous = signal.signal(signal.SIGTERM, _raise_terminate)
        print(_banner(sb), file=out, flush=True)
        while True:
            time.sleep(3600)
    except _Terminate:
        print("labelport sandbox: terminated, stopped", file=out, flush=True)
        return EXIT_OK
    except KeyboardInterrupt:
        print("\nlabelport sandbox: interrupted, stopped", file=out, flush=True)
        return EXIT_INTERRUPTED
    finally:
        if on_main_thread and previous is not None:
            signal.signal(signal.SIGTERM, previous)
        sb.stop()


def exit_code(exc: BaseException) -> int:
    """The process exit code for an exception that reached the command line."""
    import labelport as lp

    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, lp.InvalidInput):
        return EXIT_INVALID_INPUT
    if isinstance(exc, lp.AuthError):
        return EXIT_AUTH
    if isinstance(exc, lp.NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, (lp.Timeout, lp.Stalled)):
        return EXIT_TIMEOUT
    if isinstance(exc, lp.UnsupportedOperation):
        return EXIT_USAGE  # asking the vendor for what its API cannot do: retrying will not help
    if isinstance(exc, lp.LabelportError):
        return EXIT_LABELPORT_ERROR
    raise TypeError(f"no exit code for {type(exc).__name__}") from exc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script passes it to ``sys.exit``)."""
    import labelport as lp

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is not None:
            _batches.check(args, parser)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    out = sys.stdout
    try:
        code: int = args.run(args, out)
        return code
    except BrokenPipeError:
        # stdout went away (`labelport sandbox | head`): stop quietly, as the shell's own tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt as exc:
        out.flush()
        print("\nlabelport: interrupted", file=sys.stderr)
        return exit_code(exc)
    except lp.LabelportError as exc:
        out.flush()
        print(f"labelport: {type(exc).__name__}: {exc}", file=sys.stderr)
        return exit_code(exc)
    except (OSError, ImportError) as exc:
        # A file that cannot be read or written, or a missing optional library (parquet needs pyarrow).
        out.flush()
        print(f"labelport: {exc}", file=sys.stderr)
        return EXIT_INVALID_INPUT


if __name__ == "__main__":
    sys.exit(main())
