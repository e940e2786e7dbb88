"""Crash and resume: a process killed with SIGKILL in the middle of an upload, then the same upload again from
another process: every record ends up exactly once. No local journal: the vendor's own records are the truth."""

from __future__ import annotations

import importlib.util
import json
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import labelport as lp
import pytest

_spec = importlib.util.spec_from_file_location(
    "reliability", pathlib.Path(__file__).resolve().parent.parent / "bench" / "reliability.py"
)
assert _spec and _spec.loader
reliability = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(reliability)

UPLOADER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[2])
    import labelport as lp
    import reliability
    env = json.loads(sys.argv[1])
    client = lp.Client(env["vendor"], project=env["project"], base_url=env["url"], **env["credentials"])
    batch = client.create_batch("crash", exist_ok=True)
    records, key = reliability.make_records(env["vendor"], "crash", env["n"])
    print("uploading", flush=True)
    batch.upload(records, key=key)
    print("finished", flush=True)
    """
)

#: Records per vendor: enough that a kill lands in the middle, few enough for CI (Playment sends one request
#: per record, Sama paces its status calls to one a second).
N = {"playment": 1_500, "sama": 400}
N_DEFAULT = 12_000


def started_storing(stats: dict) -> bool:
    return len(stats["records_created"]) > 0


def sama_file_uploaded(stats: dict) -> bool:
    # Sama creates a job's tasks all at once after "continue": the crash that matters is between the upload
    # of the task file and that call, which leaves an orphaned creation at Sama.
    return any(k.startswith("PUT /_uploads/") for k in stats["requests"])


#: When to kill the uploader: once the vendor has begun storing, or at the vendor's own critical point.
KILL_WHEN = {"sama": sama_file_uploaded}


@pytest.mark.parametrize("vendor", reliability.vendors())
def test_sigkill_mid_upload_then_the_same_upload_again_stores_each_record_once(vendor):
    n = N.get(vendor, N_DEFAULT)
    # Latency makes the upload take long enough to be killed in the middle.
    with lp.sandbox.start(vendor, latency=0.1) as sb:
        env = {"vendor": vendor, "url": sb.url, "project": sb.project, "credentials": sb.credentials, "n": n}
        bench_dir = str(pathlib.Path(reliability.__file__).parent)
        proc = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, json.dumps(env), bench_dir], stdout=subprocess.PIPE, text=True
        )
        try:
            assert proc.stdout.readline().strip() == "uploading"
            deadline = time.monotonic() + 60
            kill_when = KILL_WHEN.get(vendor, started_storing)
            while not kill_when(sb.stats()) and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.kill()
        stored_at_kill = len(sb.stats()["records_created"])
        assert stored_at_kill < n, f"the kill did not land in the middle ({stored_at_kill} of {n} stored)"
        if vendor not in KILL_WHEN:
            assert stored_at_kill > 0

        client = sb.client()
        batch = client.create_batch("crash", exist_ok=True)
        records, key = reliability.make_records(vendor, "crash", n)
        job = batch.upload(records, key=key)
        job.wait(timeout=300)
        created = sb.stats()["records_created"]
        assert len(created) == n and set(created.values()) == {1}
        assert job.status()["skipped"] >= stored_at_kill
