"""The ETL commands (batches, create-batch, upload, status, wait, results) run as a shell runs them: a
``python -m labelport`` subprocess against a sandbox in this process, over real sockets."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import stat
import subprocess
import sys
import time

import labelport as lp
import pytest
from labelport.cli import _batches

VENDORS = lp.vendors()


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120, umask: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "labelport", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**clean_environ(), **(env or {})},
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


@pytest.fixture
def alegion():
    with lp.sandbox.start("alegion", complete_after=0.3, seed=3) as sb:
        yield sb


def write_parquet(path, n: int) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table(
        {"image_id": [f"img-{i}" for i in range(n)], "url": [f"https://x/{i}.jpg" for i in range(n)]}
    )
    pq.write_table(table, path)


def test_an_etl_step_from_the_shell(alegion, tmp_path):
    """create-batch captures the id, upload a parquet by key, wait with a timeout, results to parquet since a
    watermark; the second run finds nothing new; a re-run of the upload sends nothing twice."""
    pq = pytest.importorskip("pyarrow.parquet")
    env = alegion.env()
    records = tmp_path / "records.parquet"
    write_parquet(records, 40)

    batch_id = ok(run("create-batch", "cars", "--exist-ok", "--vendor", "alegion", env=env)).stdout.strip()
    described = json.loads(
        ok(run("create-batch", "cars", "--exist-ok", "--json", "--vendor", "alegion", env=env)).stdout
    )
    assert described["id"] == batch_id and described["name"] == "cars"

    common = ("--vendor", "alegion", "--batch", batch_id)
    job = json.loads(ok(run("upload", str(records), "--key", "image_id", "--json", *common, env=env)).stdout)
    assert (job["batch_id"], job["total"], job["failed"]) == (batch_id, 40, 0)
    ok(run("upload", str(records), "--key", "image_id", *common, env=env))
    assert alegion.stats()["records_total"] == 40  # the re-run sent nothing

    done = json.loads(
        ok(run("wait", "--timeout", "60", "--poll-interval", "0.2", "--json", *common, env=env)).stdout
    )
    assert done["done"] is True and done["completed"] == 40

    out, mark = tmp_path / "labels.parquet", tmp_path / "watermark"
    first = ok(
        run(
            "results",
            "--format",
            "parquet",
            "--output",
            str(out),
            "--watermark-file",
            str(mark),
            *common,
            env=env,
        )
    )
    table = pq.read_table(out)
    assert sorted(table.column("key").to_pylist()) == sorted(f"img-{i}" for i in range(40))
    assert table.column("input.url").to_pylist()[0].startswith("https://x/")
    watermark = mark.read_text().strip()
    assert watermark == max(r["completed_at"] for r in alegion.client().batch(batch_id).results())
    assert f"watermark {watermark}" in first.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".part")] == []

    again = ok(run("results", "--watermark-file", str(mark), *common, env=env))
    assert again.stdout == ""
    assert f"0 new results since {watermark}" in again.stderr
    assert mark.read_text().strip() == watermark


ENVELOPE_COLUMNS = ["id", "batch_id", "key", "status", "created_at", "completed_at", "vendor"]


def test_an_incremental_run_with_nothing_new_writes_the_envelope_columns(alegion, tmp_path):
    """ETL-safe: the run that finds nothing new writes a file with no rows but the envelope's columns (parquet
    and CSV alike), so the next step loads nothing twice and never meets a file without columns."""
    pq = pytest.importorskip("pyarrow.parquet")
    env = alegion.env()
    batch = alegion.client().create_batch("incremental")
    batch.upload([{"image_id": str(i), "url": f"https://x/{i}.jpg"} for i in range(5)], key="image_id")
    batch.wait(timeout=60, poll_interval=0.2, progress=False)
    common = ("--vendor", "alegion", "--batch", batch.id)
    mark = tmp_path / "watermark"
    first = tmp_path / "first.parquet"
    ok(
        run(
            "results",
            "--format",
            "parquet",
            "--output",
            str(first),
            "--watermark-file",
            str(mark),
            *common,
            env=env,
        )
    )
    assert pq.read_table(first).num_rows == 5
    watermark = mark.read_text().strip()

    empty = tmp_path / "empty.parquet"
    proc = ok(
        run(
            "results",
            "--format",
            "parquet",
            "--output",
            str(empty),
            "--watermark-file",
            str(mark),
            *common,
            env=env,
        )
    )
    assert f"0 new results since {watermark}" in proc.stderr
    table = pq.read_table(empty)
    assert table.num_rows == 0 and table.column_names == ENVELOPE_COLUMNS
    assert str(table.schema.field("completed_at").type) == "timestamp[us, tz=UTC]"

    csv_out = tmp_path / "empty.csv"
    ok(
        run(
            "results",
            "--format",
            "csv",
            "--output",
            str(csv_out),
            "--watermark-file",
            str(mark),
            *common,
            env=env,
        )
    )
    assert csv_out.read_text().splitlines() == [",".join(ENVELOPE_COLUMNS)]
    assert mark.read_text().strip() == watermark


@pytest.mark.parametrize("umask", [0o022, 0o027], ids=["umask022", "umask027"])
def test_output_files_follow_the_umask_and_keep_an_existing_files_mode(alegion, tmp_path, umask):
    env = alegion.env()
    batch = alegion.client().create_batch("modes")
    batch.upload([{"image_id": "1"}], key="image_id")
    batch.wait(timeout=60, poll_interval=0.2, progress=False)
    common = ("--vendor", "alegion", "--batch", batch.id)
    out, mark = tmp_path / "labels.jsonl", tmp_path / "watermark"
    ok(run("results", "--output", str(out), "--watermark-file", str(mark), *common, env=env, umask=umask))
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask
    assert stat.S_IMODE(mark.stat().st_mode) == 0o666 & ~umask
    spooled = ["labels.csv"] + (["labels.parquet"] if importlib.util.find_spec("pyarrow") else [])
    for name in spooled:  # the writers that spool first (CSV, parquet) too
        ok(run("results", "--output", str(tmp_path / name), *common, env=env, umask=umask))
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask, name
    os.chmod(out, 0o640)  # a mode the user chose stays through a rewrite
    ok(run("results", "--output", str(out), *common, env=env, umask=umask))
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_results_jsonl_and_csv_on_stdout_and_since(alegion, tmp_path):
    env = alegion.env()
    batch = alegion.client().create_batch("stdout")
    batch.upload([{"image_id": str(i)} for i in range(12)], key="image_id").wait(timeout=30)
    batch.wait(timeout=60, poll_interval=0.2, progress=False)
    common = ("--vendor", "alegion", "--batch", batch.id)
    lines = ok(run("results", *common, env=env)).stdout.splitlines()
    results = [json.loads(line) for line in lines]
    assert sorted(r["key"] for r in results) == sorted(str(i) for i in range(12))
    assert {r["batch_id"] for r in results} == {batch.id}
    csv_out = ok(run("results", "--format", "csv", *common, env=env)).stdout.splitlines()
    assert csv_out[0].startswith("id,") and len(csv_out) == 13
    latest = max(r["completed_at"] for r in results)
    since = ok(run("results", "--since", latest, *common, env=env))
    assert since.stdout == "" and f"watermark {latest}" in since.stderr


def test_batches_lists_what_create_batch_made(alegion):
    env = alegion.env()
    ids = {
        ok(run("create-batch", name, "--vendor", "alegion", env=env)).stdout.strip() for name in ("a", "b")
    }
    listed = json.loads(ok(run("batches", "--vendor", "alegion", "--json", env=env)).stdout)
    assert ids <= {b["id"] for b in listed}
    text = ok(run("batches", "--vendor", "alegion", env=env)).stdout
    assert all(i in text for i in ids)


def test_a_profile_gives_vendor_and_account(alegion, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(
        f'[profiles.test]\nvendor = "alegion"\nproject = "{alegion.project}"\nbase_url = "{alegion.url}"\n'
        f'username = "{alegion.credentials["username"]}"\npassword_env = "MY_PW"\n'
    )
    os.chmod(config, 0o600)
    env = {"LABELPORT_CONFIG": str(config), "MY_PW": alegion.credentials["password"]}
    batch_id = ok(run("create-batch", "from-profile", "--profile", "test", env=env)).stdout.strip()
    assert batch_id in {b.id for b in alegion.client().batches()}
    # LABELPORT_PROFILE chooses it too; a flag wins over the profile.
    ok(run("status", "--batch", batch_id, env={**env, "LABELPORT_PROFILE": "test"}))
    proc = run("status", "--batch", batch_id, "--vendor", "sama", env={**env, "LABELPORT_PROFILE": "test"})
    assert proc.returncode == 2 and "alegion" in proc.stderr


def test_exit_codes_against_the_sandbox(alegion, tmp_path):
    env = alegion.env()
    batch = alegion.client().create_batch("codes")
    common = ("--vendor", "alegion", "--batch", batch.id)
    # 2: invalid input (a bad watermark, a missing file, a file without the key column)
    assert run("results", "--since", "yesterday-ish", *common, env=env).returncode == 2
    proc = run("upload", str(tmp_path / "missing.jsonl"), "--key", "id", *common, env=env)
    assert proc.returncode == 2 and "missing.jsonl" in proc.stderr
    nokey = tmp_path / "nokey.jsonl"
    nokey.write_text('{"other": 1}\n')
    assert run("upload", str(nokey), "--key", "id", *common, env=env).returncode == 2
    # 3: auth
    proc = run("status", *common, env={**env, "LABELPORT_ALEGION_PASSWORD": "wrong"})
    assert proc.returncode == 3, proc.stderr
    # 4: not found
    proc = run("status", "--vendor", "alegion", "--batch", "00000000-0000-0000-0000-000000000000", env=env)
    assert proc.returncode == 4, proc.stderr
    # 5: timeout
    with lp.sandbox.start("alegion", complete_after=600) as waiting:
        b = waiting.client().create_batch("slow")
        b.upload([{"image_id": "x"}], key="image_id")
        proc = run(
            "wait",
            "--vendor",
            "alegion",
            "--batch",
            b.id,
            "--timeout",
            "0.5",
            "--poll-interval",
            "0.1",
            env=waiting.env(),
        )
        assert proc.returncode == 5, proc.stderr
        assert "Timeout" in proc.stderr
    # 75: the vendor failed (a 500 is not retried)
    alegion.inject(status=500, method="GET", path=batch.id, times=20)
    proc = run("status", *common, env=env)
    assert proc.returncode == 75, proc.stderr
    alegion.clear_faults()
    ok(run("status", *common, env=env))


def test_ctrl_c_while_waiting_exits_130():
    with lp.sandbox.start("alegion", complete_after=600) as sb:
        b = sb.client().create_batch("forever")
        b.upload([{"image_id": "x"}], key="image_id")
        child = (
            "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from labelport.cli import main; sys.exit(main(sys.argv[1:]))"
        )
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                child,
                "wait",
                "--vendor",
                "alegion",
                "--batch",
                b.id,
                "--poll-interval",
                "0.2",
            ],
            env={**clean_environ(), **sb.env()},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        before = sb.stats()["requests_total"]
        while sb.stats()["requests_total"] < before + 4:  # logged in and polling
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 130
        assert "interrupted" in proc.stderr.read()  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "args",
    [
        ("results", "--batch", "b", "--format", "parquet"),
        ("upload", "f.jsonl", "--batch", "b"),
        ("status",),
        ("wait", "--batch", "b", "--timeout", "-1"),
        ("status", "--batch", "b", "--option", "password=hunter2"),
        ("create-batch",),
    ],
    ids=repr,
)
def test_usage_errors_exit_1(args):
    proc = run(*args, timeout=30)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "usage:" in proc.stderr


@pytest.mark.parametrize(
    "command", ["batches", "create-batch", "upload", "status", "wait", "results", "sandbox", "demo"]
)
def test_help_everywhere(command):
    proc = ok(run(command, "--help", timeout=30))
    assert proc.stdout.startswith("usage: labelport " + command)


def test_credential_names_cover_every_vendor():
    names: set[str] = set()
    for vendor in VENDORS:
        with lp.sandbox.start(vendor) as sb:
            names |= set(sb.client().capabilities["credentials"])
    assert names == _batches.CREDENTIAL_NAMES


@pytest.mark.parametrize("vendor", VENDORS)
def test_no_secret_in_any_output_even_at_debug(vendor, tmp_path):
    with lp.sandbox.start(vendor, complete_after=0.1) as sb:
        env = sb.env()
        secret_names = set(sb.client().capabilities["credentials"]) - {"username", "client_id"}
        secrets = [v for k, v in sb.credentials.items() if k in secret_names]
        assert secrets
        v = ("--vendor", vendor, "-v")
        outputs = []
        created = ok(run("create-batch", "secrets", *v, env=env))
        outputs.append(created)
        batch_id = created.stdout.strip().splitlines()[-1]
        records = tmp_path / "r.jsonl"
        with open(records, "w") as f:
            for i in range(3):
                row = {"id": f"r{i}", "image_url": f"https://x/{i}.jpg"}
                if vendor == "deepen":
                    image = tmp_path / f"{i}.jpg"
                    image.write_bytes(b"\xff\xd8" + bytes([i]) * 64)
                    row = {"id": f"r{i}", "name": f"{i}.jpg", "file": str(image)}
                f.write(json.dumps(row) + "\n")
        common = (*v, "--batch", batch_id)
        outputs.append(ok(run("upload", str(records), "--key", "id", *common, env=env)))
        outputs.append(ok(run("wait", "--timeout", "60", "--poll-interval", "0.2", *common, env=env)))
        outputs.append(ok(run("status", *common, env=env)))
        outputs.append(ok(run("results", *common, env=env)))
        outputs.append(run("batches", *v, env=env))  # sama cannot list batches: exit 75, still no secret
        outputs.append(
            run(
                "status",
                *common,
                env={
                    **env,
                    **{
                        k: "wrong-" + x
                        for k, x in env.items()
                        if k.endswith(("PASSWORD", "SECRET", "KEY", "TOKEN"))
                    },
                },
            )
        )
        assert any("DEBUG" in p.stderr for p in outputs), "-v logged nothing"
        for proc in outputs:
            for secret in secrets:
                assert secret not in proc.stdout and secret not in proc.stderr, (proc.args, secret)


def test_an_operation_the_vendor_lacks_is_a_usage_error_not_a_temporary_one():
    """Sama keeps no list of batches: exit 1 with the reason, not 75 (a scheduler would retry it forever)."""
    with lp.sandbox.start("sama") as sb:
        proc = run("batches", "--vendor", "sama", env=sb.env())
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "sama" in proc.stderr.lower() and "list batches" in proc.stderr, proc.stderr
