"""Hostile input from the caller's side (issue 18, rows 4, 10, 12, 13 and 15): records nested without end, JSON from
a server nested without end, durations no clock can hold, credentials inside a base URL, and arguments of the
wrong type or out of range. Each is a typed labelport error naming the argument, record or limit, raised before
anything is sent; none is a crash, a Rust panic, or a bare TypeError, OverflowError or ValueError.

Cases that crashed the process (a stack overflow) or panicked run in a child process under a memory limit
(``isolated``, tests/conftest.py), so a regression fails one test instead of killing the run.
"""

from __future__ import annotations

import asyncio
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import labelport as lp
import pytest

LIMIT = 128  # labelport.MAX_JSON_DEPTH, written out: the documented number is part of the contract
BATCH_ID = "11111111-2222-3333-4444-555555555555"


def nested(depth: int) -> Any:
    """A list holding a list ... ``depth`` lists in all (``nested(1) == []``), built without recursion."""
    x: Any = []
    for _ in range(depth - 1):
        x = [x]
    return x


def nested_text(depth: int) -> str:
    return "[" * depth + "]" * depth


def sent(sb: lp.sandbox.Sandbox) -> int:
    """Every request the sandbox has seen so far."""
    return sum(int(n) for n in sb.stats()["requests"].values())


