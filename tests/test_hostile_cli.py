"""Hostile paths for the command line (issue 18, rows 11 and 16): ``--output`` to something that is not a
regular file (stdout, a pipe, a FIFO, a character device) is written to, never replaced; a
``--watermark-file`` that is not a watermark file is refused by name, without quoting what it holds.

``python -m labelport`` subprocesses against an Alegion sandbox in this process, over real sockets. No test
names a node under /dev as ``--output`` directly: if the fix regressed, the old behaviour would replace it.
The same nodes are reached through /proc/self/fd/1 and symlinks in tmp_path instead."""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys

import labelport as lp
import pytest

N = 5


def clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}


def run(*args: str, env: dict[str, str], stdout=subprocess.PIPE, text: bool = True, timeout: float = 60):
    return subprocess.run(
        [sys.executable, "-m", "labelport", *args],
        check=False,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=text,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**clean_environ(), **env},
    )


@pytest.fixture(scope="module")
def done():
    """(environment, common arguments) of a sandbox batch whose N records are all labeled."""
    with lp.sandbox.start("alegion", complete_after=0.0, seed=18) as sb:
        batch = sb.client().create_batch("hostile-cli")
        batch.upload([{"image_id": f"img-{i}"} for i in range(N)], key="image_id").wait(timeout=30)
        batch.wait(timeout=60, poll_interval=0.1, progress=False)
        yield sb.env(), ("results", "--vendor", "alegion", "--batch", batch.id)


def keys_of_jsonl(text: str) -> list[str]:
    return sorted(json.loads(line)["key"] for line in text.splitlines())


EXPECTED = sorted(f"img-{i}" for i in range(N))


# --- row 11: --output to a node that is not a regular file ----------------------------------------------------


def test_output_to_proc_self_fd_1_reaches_the_stdout_pipe(done):
    env, common = done
    proc = run(*common, "--output", "/proc/self/fd/1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert keys_of_jsonl(proc.stdout) == EXPECTED


def test_output_to_a_link_to_dev_stdout_reaches_stdout_and_the_link_stays(done, tmp_path):
    env, common = done
    link = tmp_path / "stdout"
    link.symlink_to("/dev/stdout")
    proc = run(*common, "--output", str(link), env=env)
    assert proc.returncode == 0, proc.stderr
    assert keys_of_jsonl(proc.stdout) == EXPECTED
    assert link.is_symlink() and os.readlink(link) == "/dev/stdout"
    assert [p.name for p in tmp_path.iterdir()] == ["stdout"]  # no .part left behind


def test_output_to_a_character_device_is_written_not_replaced(done, tmp_path):
    env, common = done
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    proc = run(*common, "--output", str(link), env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and f"{N} results" in proc.stderr
    assert link.is_symlink() and os.readlink(link) == "/dev/null"
    st = os.stat("/dev/null")
    assert stat.S_ISCHR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o666
    # A regular file is still written whole, through a temporary file that does not stay behind.
    regular = tmp_path / "labels.jsonl"
    regular.write_text("old\n")
    proc = run(*common, "--output", str(regular), env=env)
    assert proc.returncode == 0, proc.stderr
    assert keys_of_jsonl(regular.read_text()) == EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.jsonl", "null"]


def test_output_to_a_fifo_is_streamed_to_its_reader(done, tmp_path):
    env, common = done
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)
    captured = tmp_path / "captured"
    with open(captured, "wb") as sink:
        reader = subprocess.Popen(["cat", str(fifo)], stdout=sink)
        try:
            proc = run(*common, "--output", str(fifo), env=env)
            reader.wait(timeout=10)
        finally:
            if reader.poll() is None:  # the old code replaced the FIFO: cat waits for a writer forever
                reader.kill()
                reader.wait()
    assert proc.returncode == 0, proc.stderr
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert keys_of_jsonl(captured.read_text()) == EXPECTED


def test_csv_and_parquet_output_to_a_pipe(done):
    env, common = done
    proc = run(*common, "--format", "csv", "--output", "/proc/self/fd/1", env=env)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("id,") and len(lines) == N + 1
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    proc = run(*common, "--format", "parquet", "--output", "/proc/self/fd/1", env=env, text=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout[:4] == b"PAR1" and proc.stdout[-4:] == b"PAR1"
    table = pq.read_table(pa.BufferReader(proc.stdout))
    assert sorted(table.column("key").to_pylist()) == EXPECTED


def test_output_naming_stdout_when_stdout_is_a_regular_file(done, tmp_path):
    """``labelport results --output /dev/stdout > file``: the results land in the file stdout points at."""
    env, common = done
    out = tmp_path / "redirected.jsonl"
    with open(out, "w") as f:
        proc = run(*common, "--output", "/proc/self/fd/1", env=env, stdout=f)
    assert proc.returncode == 0, proc.stderr
    assert keys_of_jsonl(out.read_text()) == EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["redirected.jsonl"]


def test_watermark_file_on_a_character_device_is_written_not_replaced(done, tmp_path):
    env, common = done
    link = tmp_path / "watermark"
    link.symlink_to("/dev/null")
    proc = run(*common, "--watermark-file", str(link), env=env)
    assert proc.returncode == 0, proc.stderr
    assert keys_of_jsonl(proc.stdout) == EXPECTED
    assert link.is_symlink() and os.readlink(link) == "/dev/null"


def test_output_to_a_directory_fails_before_fetching(done, tmp_path):
    env, common = done
    proc = run(*common, "--output", str(tmp_path), env=env)
    assert proc.returncode == 2
    assert str(tmp_path) in proc.stderr and "directory" in proc.stderr.lower()
    assert "results;" not in proc.stderr  # nothing was fetched
    assert list(tmp_path.iterdir()) == []


# --- row 16: a --watermark-file that is not a watermark file ------------------------------------------------


def assert_refused_by_name(proc, path, *secrets: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert str(path) in proc.stderr
    assert "is not a labelport watermark file" in proc.stderr
    assert "Traceback" not in proc.stderr
    for s in secrets:
        assert s not in proc.stderr and s not in proc.stdout, f"{s!r} was quoted"


def test_a_text_file_as_watermark_is_refused_without_quoting_it(done, tmp_path):
    env, common = done
    notes = tmp_path / "notes.txt"
    notes.write_text("meeting notes: SECRET-PLAN-7\nsecond line\n")
    proc = run(*common, "--watermark-file", str(notes), env=env)
    assert_refused_by_name(proc, notes, "SECRET-PLAN-7", "meeting notes")
    assert notes.read_text() == "meeting notes: SECRET-PLAN-7\nsecond line\n"


def test_a_binary_file_as_watermark_is_refused_without_quoting_it(done, tmp_path):
    env, common = done
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)) + b"SECRETBIN" + bytes(range(256)))
    proc = run(*common, "--watermark-file", str(blob), env=env)
    assert_refused_by_name(proc, blob, "SECRETBIN")


