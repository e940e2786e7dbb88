"""labelport against its peers, side by side in one run, against the same sandbox in its own process.

    python bench/run.py            # the full run (BENCHMARKS.md)
    python bench/run.py --smoke    # seconds: checks every scenario runs (CI)
    python bench/run.py --base DIR # also each labelport runner with an earlier build, interleaved

Each measurement runs in a fresh child process, so peak memory is the scenario's own; the timing is taken
inside the child around the work only. Every scenario runs `--repeat` times per runner, interleaved; the
table shows medians and ratios (peer time / labelport time: above 1 means labelport is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


# ------------------------------------------------------------------------------------------------ children


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    # VmHWM, not ru_maxrss: on Linux ru_maxrss carries the parent's peak into a child across fork and exec.
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def clock(env: dict[str, Any]) -> None:
    """Starts the runner's clock: called once its imports are done, so every row measures the work, not the
    import of its library (labelport's takes about 0.1 s, `requests`' 0.05 s, `orjson`'s nothing). Also the
    Python thread's CPU time: what the work cost the thread that runs the user's code, whatever else the
    machine was doing."""
    env["_t0"] = time.perf_counter()
    env["_c0"] = time.thread_time()


def stop(env: dict[str, Any]) -> None:
    """Stops the clock before the runner's own end (the work done, its checks left)."""
    env["_elapsed"] = time.perf_counter() - env["_t0"]
    env["_cpu"] = time.thread_time() - env["_c0"]


def alegion_session(env: dict[str, Any], session: Any) -> str:
    token = session.post(f"{env['url']}/api/v1/login", json=env["credentials"]).json()["access_token"]
    session.headers["Authorization"] = f"Bearer {token}"
    return f"{env['url']}/api/v1/batches/{env['batch']}/results?page=1&pageSize=1000&sort=%2BcreatedAt"


def b1_labelport(env: dict[str, Any]) -> int:
    import labelport as lp

    clock(env)
    client = lp.Client("alegion", project=env["project"], base_url=env["url"], **env["credentials"])
    return len(client.batch(env["batch"]).results().to_list())


def b1_labelport_own(env: dict[str, Any]) -> int:
    """`to_list()` with the orjson road turned off: every page read by labelport's own decoder (the road pages
    take when orjson may not read them), to compare the two on the same answers. (A build from before issue 23
    has only that road.)"""
    from labelport import _labelport as native

    getattr(native, "_set_fast_pages", bool)(False)
    return b1_labelport(env)


def b1_labelport_iter(env: dict[str, Any]) -> int:
    """Plain iteration, each result dropped once counted (streaming, as B4): what a loop over `results()` costs
    labelport, without the user's own list (whose collector cost would be the user's, as in any client)."""
    import labelport as lp

    clock(env)
    client = lp.Client("alegion", project=env["project"], base_url=env["url"], **env["credentials"])
    n = 0
    for _ in client.batch(env["batch"]).results():
        n += 1
    return n


def requests_results(env: dict[str, Any], decode: Callable[[Any], Any]) -> list[Any]:
    """Every result through a `requests.Session` loop following `Link: next`, each page decoded by `decode`."""
    import requests

    clock(env)
    s = requests.Session()
    url: str | None = alegion_session(env, s)
    out: list[Any] = []
    while url:
        r = s.get(url)
        r.raise_for_status()
        out.extend(decode(r))
        url = r.links.get("next", {}).get("url")
    return out


def b1_requests(env: dict[str, Any]) -> int:
    return len(requests_results(env, lambda r: r.json()))


def b1_httpx(env: dict[str, Any]) -> int:
    import httpx

    clock(env)
    with httpx.Client() as s:
        url: str | None = alegion_session(env, s)
        out: list[Any] = []
        while url:
            r = s.get(url)
            r.raise_for_status()
            out.extend(r.json())
            nxt = r.links.get("next")
            url = nxt["url"] if nxt else None
    return len(out)


def b1_floor(env: dict[str, Any]) -> int:
    """The same pages as raw bytes through labelport's engine, in order, then orjson: the cost of building
    the dicts, with nothing of ours in the decoding."""
    import labelport as lp
    import orjson

    clock(env)
    client = lp.Client("alegion", project=env["project"], base_url=env["url"], **env["credentials"])
    out: list[Any] = []
    page = 1
    while True:
        raw = client.request(
            "GET",
            f"/batches/{env['batch']}/results",
            params={"page": page, "pageSize": 1000, "sort": "+createdAt"},
            raw=True,
        )
        items = orjson.loads(raw)
        out.extend(items)
        if len(items) < 1000:
            return len(out)
        page += 1


def limit(env: dict[str, Any]) -> int:
    """The limit: `orjson.loads` of the very page bodies the runners were served (recorded), already in memory,
    with the cyclic collector paused. No client does less work and still hands over the same objects."""
    import gc

    import orjson
    from replay import Recording

    bodies = Recording.load(env["recording"]).bodies("GET", env["list_suffix"], env["page_param"])
    gc.disable()
    clock(env)
    out: list[Any] = []
    for body in bodies:
        page = orjson.loads(body)
        out.extend(page[env["items_field"]] if env.get("items_field") else page)
    stop(env)
    gc.enable()
    return len(out)


def b6_labelport(env: dict[str, Any]) -> int:
    import labelport as lp
    import pandas  # noqa: F401  (imported before the clock starts, as by the peers)

    clock(env)
    client = lp.Client("alegion", project=env["project"], base_url=env["url"], **env["credentials"])
    return len(client.batch(env["batch"]).results().to_pandas(flatten=True))


def _b6_requests(env: dict[str, Any], decode: Callable[[Any], Any]) -> int:
    import orjson  # noqa: F401
    import pandas as pd

    return len(pd.json_normalize(requests_results(env, decode)))


def b6_requests(env: dict[str, Any]) -> int:
    return _b6_requests(env, lambda r: r.json())


def b6_requests_orjson(env: dict[str, Any]) -> int:
    import orjson

    return _b6_requests(env, lambda r: orjson.loads(r.content))


def b4_labelport(env: dict[str, Any]) -> int:
    import labelport as lp

    clock(env)
    client = lp.Client("alegion", project=env["project"], base_url=env["url"], **env["credentials"])
    n = 0
    for _ in client.batch(env["batch"]).results():
        n += 1
    return n


def b5_labelport(env: dict[str, Any]) -> int:
    import labelport as lp

    client = lp.Client("alegion", project=env["project"], base_url=env["url"], **env["credentials"])
    path = f"/batches/{env['batch']}"
    client.request("GET", path)  # log in first, as the peers do before their loop
    clock(env)
    for _ in range(env["calls"]):
        client.request("GET", path)
    stop(env)
    return env["calls"]


def b5_requests(env: dict[str, Any]) -> int:
    import requests

    s = requests.Session()
    alegion_session(env, s)
    url = f"{env['url']}/api/v1/batches/{env['batch']}"
    clock(env)
    for _ in range(env["calls"]):
        s.get(url).json()
    stop(env)
    return env["calls"]


def b5_httpx(env: dict[str, Any]) -> int:
    import httpx

    with httpx.Client() as s:
        alegion_session(env, s)
        url = f"{env['url']}/api/v1/batches/{env['batch']}"
        clock(env)
        for _ in range(env["calls"]):
            s.get(url).json()
        stop(env)
    return env["calls"]


# ---- B2: Sama delivered tasks --------------------------------------------------------------------------


def b2_labelport(env: dict[str, Any]) -> int:
    import labelport as lp

    clock(env)
    client = lp.Client("sama", project=env["project"], base_url=env["url"], **env["credentials"])
    return len(client.batch(env["batch"]).results().to_list())


def b2_labelport_own(env: dict[str, Any]) -> int:
    from labelport import _labelport as native

    getattr(native, "_set_fast_pages", bool)(False)
    return b2_labelport(env)


def b2_labelport_iter(env: dict[str, Any]) -> int:
    import labelport as lp

    clock(env)
    client = lp.Client("sama", project=env["project"], base_url=env["url"], **env["credentials"])
    n = 0
    for _ in client.batch(env["batch"]).results():
        n += 1
    return n


def sama_pages(env: dict[str, Any], session: Any) -> list[Any]:
    """Every delivered task of the client batch through `session` (a `requests.Session` or an `httpx.Client`),
    1,000 a page, as the SDK pages (`page`, `page_size`; a short page is the last)."""
    url = f"{env['url']}/v2/projects/{env['project']}/tasks/delivered.json"
    params: dict[str, Any] = {"access_key": env["credentials"]["api_key"], "client_batch_id": env["batch"]}
    out: list[Any] = []
    page = 1
    while True:
        r = session.get(url, params={**params, "page": page, "page_size": 1000})
        r.raise_for_status()
        tasks = r.json()["tasks"]
        out.extend(tasks)
        if len(tasks) < 1000:
            return out
        page += 1


def b2_requests(env: dict[str, Any]) -> int:
    import requests

    clock(env)
    return len(sama_pages(env, requests.Session()))


def b2_httpx(env: dict[str, Any]) -> int:
    import httpx

    clock(env)
    with httpx.Client() as s:
        return len(sama_pages(env, s))


def b2_sama(env: dict[str, Any]) -> int:
    """The official SDK, its own code unchanged; only the host it hard-codes is rewritten to the sandbox's."""
    import requests
    import sama
    import sama.client as sama_client

    clock(env)
    base, host = env["url"], "https://api.sama.com"

    class Shim:  # `requests` as the SDK's module sees it
        exceptions = requests.exceptions

        @staticmethod
        def get(url: str, **kw: Any) -> Any:
            return requests.get(base + url[len(host) :] if url.startswith(host) else url, **kw)

    sama_client.requests = Shim  # type: ignore[assignment]
    sdk = sama.Client(api_key=env["credentials"]["api_key"])
    return len(list(sdk.get_delivered_tasks(env["project"], client_batch_id=env["batch"])))


# ---- B3: per-record upload to Playment -----------------------------------------------------------------


def b3_records(env: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    import uuid

    run = uuid.uuid4().hex[:12]  # reference ids are unique per project: every run sends new ones
    return run, [
        {"ref": f"{run}-{i:05d}", "image_url": f"https://example.com/cars/{i:05d}.jpg"}
        for i in range(env["n"])
    ]


def _b3_labelport(env: dict[str, Any], **options: Any) -> int:
    import labelport as lp

    client = lp.Client(
        "playment", project=env["project"], base_url=env["url"], **env["credentials"], **options
    )
    run, records = b3_records(env)
    batch = client.create_batch(f"b3-{run}")
    clock(env)
    job = batch.upload(records, key="ref", progress=False)
    stop(env)
    state = job.status()
    assert state["done"] == env["n"] and state["failed"] == 0, state
    return env["n"]


def b3_labelport(env: dict[str, Any]) -> int:
    return _b3_labelport(env)


def b3_labelport_raised(env: dict[str, Any]) -> int:
    return _b3_labelport(env, max_concurrency=256)


def b3_playment(env: dict[str, Any]) -> int:
    """The official package: one blocking create_job per record, its own code unchanged (URLs pointed at the
    sandbox, as in tests/test_playment_sdk.py)."""
    import playment
    import playment.client_handler as handler

    u = env["url"]
    handler.urls = handler.urls._replace(
        job_creation=u + "/projectsvc/projects/{}/jobs", batch_creation=u + "/v1/project/{}/batch"
    )
    client = playment.Client(env["credentials"]["api_key"])
    run, records = b3_records(env)
    batch = client.create_batch(name=f"b3-{run}", label="b3", description="bench", project_id=env["project"])
    clock(env)
    for r in records:
        client.create_job(
            reference_id=r["ref"],
            tag=env["credentials"]["tag"],
            data=playment.ImageData(image_url=r["image_url"]),
            project_id=env["project"],
            batch_id=batch.id,
        )
    stop(env)
    return len(records)


def b3_requests(env: dict[str, Any]) -> int:
    import requests

    s = requests.Session()
    s.headers["x-api-key"] = env["credentials"]["api_key"]
    run, records = b3_records(env)
    r = s.post(
        f"{env['url']}/v1/project/{env['project']}/batch",
        json={"name": f"b3-{run}", "label": "b3", "description": "bench"},
    )
    r.raise_for_status()
    batch_id = r.json()["data"]["batch_id"]
    url = f"{env['url']}/projectsvc/projects/{env['project']}/jobs"
    clock(env)
    for rec in records:
        body = {
            "reference_id": rec["ref"],
            "tag": env["credentials"]["tag"],
            "data": {"image_url": rec["image_url"]},
            "priority_weight": 5,
            "batch_id": batch_id,
        }
        s.post(url, json=body).raise_for_status()
    stop(env)
    return len(records)


LIMIT = "limit (orjson.loads of the same bytes in memory)"

RUNNERS: dict[str, Callable[[dict[str, Any]], int]] = {
    "B1/labelport": b1_labelport,
    "B1/labelport (iterate)": b1_labelport_iter,
    "B1/labelport (own decoder, no orjson)": b1_labelport_own,
    "B1/requests": b1_requests,
    "B1/httpx": b1_httpx,
    "B1/floor (engine bytes + orjson)": b1_floor,
    f"B1/{LIMIT}": limit,
    "B2/labelport": b2_labelport,
    "B2/labelport (iterate)": b2_labelport_iter,
    "B2/labelport (own decoder, no orjson)": b2_labelport_own,
    "B2/sama (official SDK)": b2_sama,
    "B2/requests": b2_requests,
    "B2/httpx": b2_httpx,
    f"B2/{LIMIT}": limit,
    "B3/labelport (default)": b3_labelport,
    "B3/labelport (max_concurrency=256)": b3_labelport_raised,
    "B3/playment (official package)": b3_playment,
    "B3/requests.Session loop": b3_requests,
    "B4/labelport": b4_labelport,
    "B5/labelport": b5_labelport,
    "B5/requests": b5_requests,
    "B5/httpx": b5_httpx,
    "B6/labelport to_pandas(flatten=True)": b6_labelport,
    "B6/requests + json_normalize": b6_requests,
    "B6/requests + orjson + json_normalize": b6_requests_orjson,
    f"B6/{LIMIT}": limit,
}


def child(name: str, env_json: str) -> None:
    env = json.loads(env_json)
    base = rss_mb()
    clock(env)  # the runner starts it again once its imports are done
    n = RUNNERS[name](env)
    ended, c_ended = time.perf_counter(), time.thread_time()
    elapsed = env.get("_elapsed", ended - env["_t0"])
    cpu = env.get("_cpu", c_ended - env["_c0"])
    lp = sys.modules.get("labelport")
    print(
        json.dumps(
            {
                "n": n,
                "seconds": elapsed,
                "thread_cpu": cpu,
                "peak_rss_mb": peak_rss_mb(),
                "growth_mb": peak_rss_mb() - base,
                "labelport": getattr(lp, "__file__", None),
            }
        )
    )


# ------------------------------------------------------------------------------------------------ parent


# The labelport package to measure beside the installed one (`--base DIR`): a copy of an earlier build's
# python/labelport, put first on the children's path.
BASE: str | None = None
BASE_SUFFIX = " [base]"


def is_labelport(name: str) -> bool:
    return name.split("/", 1)[1].startswith(("labelport", "floor"))


def run_child(name: str, env: dict[str, Any]) -> dict[str, Any]:
    child_env = dict(os.environ)
    on_base = name.endswith(BASE_SUFFIX)
    if on_base:
        assert BASE is not None
        name = name[: -len(BASE_SUFFIX)]
        child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [BASE, child_env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, __file__, "--child", name, json.dumps(env)],
        capture_output=True,
        text=True,
        timeout=1800,
        env=child_env,
    )
    if out.returncode != 0:
        raise SystemExit(f"{name} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    loaded = result.get("labelport") or ""
    if on_base and not loaded.startswith(str(BASE)):
        raise SystemExit(f"{name} with the base build loaded labelport from {loaded!r}, not from {BASE}")
    return result


class Sandbox:
    def __init__(self, vendor: str, latency: float | None = None) -> None:
        cmd = [sys.executable, os.path.join(HERE, "sandbox_proc.py"), vendor]
        if latency:
            cmd += ["--latency", str(latency)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.info = json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def seed_alegion(info: dict[str, Any], name: str, n: int) -> str:
    import labelport as lp

    client = lp.Client("alegion", project=info["project"], base_url=info["url"], **info["credentials"])
    batch = client.create_batch(name, exist_ok=True)
    for start in range(0, n, 50_000):
        batch.upload(
            [
                {
                    "image_id": f"img-{i:07d}",
                    "url": f"https://example.com/cars/{i:07d}.jpg",
                    "caption": "a red hatchback parked under a tree",
                }
                for i in range(start, min(n, start + 50_000))
            ],
            key="image_id",
        )
    return batch.id


def seed_sama(info: dict[str, Any], n: int) -> str:
    """n Sama tasks in one client batch, delivered at once (the sandbox completes them immediately)."""
    import labelport as lp

    client = lp.Client("sama", project=info["project"], base_url=info["url"], **info["credentials"])
    batch = client.create_batch("bench-b2")
    for start in range(0, n, 50_000):
        records = [
            {
                "image_id": f"img-{i:07d}",
                "url": f"https://example.com/cars/{i:07d}.jpg",
                "caption": "a red hatchback",
            }
            for i in range(start, min(n, start + 50_000))
        ]
        batch.upload(records, key="image_id", progress=False).wait(timeout=3600)
    batch.wait(timeout=3600, poll_interval=1.0, progress=False)
    return batch.id


class Runs(dict[str, list[dict[str, Any]]]):
    """Each runner's measurements, and the machine's 1-minute load average sampled before every child."""

    def __init__(self, names: list[str]) -> None:
        super().__init__((n, []) for n in names)
        self.load: list[float] = []


def measure(names: list[str], env: dict[str, Any], repeat: int) -> Runs:
    if BASE:  # each labelport runner again with the base build, interleaved with the rest
        names = [m for n in names for m in ([n, n + BASE_SUFFIX] if is_labelport(n) else [n])]
    runs = Runs(names)
    for _ in range(repeat):
        for name in names:  # interleaved, so load on the machine falls on every runner alike
            runs.load.append(os.getloadavg()[0])
            runs[name].append(run_child(name, env))
    return runs


def is_limit(name: str) -> bool:
    return name.split("/", 1)[1] == LIMIT


class Replay:
    """One recording of a scenario (what its runners ask of the sandbox at env["url"], each run once through a
    recording proxy), kept for the scenario's tables: `replayed` measures the runners against it, served from
    memory by a process of their own (the client's cost alone); every results table, the sandbox's too, gets
    the limit row from its bodies. `listing` names the paged list whose bodies the limit row decodes."""

    def __init__(self, env: dict[str, Any], names: list[str], listing: dict[str, Any]) -> None:
        from replay import record

        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "recording.pickle")
        recorders = [n for n in names if not is_limit(n)]
        record(env["url"], [lambda url, n=n: RUNNERS[n]({**env, "url": url}) for n in recorders]).save(
            self.path
        )
        self.env = {**env, "recording": self.path, **listing}

    def replayed(self, names: list[str], repeat: int) -> Runs:
        from replay import ReplayProcess

        server = ReplayProcess(self.path)
        try:
            return measure(names, {**self.env, "url": server.url}, repeat)
        finally:
            server.close()

    def on_sandbox(self, names: list[str], repeat: int) -> Runs:
        return measure(names, self.env, repeat)

    def close(self) -> None:
        self.dir.cleanup()


def table(title: str, runs: Runs, reference: str, repeat: int) -> list[str]:
    ref = statistics.median(r["seconds"] for r in runs[reference])
    base_ref = reference + BASE_SUFFIX
    compare = base_ref in runs
    ref_b = statistics.median(r["seconds"] for r in runs[base_ref]) if compare else 0.0
    limits = [n for n in runs if is_limit(n)]
    lim = statistics.median(r["seconds"] for r in runs[limits[0]]) if limits else 0.0
    lim_cpu = statistics.median(r["thread_cpu"] for r in runs[limits[0]]) if limits else 0.0
    lines = [
        f"### {title}",
        "",
        "| runner | items | median s | min-max s | ratio (peer / labelport) |"
        + (" ratio against the base build |" if compare else "")
        + (" times the limit | Python-thread CPU s | CPU times the limit's |" if lim else "")
        + " peak RSS MB |",
        "|---|---:|---:|---:|---:|"
        + ("---:|" if compare else "")
        + ("---:|---:|---:|" if lim else "")
        + "---:|",
    ]
    for name, rs in runs.items():
        times = [r["seconds"] for r in rs]
        med = statistics.median(times)
        cpu = statistics.median(r["thread_cpu"] for r in rs)
        ratio = "1.00 (reference)" if name == reference else f"{med / ref:.2f}"
        # The same peer against the base build's labelport: the ratio this change must keep.
        ratio_b = (
            "" if name.endswith(BASE_SUFFIX) or name == reference else f"{med / ref_b:.2f}" if ref_b else ""
        )
        peak = max(r["peak_rss_mb"] for r in rs)
        lines.append(
            f"| {name.split('/', 1)[1]} | {rs[0]['n']:,} | {med:.3f} | {min(times):.3f}-{max(times):.3f} | {ratio} |"
            + (f" {ratio_b} |" if compare else "")
            + (f" {med / lim:.2f} | {cpu:.3f} | {cpu / lim_cpu:.2f} |" if lim else "")
            + f" {peak:.0f} |"
        )
    load = runs.load
    lines += [
        "",
        f"{repeat} repetitions, runners interleaved; 1-minute load average before each child: "
        f"{min(load):.2f} to {max(load):.2f} (median {statistics.median(load):.2f}).",
    ]
    return lines + [""]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one repetition: checks everything runs")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--only", default="B1,B2,B3,B4,B5,B6", help="the scenarios to run, e.g. --only B2,B3")
    p.add_argument(
        "--base",
        metavar="DIR",
        help="also run each labelport runner with the labelport package in DIR (a copy of an earlier build's "
        "python/labelport, with its compiled module), interleaved: a change's before and after in one run",
    )
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    global BASE
    BASE = os.path.abspath(args.base) if args.base else None
    if args.child:
        child(*args.child)
        return

    import labelport as lp

    smoke = args.smoke
    repeat = 1 if smoke else args.repeat
    out = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; labelport {lp.__version__}; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; repeat {repeat}; "
        f"1-minute load average at the start {os.getloadavg()[0]:.2f}"
        + (" (SMOKE: sizes too small to mean anything)" if smoke else ""),
        "",
    ]
    only = {x.strip().upper() for x in args.only.split(",")}
    if only & {"B1", "B4", "B5", "B6"}:
        out += alegion_scenarios(only, smoke, repeat)
    if "B2" in only:
        out += sama_scenario(smoke, repeat)
    if "B3" in only:
        out += playment_scenario(smoke, repeat)
    print("\n".join(out))


