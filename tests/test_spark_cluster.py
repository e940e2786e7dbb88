"""The Spark data source on a real standalone cluster: a master and two workers started here as separate processes
with pyspark's own ``bin/spark-class`` (the ``sbin/`` scripts are not in the pyspark package), all bound to
127.0.0.1; each worker launches its executor JVM, which forks the Python workers that talk to the sandbox. The
round trip is tests/test_spark.py's ``write_then_read`` (a failed and retried task, an import refused after it was
stored, the read in page-range partitions), with 2,000 records; the full 20,000:

    LABELPORT_SPARK_CLUSTER_RECORDS=20000 .venv/bin/pytest tests/test_spark_cluster.py -s

The executors get their credentials only through ``spark.executorEnv.LABELPORT_ALEGION_*`` (the workers' own
environment holds none), as docs/distributed.md tells a cluster's users to do. Every process the test starts is
stopped by it, on failure too, with everything they started (executors, Python workers); each wait is bounded, and
a watchdog cancels the Spark jobs and stops the cluster if the round trip outlives ``DEADLINE`` seconds. With
``-s`` the test prints the executors' process ids and which of them sent the sandbox's requests.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import labelport as lp
import pytest

N = int(os.environ.get("LABELPORT_SPARK_CLUSTER_RECORDS", "2000"))
PARTITIONS = 8
START_TIMEOUT = 120.0  # seconds for the master, the workers and both executors to come up
DEADLINE = 300.0 + N / 100  # seconds for the whole round trip before the watchdog stops it

_spec = importlib.util.spec_from_file_location("_spark_roundtrip", Path(__file__).with_name("test_spark.py"))
assert _spec is not None and _spec.loader is not None
_roundtrip = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_roundtrip)
write_then_read = _roundtrip.write_then_read


def spark_home() -> Path:
    import pyspark

    home = Path(pyspark.__file__).parent
    assert (home / "bin" / "spark-class").exists(), f"no bin/spark-class in {home}"
    return home


def ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(
        stat.rsplit(")", 1)[1].split()[1]
    )  # the field after the state, past the command in parentheses


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(roots: set[int]) -> set[int]:
    """Every live process under ``roots`` (by parent process id, from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = ppid(int(entry.name))
            if parent is not None:
                parents[int(entry.name)] = parent
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        children = {p for p, parent in parents.items() if parent in frontier and p not in found}
        found |= children
        frontier = children
    return found


def ancestors(pid: int) -> list[int]:
    chain = []
    while pid > 1:
        parent = ppid(pid)
        if parent is None:
            break
        chain.append(parent)
        pid = parent
    return chain


@dataclass
class Cluster:
    """A standalone master and its workers, each a process group of its own started by this test."""

    home: Path
    workdir: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    url: str = ""

    def start(self, name: str, cls: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("wb")
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")
        }  # no secret on the cluster
        env.update(
            SPARK_HOME=str(self.home),
            SPARK_LOCAL_IP="127.0.0.1",
            SPARK_LOG_DIR=str(self.workdir),
            PYSPARK_PYTHON=sys.executable,
        )
        proc = subprocess.Popen(
            [str(self.home / "bin" / "spark-class"), cls, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # its own process group: stopped as one, with the executors it launches
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def wait_for(self, name: str, pattern: str, deadline: float) -> re.Match[str]:
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log(name))
            if match:
                return match
            if self.procs[name].poll() is not None:
                raise AssertionError(
                    f"{name} exited ({self.procs[name].returncode}):\n{self.log(name)[-3000:]}"
                )
            time.sleep(0.2)
        raise AssertionError(f"{name}: no {pattern!r} within {START_TIMEOUT} s:\n{self.log(name)[-3000:]}")

    def stop(self) -> set[int]:
        """Stops every process of the cluster and all they started; returns the processes still alive (none)."""
        roots = {p.pid for p in self.procs.values()}
        every = roots | descendants(roots)
        for proc in reversed(
            list(self.procs.values())
        ):  # workers first (they stop their executors), then master
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        end = time.monotonic() + 20
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        for pid in every:  # an executor or Python worker that outlived its parent (its own process group)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        return {pid for pid in every if Path(f"/proc/{pid}").exists() and not _zombie(pid)}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def sandbox() -> Iterator[lp.sandbox.Sandbox]:
    """This module's own Alegion sandbox (its counts are this round trip's alone), counting requests per process."""
    with lp.sandbox.start("alegion", seed=12, track_pids=True) as sb:
        yield sb


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("spark-cluster")
    (workdir / "spark-defaults.conf").write_text("spark.master.rest.enabled false\n")
    cl = Cluster(spark_home(), workdir)
    deadline = time.monotonic() + START_TIMEOUT
    try:
        props = ("--properties-file", str(workdir / "spark-defaults.conf"))
        cl.start(
            "master",
            "org.apache.spark.deploy.master.Master",
            *("--host", "127.0.0.1", "--port", "0", "--webui-port", "0"),
            *props,
        )
        cl.url = cl.wait_for(
            "master", r"Starting Spark master at (spark://127\.0\.0\.1:\d+)", deadline
        ).group(1)
        for i in (1, 2):
            cl.start(
                f"worker{i}",
                "org.apache.spark.deploy.worker.Worker",
                *(
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--webui-port",
                    "0",
                    "--cores",
                    "1",
                    "--memory",
                    "2g",
                ),
                *("--work-dir", str(workdir / f"work{i}")),
                *props,
                cl.url,
            )
        for i in (1, 2):
            cl.wait_for(f"worker{i}", r"Successfully registered with master", deadline)
        yield cl
    finally:
        left = cl.stop()
        assert not left, {pid: cmdline(pid) for pid in left}


@pytest.fixture(scope="module")
def spark(cluster: Cluster, sandbox: lp.sandbox.Sandbox) -> Iterator[object]:
    from pyspark.sql import SparkSession

    # Any session of this process (tests/test_spark.py's local one) is over: one SparkContext per process.
    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    saved = dict(os.environ)
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    # The Python the driver's JVM starts to plan a data source (when this process starts that JVM; under
    # `make test` the venv's python3 is first on PATH anyway).
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # The driver plans the read (one count request), so it holds the credentials too; the executors get theirs
    # from spark.executorEnv below.
    for name, value in sandbox.credentials.items():
        os.environ[f"LABELPORT_ALEGION_{name.upper()}"] = value
    builder = (
        SparkSession.builder.master(cluster.url)
        .appName("labelport-cluster-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.cores", "1")
        .config("spark.executor.memory", "1g")
        .config("spark.pyspark.python", sys.executable)
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100" if N < 10_000 else "500")
        # Both executors registered before the first job, or one executor could run every task.
        .config("spark.scheduler.minRegisteredResourcesRatio", "1.0")
        .config("spark.scheduler.maxRegisteredResourcesWaitingTime", f"{int(START_TIMEOUT)}s")
    )
    for name, value in sandbox.credentials.items():
        builder = builder.config(f"spark.executorEnv.LABELPORT_ALEGION_{name.upper()}", value)
    session = builder.getOrCreate()
    try:
        import labelport.spark

        labelport.spark.register(session)
        yield session
    finally:
        session.stop()
        os.environ.clear()
        os.environ.update(saved)


def executors(app_id: str) -> dict[int, str]:
    """The executor JVMs of ``app_id`` on this machine: pid -> executor id."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = cmdline(int(entry.name))
            if "CoarseGrainedExecutorBackend" in cmd and app_id in cmd:
                match = re.search(r"--executor-id (\S+)", cmd)
                found[int(entry.name)] = match.group(1) if match else "?"
    return found


def test_write_then_read_on_a_standalone_cluster_of_separate_processes(
    spark, cluster, sandbox, client, tmp_path
):
    app_id = spark.sparkContext.applicationId
    deadline = time.monotonic() + START_TIMEOUT
    while len(jvms := executors(app_id)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(jvms) == 2, (app_id, jvms, cluster.log("worker1")[-2000:])
    workers = {name: proc.pid for name, proc in cluster.procs.items() if name.startswith("worker")}
    # Each executor is a JVM launched by one of the two worker processes: neither this process nor the driver's JVM.
    launched_by = {pid: next(w for w, wpid in workers.items() if wpid in ancestors(pid)) for pid in jvms}
    assert sorted(launched_by.values()) == ["worker1", "worker2"], launched_by
    driver_jvm = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    assert not {os.getpid(), driver_jvm} & set(jvms)
    assert all(driver_jvm not in ancestors(pid) for pid in jvms)

    # Which processes run under which JVM, sampled while the round trip runs: a Python worker whose task failed
    # exits before the end, but it sent requests and must be placed.
    owners = {pid: f"executor {eid}" for pid, eid in jvms.items()} | {driver_jvm: "driver"}
    placed: dict[int, str] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            for pid in descendants(set(owners)):
                if pid not in placed:
                    owner = next((owners[a] for a in ancestors(pid) if a in owners), None)
                    if owner:
                        placed[pid] = owner

    timed_out = threading.Event()

    def watchdog() -> None:
        timed_out.set()
        spark.sparkContext.cancelAllJobs()
        cluster.stop()

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    timer = threading.Timer(DEADLINE, watchdog)
    timer.start()
    try:
        sent = write_then_read(
            spark,
            sandbox,
            client,
            tmp_path,
            n=N,
            partitions=PARTITIONS,
            chunk_size=max(100, N // PARTITIONS // 2),
            fail_after=N // PARTITIONS * 3 // 5,
            pages_per_partition=1,
        )
    finally:
        timer.cancel()
        done.set()
        sampler.join()
    assert not timed_out.is_set(), f"the round trip outlived {DEADLINE} s"

    # The processes that sent the requests: Python workers forked under the two executor JVMs, each executor
    # doing part of the write and part of the read. The driver sends none of the write; it plans the read in a
    # Python process its JVM starts (a login and a count).
    report = {}
    for phase, pids in sent.items():
        by_owner: dict[str, dict[int, int]] = {}
        for pid, count in pids.items():
            owner = placed.get(int(pid)) or next(
                (owners[a] for a in ancestors(int(pid)) if a in owners), "unplaced"
            )
            by_owner.setdefault(owner, {})[int(pid)] = count
        assert "unplaced" not in by_owner, (phase, by_owner, cmdline(next(iter(by_owner["unplaced"]))))
        assert set(by_owner) - {"driver"} == {"executor 0", "executor 1"}, (phase, by_owner)
        if phase == "writers":
            assert "driver" not in by_owner, by_owner  # every record went up from an executor
        report[phase] = by_owner
    print(f"\napp {app_id} on {cluster.url}, {N} records")
    for pid, executor_id in sorted(jvms.items(), key=lambda kv: kv[1]):
        worker = launched_by[pid]
        print(f"  executor {executor_id}: JVM pid {pid}, launched by {worker} (pid {workers[worker]})")
    for phase, by_owner in report.items():
        for owner, counts in sorted(by_owner.items()):
            print(
                f"  {phase} requests from {owner}: "
                + ", ".join(f"pid {p}: {n}" for p, n in sorted(counts.items()))
            )
    print(f"  driver: Python pid {os.getpid()}, JVM pid {driver_jvm}")