@pytest.fixture
def quiet(sandbox: lp.sandbox.Sandbox, capfd: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Asserts the test sent nothing to the sandbox and printed no Rust panic."""
    before = sent(sandbox)
    yield
    assert sent(sandbox) == before, "a request was sent"
    assert "panicked" not in capfd.readouterr().err


def invalid(call: Callable[[], Any], field: str, *names: str) -> lp.InvalidInput:
    """``call()`` raises ``InvalidInput`` (still a ``ValueError``) naming ``field`` in ``.field``, and each of
    ``names`` in its message."""
    with pytest.raises(lp.InvalidInput) as info:
        call()
    err = info.value
    assert type(err) is lp.InvalidInput and isinstance(err, ValueError)
    assert err.field == field, (err.field, str(err))
    for name in names:
        assert name in str(err), (name, str(err))
    return err


def fake_alegion(deep: str) -> Callable[[str, str, dict[str, str], bytes], bytes]:
    """A fake Alegion server: a token for the login, a batch for the batch, and ``deep`` as every result's
    ``resultData`` and as the body of any other path."""
    from conftest import http_answer  # type: ignore[import-not-found]

    def answer(method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        if path.startswith("/api/v1/login"):
            return http_answer(200, '{"access_token": "t0k", "expires_in": 3600}')
        if path.startswith(f"/api/v1/batches/{BATCH_ID}/results"):
            page = (
                '[{"createdAt": "2026-01-01T00:00:00Z", "resultData": ' + deep + ', "inputRecord": '
                '{"id": "r1", "metadata": "k1", "data": {"a": 1}, "createdAt": "2026-01-01T00:00:00Z"}}]'
            )
            return http_answer(200, page, {"X-Total-Count": "1"})
        if path.startswith(f"/api/v1/batches/{BATCH_ID}"):
            return http_answer(200, f'{{"id": "{BATCH_ID}", "name": "b", "createdAt": "2026-01-01"}}')
        return http_answer(200, deep, {"X-Total-Count": "1"})

    return answer


@pytest.fixture
def conftest_importable() -> Iterator[None]:
    """``tests/`` is not a package: ``fake_alegion`` imports ``http_answer`` from conftest.py by its directory."""
    sys.path.insert(0, os.path.dirname(__file__))
    yield
    sys.path.remove(os.path.dirname(__file__))


def fake_client(url: str) -> lp.Client:
    return lp.Client("alegion", project="wf-1", base_url=url, username="alice", password="pw")


def sandbox_args(sb: lp.sandbox.Sandbox) -> dict[str, Any]:
    """``Client``'s arguments for the sandbox, for ``AsyncClient`` and ``ClientSpec``."""
    return {"project": sb.project, "base_url": sb.url, **sb.credentials}


@pytest.fixture
def async_batch(sandbox: lp.sandbox.Sandbox, batch: lp.Batch) -> lp.AsyncBatch:
    client = lp.AsyncClient("alegion", **sandbox_args(sandbox))

    async def get() -> lp.AsyncBatch:
        return await client.batch(batch.id)

    return asyncio.run(get())


def in_loop(call: Callable[[], Any]) -> Any:
    """Calls ``call()`` inside a running event loop (where the async API is called) and awaits what it returns."""

    async def go() -> Any:
        value = call()
        return await value if hasattr(value, "__await__") else value

    return asyncio.run(go())


# ---------------------------------------------------------------------------------------------------------------
# Row 4: records nested without end are refused before anything is sent.


def test_the_depth_limit_is_a_documented_constant():
    assert lp.MAX_JSON_DEPTH == LIMIT
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"`lp.MAX_JSON_DEPTH` ({LIMIT})" in readme


DEEP_UPLOAD = """
import asyncio
def deep(n):
    x = []
    for _ in range(n - 1):
        x = [x]
    return x
async def create(client):
    return await client.create_batch("deep")
async def upload(batch, records):
    return await batch.upload(records, key="id")
def deep_dict(n):
    x = {{}}
    for _ in range(n - 1):
        x = {{"d": x}}
    return x
def case():
    with lp.sandbox.start("alegion") as sb:
        client = {client}
        batch = {batch}
        before = sum(int(n) for n in sb.stats()["requests"].values())
        try:
            {call}
        except lp.InvalidInput as e:
            assert e.key == "1", e.key
            after = sum(int(n) for n in sb.stats()["requests"].values())
            assert after == before, f"{{after - before}} requests were sent"
            raise
"""


@pytest.mark.parametrize("value", ["deep(10_000)", "deep_dict(10_000)"])
def test_a_record_nested_10000_deep_is_invalid_input_naming_the_record_and_the_limit(isolated, value):
    code = DEEP_UPLOAD.format(
        client="sb.client()",
        batch="client.create_batch('deep')",
        call=f"batch.upload([{{'id': 1, 'deep': {value}}}], key='id')",
    )
    run = isolated(code, timeout=60)
    run.expect("InvalidInput", max_mb=1024, max_seconds=20)
    assert "record #0" in run.message and str(LIMIT) in run.message, run.message
    assert run.outcome["field"].startswith("deep"), run.outcome


def test_a_deep_record_from_an_iterator_is_invalid_input_too(isolated):
    # Not a list: read in chunks through labelport._records, the streaming path.
    code = DEEP_UPLOAD.format(
        client="sb.client()",
        batch="client.create_batch('deep')",
        call="batch.upload(iter([{'id': 0}, {'id': 1, 'deep': deep(10_000)}]), key='id')",
    )
    run = isolated(code.replace('e.key == "1"', 'e.key == "1" and "record #1" in str(e)'), timeout=60)
    run.expect("InvalidInput", max_mb=1024, max_seconds=20)
    assert str(LIMIT) in run.message


def test_a_deep_record_in_an_async_upload_from_an_iterator_is_invalid_input(isolated):
    # The async upload reads its chunks on a runtime thread: a small stack, where unbounded recursion crashed.
    code = DEEP_UPLOAD.format(
        client="lp.AsyncClient('alegion', project=sb.project, base_url=sb.url, **sb.credentials)",
        batch="asyncio.run(create(client))",
        call="asyncio.run(upload(batch, iter([{'id': 1, 'deep': deep(10_000)}])))",
    )
    run = isolated(code, timeout=60)
    run.expect("InvalidInput", max_mb=1024, max_seconds=20)
    assert str(LIMIT) in run.message


def test_a_deep_record_in_an_async_upload_of_a_list_is_invalid_input(async_batch, quiet):
    upload = lambda: in_loop(lambda: async_batch.upload([{"id": 1, "deep": nested(300)}], key="id"))  # noqa: E731
    err = invalid(upload, "deep" + "[0]" * (LIMIT - 1), "record #0", str(LIMIT))
    assert err.key == "1"


def test_depth_129_is_refused_and_the_field_is_the_path_where_it_crosses(batch, quiet):
    record = {"id": "r", "v": nested(LIMIT)}  # the record is level 1: its value's lists make 129
    err = invalid(lambda: batch.upload([record], key="id"), "v" + "[0]" * (LIMIT - 1), str(LIMIT))
    assert err.key == "r"
    # on_error="collect" is about what the vendor refuses: a record labelport cannot send still stops the upload.
    collect = lambda: batch.upload([record], key="id", on_error="collect")  # noqa: E731
    invalid(collect, "v" + "[0]" * (LIMIT - 1), str(LIMIT))


def test_tuples_and_dicts_count_as_levels_too(batch, quiet):
    deep: Any = ()
    for _ in range(1_000):
        deep = ({"t": deep},)
    # v is level 2 (a tuple), v[0] level 3 (a dict), v[0].t level 4, ...: level 129 is a dict.
    field = "v" + "[0].t" * 63 + "[0]"
    invalid(lambda: batch.upload([{"id": "t", "v": deep}], key="id"), field, "record #0", str(LIMIT))


def test_a_deep_value_in_a_dataframe_cell_is_invalid_input_naming_the_row(batch, quiet):
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": ["a", "b"], "deep": [1, 2]}).astype({"deep": object})
    frame.at[1, "deep"] = nested(5_000)  # deeper than Python's recursion limit
    err = invalid(
        lambda: batch.upload(frame, key="id"), "deep" + "[0]" * (LIMIT - 1), "record #1", str(LIMIT)
    )
    assert err.key == "b"


def test_a_deep_line_in_a_jsonl_file_is_invalid_input_naming_the_line(batch, quiet, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "deep": ' + nested_text(50_000) + "}\n")
    invalid(lambda: batch.upload(str(path), key="id"), "records", "line 2", str(LIMIT))


def test_a_jsonl_line_deeper_than_the_limit_but_parseable_is_refused_by_record(batch, quiet, tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"id": "a", "deep": ' + nested_text(400) + "}\n")
    invalid(lambda: batch.upload(path, key="id"), "deep" + "[0]" * (LIMIT - 1), "record #0", str(LIMIT))


def test_deep_options_params_and_request_bodies_are_refused_before_sending(client, quiet):
    deep = nested(1_000)
    invalid(lambda: client.create_batch("x", is_enabled=deep), "is_enabled", str(LIMIT))
    invalid(lambda: client.request("GET", "/workflows", params={"q": deep}), "q" + "[0]" * LIMIT, str(LIMIT))
    invalid(lambda: client.request("POST", "/workflows", json=deep), "json" + "[0]" * LIMIT, str(LIMIT))
    invalid(lambda: lp.ClientSpec("playment", tag=deep), "tag", str(LIMIT))
    invalid(lambda: lp.ClientSpec("playment").replace(tag=deep), "tag", str(LIMIT))


def test_an_option_at_the_limit_is_taken_and_one_level_more_is_not():
    assert lp.ClientSpec("playment", tag=nested(LIMIT)).options["tag"] == nested(LIMIT)
    invalid(lambda: lp.ClientSpec("playment", tag=nested(LIMIT + 1)), "tag", str(LIMIT))


def test_a_body_at_the_limit_is_sent_and_one_level_more_is_not(hostile_server, conftest_importable):
    server = hostile_server(fake_alegion("[]"))
    client = fake_client(server.url)
    client.request("POST", "/echo", json=nested(LIMIT))
    assert [p for m, p, _ in server.requests if m == "POST" and p.endswith("/echo")] == ["/api/v1/echo"]
    invalid(lambda: client.request("POST", "/echo2", json=nested(LIMIT + 1)), "json" + "[0]" * LIMIT)
    assert not any(p.endswith("/echo2") for _, p, _ in server.requests)


def test_a_deep_cli_option_is_a_usage_error_not_a_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "labelport", "create-batch", "x", "--vendor", "alegion"]
        + [
            "--project",
            "p",
            "--base-url",
            "http://127.0.0.1:9",
            "--option",
            "is_enabled=" + nested_text(20_000),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")},
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and str(LIMIT) in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# Row 12: JSON from a server nested without end is a VendorError (bad_response), not a ValueError.


DEEP_RESULTS = """
def case():
    client = lp.Client("alegion", project="wf-1", base_url=URL, username="alice", password="pw")
    {call}
"""


@pytest.mark.parametrize(
    "name, call",
    [
        ("results", 'return client.batch("{id}").results().to_list()'),
        ("results with raw", 'return client.batch("{id}").results(include_raw=True).to_list()'),
        ("request", 'return client.request("GET", "/anything")'),
        ("paginated request", 'return list(client.request("GET", "/anything", paginate=True))'),
        (
            "async results",
            "import asyncio\n    async def go():\n"
            "        c = lp.AsyncClient('alegion', project='wf-1', base_url=URL, username='a', password='p')\n"
            '        return [r async for r in (await c.batch("{id}")).results()]\n'
            "    return asyncio.run(go())",
        ),
        (
            "async paginated request",
            "import asyncio\n    async def go():\n"
            "        c = lp.AsyncClient('alegion', project='wf-1', base_url=URL, username='a', password='p')\n"
            '        return [r async for r in c.request("GET", "/anything", paginate=True)]\n'
            "    return asyncio.run(go())",
        ),
    ],
)
def test_server_json_nested_100000_deep_is_a_vendor_error_bad_response(
    isolated, hostile_server, conftest_importable, name, call
):
    server = hostile_server(fake_alegion(nested_text(100_000)))
    run = isolated(DEEP_RESULTS.format(call=call.format(id=BATCH_ID)), url=server.url, timeout=60)
    run.expect("VendorError", "bad_response", max_mb=1024, max_seconds=20)
    assert str(LIMIT) in run.message, run.message


def test_server_json_at_the_limit_decodes_and_one_more_level_does_not(hostile_server, conftest_importable):
    at_limit = hostile_server(fake_alegion(nested_text(LIMIT)))
    assert fake_client(at_limit.url).request("GET", "/x") == nested(LIMIT)
    batch = fake_client(at_limit.url).batch(BATCH_ID)
    assert batch.results().to_list()[0]["output"] == nested(LIMIT)
    over = hostile_server(fake_alegion(nested_text(LIMIT + 1)))
    with pytest.raises(lp.VendorError) as info:
        fake_client(over.url).request("GET", "/x")
    assert info.value.code == "bad_response" and str(LIMIT) in str(info.value)


def test_a_body_that_is_not_json_still_comes_back_as_text(hostile_server, conftest_importable):
    # Only a body too deep is an error: text that is not JSON is the escape hatch's answer, as before.
    server = hostile_server(fake_alegion("[not json"))
    assert fake_client(server.url).request("GET", "/x") == "[not json"


def test_the_cli_exits_75_on_deep_results(hostile_server, conftest_importable):
    server = hostile_server(fake_alegion(nested_text(100_000)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}
    env.update(
        LABELPORT_ALEGION_BASE_URL=server.url,
        LABELPORT_ALEGION_PROJECT="wf-1",
        LABELPORT_ALEGION_USERNAME="alice",
        LABELPORT_ALEGION_PASSWORD="pw",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "labelport", "results", "--vendor", "alegion", "--batch", BATCH_ID],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 75, (proc.returncode, proc.stderr)
    assert "VendorError" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# Row 10: durations no clock can hold, from the caller, are InvalidInput naming the argument (no panic).

BAD_SECONDS = [1e300, math.inf, -math.inf, math.nan, -1.0]


@pytest.mark.parametrize("value", BAD_SECONDS + [0.0], ids=repr)
def test_client_timeout_out_of_range_is_invalid_input(sandbox, quiet, value):
    for make in (sandbox.client, lambda **kw: lp.AsyncClient("alegion", **sandbox_args(sandbox), **kw)):
        invalid(lambda make=make: make(timeout=value), "timeout", "timeout")
    invalid(lambda: lp.ClientSpec("alegion", timeout=value), "timeout")
    invalid(lambda: lp.ClientSpec("alegion").replace(timeout=value), "timeout")


@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_wait_timeout_and_poll_interval_out_of_range_are_invalid_input(batch, quiet, value):
    invalid(lambda: batch.wait(timeout=value), "timeout")
    invalid(lambda: batch.wait(timeout=1, poll_interval=value), "poll_interval")


@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_job_wait_out_of_range_is_invalid_input(batch, make_records, value):
    job = batch.upload(make_records(1), key="image_id")
    invalid(lambda: job.wait(timeout=value), "timeout")
    invalid(lambda: job.wait(timeout=1, poll_interval=value), "poll_interval")


@pytest.mark.parametrize("value", BAD_SECONDS, ids=repr)
def test_async_batch_wait_out_of_range_is_invalid_input(async_batch, quiet, value):
    invalid(lambda: in_loop(lambda: async_batch.wait(timeout=value)), "timeout")
    invalid(lambda: in_loop(lambda: async_batch.wait(timeout=1, poll_interval=value)), "poll_interval")


def test_async_job_wait_out_of_range_is_invalid_input(sandbox, make_records):
    async def go() -> None:
        client = lp.AsyncClient("alegion", **sandbox_args(sandbox))
        b = await client.create_batch("async-job-wait")
        job = await b.upload(make_records(1), key="image_id")
        for value in BAD_SECONDS:
            with pytest.raises(lp.InvalidInput) as info:
                await job.wait(timeout=value)
            assert info.value.field == "timeout"
            with pytest.raises(lp.InvalidInput) as info:
                await job.wait(timeout=1, poll_interval=value)
            assert info.value.field == "poll_interval"

    asyncio.run(go())


@pytest.mark.parametrize("value", [math.nan, math.inf, -0.5, -5.0, "10", True], ids=repr)
def test_rate_limit_out_of_range_or_of_the_wrong_type_is_invalid_input(sandbox, quiet, value):
    invalid(lambda: sandbox.client(rate_limit=value), "rate_limit")
    invalid(lambda: lp.ClientSpec("alegion", rate_limit=value), "rate_limit")


def test_a_stall_timeout_no_clock_can_hold_is_invalid_input():
    for value in (1e300, math.inf, math.nan, -1):
        invalid(
            lambda value=value: lp.Client(
                "taskmonk",
                project="p",
                client_id="i",
                client_secret="s",
                base_url="http://127.0.0.1:9",
                stall_timeout=value,
            ),
            "stall_timeout",
        )


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"latency": 1e300}, "latency"),
        ({"complete_after": math.inf}, "complete_after"),
        ({"faults": {"slow": 1.0, "slow_s": 1e300}}, "slow_s"),
        ({"faults": {"token_ttl": math.nan}}, "token_ttl"),
    ],
    ids=lambda v: str(v),
)
def test_sandbox_durations_no_clock_can_hold_are_invalid_input(kwargs, field):
    invalid(lambda: lp.sandbox.start("alegion", **kwargs), field)


