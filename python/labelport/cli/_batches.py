"""The commands an ETL step runs: ``batches``, ``create-batch``, ``upload``, ``status``, ``wait``, ``results``.

Credentials come from ``LABELPORT_<VENDOR>_<NAME>`` environment variables or a profile, never from a flag that
would land in shell history.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from typing import Any, TextIO

from labelport._labelport import MAX_JSON_DEPTH, vendors
from labelport.cli import _output

# Every vendor's credential names (DESIGN.md section 1): refused as --option, so no secret lands in shell
# history. tests/test_cli.py checks this against every sandbox's credentials.
CREDENTIAL_NAMES = frozenset({"username", "password", "client_id", "client_secret", "api_key", "api_token"})

FORMATS = ("jsonl", "csv", "parquet")
# What an --output name ending says it holds (case aside); the same suffixes `upload` reads.
FORMAT_OF_SUFFIX = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def _assignment(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    if name in CREDENTIAL_NAMES:
        raise argparse.ArgumentTypeError(
            f"{name} is a credential: set it in the environment (LABELPORT_<VENDOR>_{name.upper()}) or in a "
            "profile, not on the command line where shell history keeps it"
        )
    try:
        parsed: Any = json.loads(value)  # numbers, true/false, lists
    except ValueError:
        parsed = value
    except RecursionError:
        raise argparse.ArgumentTypeError(
            f"{name}: lists nested deeper than {MAX_JSON_DEPTH} levels (labelport.MAX_JSON_DEPTH) cannot be sent"
        ) from None
    return name, parsed


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0.0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def common_options() -> argparse.ArgumentParser:
    """Options every vendor command takes."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group(
        "vendor and account",
        "Each falls back to LABELPORT_<VENDOR>_PROJECT, LABELPORT_<VENDOR>_BASE_URL and the credentials' "
        "LABELPORT_<VENDOR>_<NAME> variables, then to the profile (--profile or LABELPORT_PROFILE).",
    )
    g.add_argument("--vendor", help=f"{', '.join(vendors())} (or the profile's)")
    g.add_argument("--project", help="the vendor's project, workflow or client id")
    g.add_argument(
        "--profile", help="a [profiles.NAME] of ~/.config/labelport/config.toml (or LABELPORT_CONFIG)"
    )
    g.add_argument("--base-url", metavar="URL", help="the vendor's scheme and host (a sandbox's URL)")
    g.add_argument(
        "--option",
        action="append",
        type=_assignment,
        default=[],
        metavar="NAME=VALUE",
        help="a client option (playment tag=..., sama key_field=...); repeatable; never a credential",
    )
    g.add_argument(
        "-v", "--verbose", action="store_true", help="log requests (DEBUG) to stderr; secrets are redacted"
    )
    return common


def _batch_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--batch", required=True, metavar="ID", help="the batch id (as create-batch printed it)")


def _assignments(sub: argparse.ArgumentParser, flag: str, what: str) -> None:
    """A repeatable `flag NAME=VALUE` option (values parsed as JSON where they are)."""
    sub.add_argument(
        flag, action="append", type=_assignment, default=[], metavar="NAME=VALUE", help=f"{what}; repeatable"
    )