def pandas_backend() -> str:
    """The pandas version and the dtype backend its DataFrames got here (pandas 3 stores strings in its own
    `str` dtype, backed by pyarrow when installed)."""
    import pandas as pd

    strings = pd.Series(["a"]).dtype
    storage = getattr(strings, "storage", None)
    return (
        f"pandas {pd.__version__}, default dtype backend (NumPy; strings {strings}"
        + (f", {storage} storage" if storage else "")
        + ")"
    )


REPLAYED = "replayed: the sandbox's answers recorded once, served from memory by a process of their own"


def alegion_scenarios(only: set[str], smoke: bool, repeat: int) -> list[str]:
    n_results = 2_000 if smoke else 100_000
    n_big = 20_000 if smoke else 1_000_000
    calls = 50 if smoke else 2_000
    out: list[str] = []
    sb = Sandbox("alegion")
    try:
        info = sb.info
        batch = seed_alegion(info, "bench-b1", n_results)
        env = {**info, "batch": batch}
        b1 = [
            "B1/labelport",
            "B1/labelport (iterate)",
            "B1/labelport (own decoder, no orjson)",
            "B1/requests",
            "B1/httpx",
            "B1/floor (engine bytes + orjson)",
            f"B1/{LIMIT}",
        ]
        b6 = [
            "B6/labelport to_pandas(flatten=True)",
            "B6/requests + json_normalize",
            "B6/requests + orjson + json_normalize",
            f"B6/{LIMIT}",
        ]
        recorded = (b1 if "B1" in only else []) + (b6 if "B6" in only else [])
        replay = (
            Replay(env, recorded, {"list_suffix": "/results", "page_param": "page"}) if recorded else None
        )
        try:
            if replay and "B1" in only:
                out += table(
                    f"B1 results, {REPLAYED}: {n_results:,} Alegion results, 1,000 per page, into a list of "
                    "dicts (iterate: each result counted and dropped)",
                    replay.replayed(b1, repeat),
                    "B1/labelport",
                    repeat,
                )
            if replay and "B6" in only:
                out += table(
                    f"B6 DataFrame, {REPLAYED}: {n_results:,} Alegion results into a flattened pandas "
                    f"DataFrame ({pandas_backend()})",
                    replay.replayed(b6, repeat),
                    "B6/labelport to_pandas(flatten=True)",
                    repeat,
                )
            if replay and "B1" in only:
                out += table(
                    f"B1 results on the sandbox: {n_results:,} Alegion results, 1,000 per page, into a list of "
                    "dicts (the limit: the recorded bodies, as above)",
                    replay.on_sandbox(b1, repeat),
                    "B1/labelport",
                    repeat,
                )
        finally:
            if replay:
                replay.close()
        if "B5" in only:
            env = {**info, "batch": batch, "calls": calls}
            out += table(
                f"B5 small calls: {calls:,} sequential GETs of one batch",
                measure(["B5/labelport", "B5/requests", "B5/httpx"], env, repeat),
                "B5/labelport",
                repeat,
            )
        if "B4" not in only:
            return out
        big = seed_alegion(info, "bench-b4", n_big)
        small_n = n_big // 10
        small = seed_alegion(info, "bench-b4-small", small_n)
        mem = {
            f"B4/labelport ({n_big:,})": run_child("B4/labelport", {**info, "batch": big}),
            f"B4/labelport ({small_n:,})": run_child("B4/labelport", {**info, "batch": small}),
        }
        if BASE:
            mem[f"B4/labelport ({n_big:,}){BASE_SUFFIX}"] = run_child(
                "B4/labelport" + BASE_SUFFIX, {**info, "batch": big}
            )
            mem[f"B4/labelport ({small_n:,}){BASE_SUFFIX}"] = run_child(
                "B4/labelport" + BASE_SUFFIX, {**info, "batch": small}
            )
        out += [
            "### B4 memory: stream results without keeping them",
            "",
            "| build | results | seconds | peak RSS MB | growth while streaming MB |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, r in mem.items():
            build = "base" if name.endswith(BASE_SUFFIX) else "this"
            out.append(
                f"| {build} | {r['n']:,} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {r['growth_mb']:.1f} |"
            )
        out.append("")
    finally:
        sb.close()
    return out


def sama_scenario(smoke: bool, repeat: int) -> list[str]:
    n_sama = 90 if smoke else 100_000
    out: list[str] = []
    sb = Sandbox("sama")
    try:
        env = {**sb.info, "batch": seed_sama(sb.info, n_sama)}
        b2 = [
            "B2/labelport",
            "B2/labelport (iterate)",
            "B2/labelport (own decoder, no orjson)",
            "B2/sama (official SDK)",
            "B2/requests",
            "B2/httpx",
            f"B2/{LIMIT}",
        ]
        sama_list = {"list_suffix": "/tasks/delivered.json", "page_param": "page", "items_field": "tasks"}
        replay = Replay(env, b2, sama_list)
        try:
            out += table(
                f"B2 Sama delivered tasks, {REPLAYED}: {n_sama:,} tasks of one client batch, 1,000 per page, "
                "into a list (iterate: each task counted and dropped)",
                replay.replayed(b2, repeat),
                "B2/labelport",
                repeat,
            )
            out += table(
                f"B2 Sama delivered tasks on the sandbox: {n_sama:,} tasks of one client batch, into a list "
                "(the limit: the recorded bodies, as above)",
                replay.on_sandbox(b2, repeat),
                "B2/labelport",
                repeat,
            )
        finally:
            replay.close()
    finally:
        sb.close()
    return out


def playment_scenario(smoke: bool, repeat: int) -> list[str]:
    n_upload = 30 if smoke else 2_000
    out: list[str] = []
    sb = Sandbox("playment", latency=0.02)
    try:
        env = {**sb.info, "n": n_upload}
        b3 = [
            "B3/labelport (default)",
            "B3/labelport (max_concurrency=256)",
            "B3/playment (official package)",
            "B3/requests.Session loop",
        ]
        out += table(
            f"B3 per-record upload: {n_upload:,} Playment jobs, every answer 20 ms late (a WAN round trip)",
            measure(b3, env, repeat),
            "B3/labelport (max_concurrency=256)",
            repeat,
        )
    finally:
        sb.close()
    return out


if __name__ == "__main__":
    main()
