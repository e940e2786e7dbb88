"""Picklable clients and batches: a worker process rebuilds them from a small spec, with credentials from its own
environment unless the user chose to ship them (``client.spec(include_credentials=True)``)."""

from __future__ import annotations

import multiprocessing
import operator
import os
import pickle
import subprocess
import sys
import uuid

import labelport as lp
import pytest
from labelport import _distributed


def _env(sb: lp.sandbox.Sandbox) -> dict[str, str]:
    return {f"LABELPORT_ALEGION_{k.upper()}": v for k, v in sb.credentials.items()}


def test_pickles_hold_no_secret_unless_asked(sandbox, client):
    secret = sandbox.credentials["password"].encode()
    batch = client.create_batch(f"pickle-{uuid.uuid4().hex[:8]}")
    for obj in (client, batch, client.spec(), lp.AsyncClient("alegion", **_client_args(sandbox))):
        data = pickle.dumps(obj)
        assert secret not in data, type(obj)
        assert sandbox.url.encode() in data  # the spec travels: base URL, project
    shipped = client.spec(include_credentials=True)
    assert shipped.credential_names == ["password", "username"]
    assert secret in pickle.dumps(shipped)
    assert "password=" not in repr(shipped) and sandbox.credentials["password"] not in repr(shipped)
    assert pickle.loads(pickle.dumps(shipped)) == shipped
    # A spec with credentials rebuilds anywhere, even with an empty environment.
    rebuilt = pickle.loads(pickle.dumps(shipped)).client()
    assert rebuilt.batch(batch.id).id == batch.id


def _client_args(sb: lp.sandbox.Sandbox) -> dict[str, str]:
    return {"project": sb.project, "base_url": sb.url, **sb.credentials}


def test_spec_fields_and_replace(sandbox):
    spec = lp.ClientSpec("alegion", sandbox.project, base_url=sandbox.url, rate_limit=10.0, max_retries=2)
    assert (spec.vendor, spec.project, spec.base_url, spec.rate_limit, spec.max_retries) == (
        "alegion",
        sandbox.project,
        sandbox.url,
        10.0,
        2,
    )
    assert spec.credential_names == []
    assert spec.replace(rate_limit=2.5).rate_limit == 2.5
    assert spec.rate_limit == 10.0
    with pytest.raises(lp.InvalidInput, match="api_key"):
        lp.ClientSpec("alegion", api_key="x")
    with pytest.raises(lp.InvalidInput, match="unknown vendor"):
        lp.ClientSpec("nope")
    client = lp.Client("alegion", rate_limit=4.0, **_client_args(sandbox))
    assert client.spec().rate_limit == 4.0
    assert client.spec().replace(rate_limit=None).rate_limit is None


def test_a_pickled_batch_works_in_a_spawn_child_with_credentials_from_its_environment(
    sandbox, client, monkeypatch
):
    batch = client.create_batch(f"spawn-{uuid.uuid4().hex[:8]}")
    for name, value in _env(sandbox).items():
        monkeypatch.setenv(name, value)
    records = [{"k": f"spawn-{i}", "n": i} for i in range(300)]
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(1) as pool:
        # The batch (and its client) are pickled to the child, which uploads and reports its process id.
        counts = pool.apply(_distributed.upload_chunks, (batch, [records[:200], records[200:]], "k"))
        # A client pickled to the child creates a batch there; the Batch comes back pickled the same way.
        made = pool.apply(operator.methodcaller("create_batch", f"child-{batch.name}"), (client,))
        again = pool.apply(_distributed.upload_chunks, (batch, [records], "k"))
    assert counts["pid"] != os.getpid()
    assert (counts["sent"], counts["skipped"], counts["total"]) == (300, 0, 300)
    assert (again["sent"], again["skipped"]) == (0, 300)
    assert isinstance(made, lp.Batch) and made.name == f"child-{batch.name}"
    assert client.batch(made.id).id == made.id
    assert len(batch.results().to_list()) == 300


def test_without_credentials_in_the_environment_the_child_says_where_to_put_them(sandbox, client):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABELPORT_")}
    code = (
        "import pickle, sys, labelport as lp\n"
        "try:\n"
        "    pickle.loads(sys.stdin.buffer.read())\n"
        "except lp.AuthError as e:\n"
        "    print(e)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], input=pickle.dumps(client), capture_output=True, env=env, timeout=60
    )
    out = run.stdout.decode()
    assert run.returncode == 0, run.stderr.decode()
    assert "LABELPORT_ALEGION_" in out and "include_credentials=True" in out, out


def test_import_labelport_imports_neither_spark_nor_dask():
    code = "import sys, labelport; print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyspark', 'dask', 'distributed')))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"


def test_results_by_page_range_cover_every_result_once(client):
    batch = client.create_batch(f"pages-{uuid.uuid4().hex[:8]}")
    batch.upload([{"k": f"p-{i}"} for i in range(2_345)], key="k")
    assert batch.result_pages() == {"total": 2_345, "page_size": 1_000, "pages": 3}
    whole = [r["key"] for r in batch.results()]
    parts = [[r["key"] for r in batch.results(pages=p)] for p in [(0, 1), (1, 2), (2, None)]]
    assert [len(p) for p in parts] == [1_000, 1_000, 345]
    assert sum(parts, []) == whole
    assert [r["key"] for r in batch.results(pages=range(1, 3))] == whole[1_000:]
    assert batch.results(pages=(5, None)).to_list() == []
    assert [
        len(p) for p in map(lambda r: list(_distributed.read_range(batch, r)), _distributed.plan(batch, 2))
    ] == [
        2_000,
        345,
    ]
    with pytest.raises(lp.InvalidInput, match="pages"):
        batch.results(pages=(2, 1))
    with pytest.raises(lp.InvalidInput, match="since"):
        batch.results(since="2020-01-01T00:00:00Z", pages=(0, 1))


def test_vendors_without_page_ranges_read_in_one_partition():
    with lp.sandbox.start("sama", seed=3) as sb:
        batch = sb.client().create_batch(f"one-{uuid.uuid4().hex[:8]}")
        assert batch.result_pages() is None
        assert _distributed.plan(batch) == [None]
        with pytest.raises(lp.UnsupportedOperation):
            batch.results(pages=(0, 1))