def _json_option(sub: argparse.ArgumentParser, what: str) -> None:
    sub.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def add_commands(sub: Any) -> None:
    common = common_options()

    def add(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help, description=description, parents=[common]
        )
        return p

    p = add("batches", "list the project's batches", "List the project's batches: id, name, created_at.")
    _json_option(p, "a list of {id, name, created_at}")
    p.set_defaults(run=cmd_batches)

    p = add(
        "create-batch",
        "create a batch and print its id",
        "Create a batch and print its id alone on stdout, so a shell can capture it: "
        "BATCH=$(labelport create-batch cars-2026-11 --exist-ok).",
    )
    p.add_argument("name", metavar="NAME")
    p.add_argument(
        "--exist-ok", action="store_true", help="the batch of that name if there is one (safe to re-run)"
    )
    _assignments(
        p, "--batch-option", "a vendor batch option (deepen dataset_type=..., playment description=...)"
    )
    _json_option(p, "{id, name, created_at}")
    p.set_defaults(run=cmd_create_batch)

    p = add(
        "upload",
        "upload a .jsonl, .csv or .parquet file into a batch",
        "Upload the records of a .jsonl, .csv or .parquet file into a batch; returns once the vendor has "
        "accepted every one. Idempotent by key: running it again sends only what is missing.",
    )
    p.add_argument("file", metavar="FILE", help="a .jsonl, .csv or .parquet file")
    p.add_argument("--key", required=True, metavar="COL", help="the column that identifies each record")
    _batch_option(p)
    p.add_argument(
        "--on-error",
        choices=["raise", "collect"],
        default="raise",
        help="raise: stop at refused records (exit 2); collect: send the good ones, list the refused on stderr",
    )
    _assignments(p, "--upload-option", "a vendor upload option (sama priority=1)")
    _json_option(p, "the job: {id, batch_id, state, total, done, failed, skipped, failures}")
    p.set_defaults(run=cmd_upload)

    p = add(
        "status", "print a batch's record counts", "Print a batch's record counts from the vendor, and done."
    )
    _batch_option(p)
    _json_option(p, "the counts")
    p.set_defaults(run=cmd_status)

    p = add(
        "wait",
        "wait until every record of a batch is finished",
        "Wait until every record of a batch is finished, then print its counts. Exit 5 when --timeout runs out.",
    )
    _batch_option(p)
    p.add_argument(
        "--timeout", type=_seconds, metavar="S", help="give up after S seconds (exit 5); default: never"
    )
    p.add_argument(
        "--poll-interval", type=_seconds, default=2.0, metavar="S", help="seconds between polls (2)"
    )
    _json_option(p, "the counts")
    p.set_defaults(run=cmd_wait)

    p = add(
        "results",
        "write a batch's finished results as jsonl, csv or parquet",
        "Write a batch's finished results (one envelope per record) to --output, or to stdout for jsonl and "
        "csv. The format is --format, else the one --output's name ends with (.jsonl, .ndjson, .csv, .parquet, "
        ".pq), else jsonl. A regular file appears only once complete; a pipe, FIFO or device (/dev/stdout) is "
        "written to as it is. The watermark (the greatest completion time written) goes to stderr and to "
        "--watermark-file; pass it as --since next time to get only newer results.",
    )
    _batch_option(p)
    p.add_argument(
        "--format",
        choices=FORMATS,
        help="jsonl, csv or parquet; default: what --output's name ends with, else jsonl",
    )
    p.add_argument(
        "--output", "-o", metavar="PATH", help="the file to write (parquet needs one); default: stdout"
    )
    p.add_argument("--since", metavar="WATERMARK", help="only results completed after this RFC 3339 time")
    p.add_argument(
        "--watermark-file",
        metavar="PATH",
        help="read --since from PATH when it exists and no --since is given; write the new watermark there after "
        "the output is complete",
    )
    p.add_argument("--include-raw", action="store_true", help="add the vendor's own object as raw")
    p.add_argument(
        "--consumer", metavar="NAME", help="sama: the results delivered to this consumer since its last read"
    )
    p.set_defaults(run=cmd_results)


def _suffix_format(path: str | None) -> str | None:
    if not path:
        return None
    return FORMAT_OF_SUFFIX.get(os.path.splitext(path)[1].lower())


def results_format(args: argparse.Namespace) -> str:
    """The format `results` writes: --format, else what --output's name says (labels.parquet is parquet, not
    JSON lines under a parquet name), else jsonl. A --format the name contradicts is a usage error."""
    named = _suffix_format(args.output)
    if args.format is None:
        return named or "jsonl"
    if named is not None and named != args.format:
        raise ValueError(
            f"results --format {args.format} but --output {args.output!r} names a {named} file: drop --format "
            f"(the name chooses), or name the file for {args.format} (e.g. .{args.format})"
        )
    return str(args.format)