def test_sandbox_advance_out_of_range_is_invalid_input(sandbox):
    for value in (math.nan, math.inf, 1e300, -1.0, "1"):
        invalid(lambda value=value: sandbox.advance(value), "seconds")


def test_the_cli_wait_timeout_beyond_any_clock_exits_2(sandbox, batch):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}
    env.update(sandbox.env())
    proc = subprocess.run(
        [sys.executable, "-m", "labelport", "wait", "--vendor", "alegion", "--batch", batch.id]
        + ["--timeout", "1e300"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "timeout" in proc.stderr and "panicked" not in proc.stderr, proc.stderr


PANICKING_DURATIONS = """
def case():
    with lp.sandbox.start("alegion") as sb:
        client = lp.Client("alegion", project=sb.project, base_url=sb.url, **sb.credentials)
        batch = client.create_batch("d")
        {call}
"""


@pytest.mark.parametrize(
    "call",
    [
        "lp.Client('alegion', project=sb.project, base_url=sb.url, timeout=1e300, **sb.credentials)",
        "batch.wait(timeout=1e300)",
        "batch.wait(timeout=1, poll_interval=1e300)",
        "batch.upload([{'k': 'a'}], key='k').wait(timeout=1, poll_interval=1e300)",
    ],
)
def test_no_panic_is_printed_for_a_duration_no_clock_can_hold(isolated, call):
    run = isolated(PANICKING_DURATIONS.format(call=call), timeout=60)
    run.expect("InvalidInput", max_mb=1024, max_seconds=20)


# ---------------------------------------------------------------------------------------------------------------
# Row 13: credentials in a base URL are refused, and the refusal does not repeat them.

USER, PASSWORD = "alice-in-url", "s3cret-in-url"


@pytest.mark.parametrize(
    "url",
    [
        f"http://{USER}:{PASSWORD}@127.0.0.1:9",
        f"https://{USER}:{PASSWORD}@example.com/api",
        f"http://{USER}@127.0.0.1:9",
        f"http://:{PASSWORD}@127.0.0.1:9",
        f"http://{USER}:{PASSWORD}@127.0.0.1:999999",  # not even a URL: still not echoed
        f"http://{USER}:{PASSWORD}@[::1",  # nor this
    ],
)
def test_a_base_url_with_credentials_is_refused_without_echoing_them(url):
    for make in (
        lambda: lp.Client("alegion", project="p", base_url=url, username="u", password="p"),
        lambda: lp.AsyncClient("alegion", project="p", base_url=url, username="u", password="p"),
        lambda: lp.ClientSpec("alegion", project="p", base_url=url),
        lambda: lp.ClientSpec("alegion", project="p").replace(base_url=url),
    ):
        err = invalid(make, "base_url")
        for secret in (USER, PASSWORD):
            assert (
                secret not in str(err) and secret not in repr(err.args) and secret not in (err.message or "")
            )


def test_a_base_url_with_credentials_from_the_environment_or_a_profile_is_refused(monkeypatch, tmp_path):
    url = f"http://{USER}:{PASSWORD}@127.0.0.1:9"
    monkeypatch.setenv("LABELPORT_ALEGION_BASE_URL", url)
    err = invalid(lambda: lp.Client("alegion", project="p", username="u", password="p"), "base_url")
    assert PASSWORD not in str(err) and USER not in str(err)
    monkeypatch.delenv("LABELPORT_ALEGION_BASE_URL")
    profile = tmp_path / "config.toml"
    profile.write_text(f'[profiles.p]\nvendor = "alegion"\nproject = "p"\nbase_url = "{url}"\n')
    profile.chmod(0o600)
    monkeypatch.setenv("LABELPORT_CONFIG", str(profile))
    err = invalid(lambda: lp.Client(profile="p", username="u", password="p"), "base_url")
    assert PASSWORD not in str(err) and USER not in str(err)


def test_an_unpickled_spec_with_credentials_in_its_url_is_refused():
    # A pickle written by an older labelport (or by hand) still cannot smuggle them in.
    state = {"vendor": "alegion", "project": "p", "base_url": f"http://{USER}:{PASSWORD}@127.0.0.1:9"}
    err = invalid(lambda: lp._labelport._spec_from_state(state), "base_url")
    assert PASSWORD not in str(err)


def test_an_at_sign_in_a_path_is_not_a_credential(sandbox):
    assert lp.ClientSpec("alegion", base_url="https://example.com/team@x/api").base_url.endswith("@x/api")


# ---------------------------------------------------------------------------------------------------------------
# Row 15: arguments of the wrong type or out of range are InvalidInput naming the argument.


def wrong_arguments(sb: lp.sandbox.Sandbox, client: lp.Client, batch: lp.Batch) -> list[tuple[str, Callable]]:
    env = sandbox_args(sb)
    rec = [{"k": "a"}]
    return [
        ("key", lambda: batch.upload(rec, key=5)),
        ("on_error", lambda: batch.upload(rec, key="k", on_error=None)),
        ("vendor", lambda: lp.Client(123, project="p")),
        ("vendor", lambda: lp.AsyncClient(123, project="p")),
        ("vendor", lambda: lp.ClientSpec(123)),
        ("vendor", lambda: lp.sandbox.start(123)),
        ("max_retries", lambda: sb.client(max_retries=10**12)),
        ("max_retries", lambda: sb.client(max_retries=-1)),
        ("max_retries", lambda: sb.client(max_retries=2.5)),
        ("max_retries", lambda: sb.client(max_retries="3")),
        ("max_retries", lambda: lp.AsyncClient("alegion", max_retries=10**12, **env)),
        ("max_retries", lambda: lp.ClientSpec("alegion", max_retries=10**12)),
        ("max_retries", lambda: lp.ClientSpec("alegion").replace(max_retries=-1)),
        ("timeout", lambda: sb.client(timeout="30")),
        ("timeout", lambda: sb.client(timeout=10**400)),
        ("timeout", lambda: lp.ClientSpec("alegion").replace(timeout="x")),
        ("allow_insecure", lambda: sb.client(allow_insecure="yes")),
        ("allow_insecure", lambda: lp.ClientSpec("alegion").replace(allow_insecure=2)),
        ("profile", lambda: lp.Client("alegion", profile=5)),
        ("base_url", lambda: sb.client(base_url=5)),
        ("base_url", lambda: lp.ClientSpec("alegion").replace(base_url=5)),
        ("project", lambda: sb.client(project=[1])),
        ("project", lambda: sb.client(project=True)),
        ("project", lambda: lp.ClientSpec("alegion").replace(project=1.5)),
        ("name", lambda: client.create_batch(5)),
        ("exist_ok", lambda: client.create_batch("x", exist_ok="yes")),
        ("id", lambda: client.batch(5)),
        ("user", lambda: client.user_tasks(None)),
        ("method", lambda: client.request(5, "/workflows")),
        ("path", lambda: client.request("GET", None)),
        ("params", lambda: client.request("GET", "/workflows", params=[("a", 1)])),
        ("params", lambda: client.request("GET", "/workflows", params={1: "a"})),
        ("paginate", lambda: client.request("GET", "/workflows", paginate="yes")),
        ("retry", lambda: client.request("GET", "/workflows", retry="no")),
        ("raw", lambda: client.request("GET", "/workflows", raw=1)),
        ("include_credentials", lambda: client.spec(include_credentials="yes")),
        ("include_raw", lambda: batch.results(include_raw="yes")),
        ("consumer", lambda: batch.results(consumer=5)),
        ("include_raw", lambda: batch.records(include_raw=1)),
        ("ids", lambda: batch.accept("not-a-list")),
        ("ids", lambda: batch.accept([1, 2])),
        ("ids", lambda: batch.reject(5)),
        ("reason", lambda: batch.reject(["a"], reason=5)),
        ("timeout", lambda: batch.wait(timeout="soon")),
        ("poll_interval", lambda: batch.wait(timeout=1, poll_interval=None)),
        ("seed", lambda: lp.sandbox.start("alegion", seed=-1)),
        ("port", lambda: lp.sandbox.start("alegion", port=70_000)),
        ("complete_after", lambda: lp.sandbox.start("alegion", complete_after="1")),
        ("track_pids", lambda: lp.sandbox.start("alegion", track_pids="yes")),
        ("faults", lambda: lp.sandbox.start("alegion", faults={1: 0.5})),
        ("rate_limit", lambda: lp.sandbox.start("alegion", faults={"rate_limit": "often"})),
    ]


def test_arguments_of_the_wrong_type_or_out_of_range_are_invalid_input(sandbox, client, batch, capfd):
    before = sent(sandbox)
    failures = []
    for field, call in wrong_arguments(sandbox, client, batch):
        try:
            call()
        except lp.InvalidInput as e:
            if e.field != field or not isinstance(e, ValueError):
                failures.append(f"{field}: InvalidInput with field {e.field!r}: {e}")
        except BaseException as e:  # noqa: BLE001 - the point is to report whatever escaped
            failures.append(f"{field}: {type(e).__name__}: {e}")
        else:
            failures.append(f"{field}: accepted")
    assert failures == [], "\n".join(failures)
    assert sent(sandbox) == before
    assert "panicked" not in capfd.readouterr().err


def test_a_results_file_path_that_is_not_a_path_is_invalid_input(batch):
    # Not in the list above: results() starts reading the first page at once, so a request may be under way.
    invalid(lambda: batch.results().to_jsonl(5), "path")


def test_wrong_arguments_of_async_methods_are_invalid_input(sandbox, batch):
    async def go() -> list[str]:
        client = lp.AsyncClient("alegion", **sandbox_args(sandbox))
        b = await client.batch(batch.id)
        calls = [
            ("key", lambda: b.upload([{"k": "a"}], key=5)),
            ("on_error", lambda: b.upload([{"k": "a"}], key="k", on_error=None)),
            ("name", lambda: client.create_batch(5)),
            ("id", lambda: client.batch(5)),
            ("timeout", lambda: b.wait(timeout="x")),
            ("include_raw", lambda: b.results(include_raw="x")),
            ("ids", lambda: b.accept("abc")),
            ("method", lambda: client.request(5, "/x")),
        ]
        failures = []
        for field, call in calls:
            try:
                awaitable = call()
                if asyncio.iscoroutine(awaitable) or isinstance(awaitable, asyncio.Future):
                    await awaitable
            except lp.InvalidInput as e:
                if e.field != field:
                    failures.append(f"{field}: field {e.field!r}")
            except BaseException as e:  # noqa: BLE001
                failures.append(f"{field}: {type(e).__name__}: {e}")
            else:
                failures.append(f"{field}: accepted")
        return failures

    assert asyncio.run(go()) == []


def test_good_arguments_of_other_numeric_types_still_work(sandbox, batch):
    np = pytest.importorskip("numpy")
    # ints for seconds, numpy numbers for counts and seconds: what a config file or a DataFrame gives.
    c = sandbox.client(timeout=np.float64(20), max_retries=np.int64(3), rate_limit=100)
    assert c.spec().timeout == 20.0 and c.spec().max_retries == 3
    assert batch.wait(timeout=np.int32(30), poll_interval=1) is not None
    spec = lp.ClientSpec("alegion", timeout=5, max_retries=0)
    assert spec.replace(timeout=7).timeout == 7.0


def test_an_upload_chunk_setting_that_is_not_a_number_is_invalid_input(batch, quiet, monkeypatch):
    monkeypatch.setattr(lp.config, "upload_chunk", "lots")
    invalid(lambda: batch.upload(iter([{"k": "a"}]), key="k"), "upload_chunk")


def test_spark_style_string_options_that_are_not_numbers_are_invalid_input():
    from labelport import _distributed

    invalid(lambda: _distributed.spec_from_options({"vendor": "alegion", "timeout": "soon"}), "timeout")
    invalid(lambda: _distributed.spec_from_options({"vendor": "alegion", "max_retries": "x"}), "max_retries")
    invalid(lambda: _distributed.spec_from_options({"project": "p"}), "vendor")
    assert _distributed.spec_from_options({"vendor": "alegion", "timeout": "12.5"}).timeout == 12.5


def test_limits_are_named_in_the_message():
    err = invalid(lambda: lp.ClientSpec("alegion", max_retries=101), "max_retries")
    assert "100" in str(err)
    err = invalid(lambda: lp.ClientSpec("alegion", timeout=1e300), "timeout")
    assert "31536000" in str(err) or "a year" in str(err)


def test_the_errors_are_still_value_errors_and_labelport_errors():
    err = invalid(lambda: lp.Client(123), "vendor")
    assert isinstance(err, lp.LabelportError) and isinstance(err, ValueError)
    assert err.vendor is None and "vendor must be a string, not int" in str(err)