def test_json_of_another_shape_as_watermark_is_refused_without_quoting_it(done, tmp_path):
    env, common = done
    other = tmp_path / "config.json"
    other.write_text(json.dumps({"api_key": "SECRET-JSON-9", "since": "2026-01-01T00:00:00Z"}))
    proc = run(*common, "--watermark-file", str(other), env=env)
    assert_refused_by_name(proc, other, "SECRET-JSON-9", "api_key")


def test_a_one_line_non_time_as_watermark_is_refused_without_quoting_it(done, tmp_path):
    env, common = done
    mark = tmp_path / "watermark"
    for content in ("2026-13-45T99:99:99Z\n", "hunter2-password\n", '"2026-11-24T08:00:00Z"\n'):
        mark.write_text(content)
        proc = run(*common, "--watermark-file", str(mark), env=env)
        assert_refused_by_name(proc, mark, content.strip())
    # A real watermark, with the blank space an editor may leave around it, is still read.
    mark.write_text("  2000-01-01T00:00:00Z \n\n")
    proc = run(*common, "--watermark-file", str(mark), env=env)
    assert proc.returncode == 0, proc.stderr
    assert keys_of_jsonl(proc.stdout) == EXPECTED


def test_with_since_an_unrelated_watermark_file_is_refused_not_overwritten(done, tmp_path):
    env, common = done
    profile = tmp_path / ".bashrc"
    profile.write_text("export PATH=/opt/bin:$PATH  # SECRET-RC\n")
    proc = run(*common, "--since", "2000-01-01T00:00:00Z", "--watermark-file", str(profile), env=env)
    assert_refused_by_name(proc, profile, "SECRET-RC")
    assert profile.read_text() == "export PATH=/opt/bin:$PATH  # SECRET-RC\n"


def test_a_huge_file_as_watermark_is_not_read_whole(done, tmp_path, isolated):
    env, common = done
    huge = tmp_path / "disk.img"
    with open(huge, "wb") as f:
        f.truncate(1 << 30)  # 1 GiB, sparse: costs no disk
    code = f"""
import os
os.environ.update({env!r})

def case():
    from labelport.cli import main
    code = main({[*common, "--watermark-file", str(huge)]!r})
    with open("/proc/self/status") as f:
        own = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    return {{"exit": code, "own_mb": own}}
"""
    result = isolated(code, timeout=60)
    # Only the address-space limit here: the harness's peak_rss_mb includes the pytest parent's RSS (Linux
    # carries ru_maxrss over fork and exec); VmHWM above is the child's own peak.
    result.expect(None, max_mb=3072, max_seconds=10)
    got = ast.literal_eval(result.outcome["ok"])
    assert got["exit"] == 2, got
    assert got["own_mb"] < 150, got
    assert "is not a labelport watermark file" in result.stderr
    print(f"1 GiB watermark file: peak {got['own_mb']:.0f} MB, {result.seconds:.2f} s")