def check(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Usage errors argparse cannot see alone (exit 1)."""
    if getattr(args, "run", None) is cmd_results:
        try:
            args.format = results_format(args)
        except ValueError as e:
            parser.error(str(e))
        if args.format == "parquet" and not args.output:
            parser.error("results --format parquet needs --output PATH")


def _verbose(args: argparse.Namespace) -> None:
    if args.verbose:
        import labelport as lp

        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
        )
        lp.reset_log_cache()


def client(args: argparse.Namespace) -> Any:
    import labelport as lp

    _verbose(args)
    kwargs: dict[str, Any] = dict(args.option)
    if args.project:
        kwargs["project"] = args.project
    if args.base_url:
        kwargs["base_url"] = args.base_url
    return lp.Client(args.vendor or None, profile=args.profile or None, **kwargs)


def _emit(out: TextIO, value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False), file=out)


def _describe(batch: Any) -> dict[str, Any]:
    return {"id": batch.id, "name": batch.name, "created_at": batch.created_at}


def cmd_batches(args: argparse.Namespace, out: TextIO) -> int:
    batches = [_describe(b) for b in client(args).batches()]
    if args.json:
        _emit(out, batches)
    else:
        for b in batches:
            print(
                "\t".join("" if b[k] is None else str(b[k]) for k in ("id", "name", "created_at")), file=out
            )
    return 0


def cmd_create_batch(args: argparse.Namespace, out: TextIO) -> int:
    batch = client(args).create_batch(args.name, exist_ok=args.exist_ok, **dict(args.batch_option))
    if args.json:
        _emit(out, _describe(batch))
    else:
        print(batch.id, file=out)
    return 0


def _upload_target(c: Any, batch_id: str) -> Any:
    """The batch ``upload --batch ID`` sends to; an id ``create-batch`` printed is attached even where the batch
    exists only once its first upload created it (``labelport._distributed.attach``)."""
    from labelport._distributed import attach

    return attach(c, batch_id)


def cmd_upload(args: argparse.Namespace, out: TextIO) -> int:
    batch = _upload_target(client(args), args.batch)
    job = batch.upload(args.file, key=args.key, on_error=args.on_error, **dict(args.upload_option))
    status = job.status()
    failures = job.failures()
    if args.json:
        _emit(out, {"id": job.id, "batch_id": job.batch_id, **status, "failures": failures})
    else:
        shown = {k: status[k] for k in ("state", "total", "done", "failed", "skipped") if k in status}
        print(f"job {job.id}: " + " ".join(f"{k}={v}" for k, v in shown.items()), file=out)
    for f in failures:
        print(
            f"labelport: refused record {f.get('key')!r}: {f.get('field') or ''} {f.get('message')}",
            file=sys.stderr,
        )
    return 0


def _counts(out: TextIO, status: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(out, status)
    else:
        print(
            " ".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in status.items()),
            file=out,
        )


def cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    _counts(out, client(args).batch(args.batch).status(), args.json)
    return 0


def cmd_wait(args: argparse.Namespace, out: TextIO) -> int:
    batch = client(args).batch(args.batch)
    _counts(out, batch.wait(timeout=args.timeout, poll_interval=args.poll_interval), args.json)
    return 0


def _write_jsonl(stream: Any, f: TextIO) -> int:
    n = 0
    for result in stream:
        f.write(json.dumps(result, ensure_ascii=False))
        f.write("\n")
        n += 1
    return n


WATERMARK_MAX_BYTES = 4096  # a watermark is one RFC 3339 time; nothing longer is read
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


def _not_a_watermark(path: str, why: str) -> Exception:
    from labelport._labelport import InvalidInput

    # Names the file and what is wrong, never what it holds: it may be any file, secrets and all.
    message = (
        f"--watermark-file {path!r} is not a labelport watermark file ({why}); a watermark file holds one "
        "RFC 3339 time, e.g. 2026-11-24T08:00:00Z, as `labelport results` writes it"
    )
    err = InvalidInput(message)
    err.message = message
    err.field = "watermark_file"
    return err


def _read_watermark(path: str) -> str | None:
    """The watermark in ``path``; None when the file is empty or blank."""
    with open(path, "rb") as f:
        data = f.read(WATERMARK_MAX_BYTES + 1)
    if len(data) > WATERMARK_MAX_BYTES:
        raise _not_a_watermark(path, f"larger than {WATERMARK_MAX_BYTES} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise _not_a_watermark(path, "not text") from None
    text = text.strip()
    if not text:
        return None
    if len(text.splitlines()) > 1:
        raise _not_a_watermark(path, "more than one line")
    if not _RFC3339.fullmatch(text):
        raise _not_a_watermark(path, "not an RFC 3339 time")
    try:
        dt.datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise _not_a_watermark(path, "not an RFC 3339 time") from None
    return text


def cmd_results(args: argparse.Namespace, out: TextIO) -> int:
    import labelport as lp

    # Every path is checked before anything is fetched.
    if args.output:
        _output.check(args.output, out)
    since, since_from_file = args.since, False
    if args.watermark_file:
        _output.check(args.watermark_file, out)
        if os.path.exists(args.watermark_file):
            if since is None:
                since = _read_watermark(args.watermark_file)
                since_from_file = since is not None
            elif os.path.isfile(args.watermark_file):
                # Not read for --since, but about to be overwritten: refuse a file that is not a watermark.
                _read_watermark(args.watermark_file)
    batch = client(args).batch(args.batch)
    try:
        stream = batch.results(since=since, include_raw=args.include_raw, consumer=args.consumer)
    except lp.InvalidInput as e:
        if since_from_file and getattr(e, "field", None) == "since":
            raise _not_a_watermark(args.watermark_file, "not an RFC 3339 time") from None
        raise
    if args.format == "jsonl" and args.output:
        with _output.text(args.output, out) as f:
            count = _write_jsonl(stream, f)
    elif args.format == "jsonl":
        count = _write_jsonl(stream, out)
    else:  # csv on stdout too: the header needs every column, so it is spooled first
        with _output.spooled(args.output or None, out) as path:
            if args.format == "csv":
                count = stream.to_csv(path, progress=False)
            else:
                count = stream.to_parquet(path, progress=False)
    out.flush()
    watermark = stream.watermark or since
    if args.watermark_file and watermark:
        with _output.text(args.watermark_file, out) as f:
            f.write(watermark + "\n")
    counted = f"{count} new results since {since}" if since else f"{count} results"
    print(f"labelport: {counted}; watermark {watermark or '(none)'}", file=sys.stderr)
    return 0
