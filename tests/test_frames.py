"""DataFrames in and out, against the sandbox: pandas, polars and Arrow inputs and files, values converted on
purpose (and plain dicts kept strict), chunked streams, results as frames and files, the join back on the key, and
an ImportError naming the extra when a library is missing."""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import json
import sys

import labelport as lp
import pytest

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")
pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

IMPORT = "POST /api/v1/batches/{batchId}/records/import"


@pytest.fixture(autouse=True)
def quiet() -> None:
    lp.config.progress = False
    yield
    lp.config.progress = True


def stored_inputs(batch: lp.Batch) -> dict[str, dict]:
    """What the vendor holds for each record, by key."""
    return {r["key"]: r["input"] for r in batch.records()}


def odd_frame(unique: str):
    """A pandas frame with every kind of value JSON has no word for."""
    return pd.DataFrame(
        {
            "image_id": [f"{unique}-{i}" for i in range(4)],
            "n": np.array([1, 2, 3, 4], dtype=np.int64),
            "score": [0.5, np.nan, 2.0, 3.25],
            "seen": pd.to_datetime(
                ["2026-01-02 03:04:05", None, "2026-01-03 00:00:00", "2026-01-04 00:00:00"]
            ),
            "seen_tz": pd.to_datetime(["2026-01-02T03:04:05+02:00"] * 4, utc=True),
            "price": [decimal.Decimal("1.10"), None, decimal.Decimal("2"), decimal.Decimal("NaN")],
            "day": [dt.date(2026, 1, 1)] * 4,
            "flag": pd.array([True, None, False, True], dtype="boolean"),
            "count": pd.array([1, None, 3, 4], dtype="Int64"),
            "kind": pd.Categorical(["a", "b", "a", None]),
            "tags": [["x", "y"], [], None, ["z"]],
        }
    )


def test_a_pandas_frame_is_sent_with_values_converted_on_purpose(batch, unique):
    df = odd_frame(unique)
    job = batch.upload(df, key="image_id")
    assert job.wait(timeout=60)["done"] == 4
    got = stored_inputs(batch)
    first, second, fourth = got[f"{unique}-0"], got[f"{unique}-1"], got[f"{unique}-3"]
    assert first == {
        "image_id": f"{unique}-0",
        "n": 1,
        "score": 0.5,
        "seen": "2026-01-02T03:04:05Z",
        "seen_tz": "2026-01-02T01:04:05Z",
        "price": "1.10",
        "day": "2026-01-01",
        "flag": True,
        "count": 1,
        "kind": "a",
        "tags": ["x", "y"],
    }
    assert (second["score"], second["seen"], second["price"], second["flag"], second["count"]) == (None,) * 5
    assert second["tags"] == []
    assert fourth["price"] is None and fourth["kind"] is None  # Decimal NaN and a missing category


def test_a_nan_in_a_plain_dict_is_still_refused(batch, unique, counter):
    counter.start()
    with pytest.raises(lp.InvalidInput) as err:
        batch.upload([{"k": f"{unique}-a", "score": float("nan")}], key="k")
    assert err.value.field == "score"
    # The same value in an iterator of dicts (read in chunks) is refused too: no conversion outside frames.
    with pytest.raises(lp.InvalidInput):
        batch.upload(iter([{"k": f"{unique}-b", "score": float("nan")}]), key="k")
    assert counter.since_start(IMPORT) == 0


def test_an_infinity_in_a_frame_is_refused_naming_the_record_and_field(batch, unique, counter):
    df = pd.DataFrame({"k": [f"{unique}-0", f"{unique}-1"], "score": [1.0, np.inf]})
    counter.start()
    with pytest.raises(lp.InvalidInput) as err:
        batch.upload(df, key="k")
    assert "record #1" in str(err.value) and err.value.field == "score"
    assert counter.since_start(IMPORT) == 0


def test_a_polars_frame_and_arrow_data_are_sent(client, unique):
    when = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    frame = pl.DataFrame(
        {
            "k": [f"{unique}-p{i}" for i in range(3)],
            "x": [1.5, float("nan"), None],
            "when": [when, None, when],
            "price": [decimal.Decimal("1.25")] * 3,
        }
    )
    b1 = client.create_batch(f"polars-{unique}")
    assert b1.upload(frame, key="k").wait(timeout=60)["done"] == 3
    got = stored_inputs(b1)
    assert got[f"{unique}-p0"] == {
        "k": f"{unique}-p0",
        "x": 1.5,
        "when": "2026-05-06T07:08:09Z",
        "price": "1.25",
    }
    assert got[f"{unique}-p1"]["x"] is None and got[f"{unique}-p2"]["x"] is None
    assert got[f"{unique}-p1"]["when"] is None

    table = frame.to_arrow()
    b2 = client.create_batch(f"arrow-{unique}")
    assert b2.upload(table, key="k").wait(timeout=60)["done"] == 3
    assert stored_inputs(b2) == got

    b3 = client.create_batch(f"reader-{unique}")
    reader = pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=1))
    assert b3.upload(reader, key="k").wait(timeout=60)["done"] == 3
    assert stored_inputs(b3) == got


def test_files_are_read_by_their_suffix(client, unique, tmp_path):
    records = [{"k": f"{unique}-f{i}", "caption": f"car {i}", "n": i} for i in range(5)]
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records))
    csv_path = tmp_path / "in.csv"
    pd.DataFrame(records).to_csv(csv_path, index=False)
    parquet = tmp_path / "in.parquet"
    pd.DataFrame(records).to_parquet(parquet)

    for path, expected in [
        (jsonl, records),
        (str(parquet), records),
        (csv_path, [{**r, "n": str(r["n"])} for r in records]),  # CSV has no types: values stay text
    ]:
        b = client.create_batch(f"file-{path.__class__.__name__}-{str(path)[-7:]}-{unique}")
        assert b.upload(path, key="k").wait(timeout=60)["done"] == 5
        assert sorted(stored_inputs(b).values(), key=lambda r: r["k"]) == expected, path


def test_a_bad_file_is_refused_naming_the_line(batch, tmp_path, unique, counter):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"k": f"{unique}-0"}) + "\n" + '{"k": "x", "v": NaN}\n')
    counter.start()
    with pytest.raises(lp.InvalidInput, match="line 2"):
        batch.upload(path, key="k")
    with pytest.raises(lp.InvalidInput, match="no such file"):
        batch.upload(tmp_path / "missing.parquet", key="k")
    with pytest.raises(lp.InvalidInput, match="not a string"):
        batch.upload("image_id,caption\nimg-1,a car", key="k")
    assert counter.since_start(IMPORT) == 0


def test_streams_are_sent_in_chunks_each_checked_before_it_is_sent(batch, unique, counter, monkeypatch):
    monkeypatch.setattr(lp.config, "upload_chunk", 100)

    def records(n: int, bad_at: int | None = None):
        for i in range(n):
            yield {"k": f"{unique}-{i:04d}", "v": float("nan") if i == bad_at else i}

    counter.start()
    with pytest.raises(lp.InvalidInput) as err:
        batch.upload(records(350, bad_at=250), key="k")
    assert "record #250" in str(err.value)
    # The first two chunks went; the chunk holding the bad record, and everything after it, did not.
    assert batch.status()["total"] == 200

    job = batch.upload(records(350), key="k")
    assert job.status() == {"state": "completed", "done": 350, "total": 350, "failed": 0, "skipped": 200}
    assert batch.status()["total"] == 350

    with pytest.raises(lp.DuplicateRecord, match="records #5 and #205"):
        batch.upload(
            (r if i != 205 else {**r, "k": f"{unique}-0005"} for i, r in enumerate(records(300))), key="k"
        )


def test_results_come_back_as_frames_and_join_on_the_key(batch, unique, tmp_path):
    df = pd.DataFrame(
        {"image_id": np.arange(1000, 1040), "caption": [f"{unique} car {i}" for i in range(40)]}
    )
    batch.upload(df, key="image_id").wait(timeout=60)
    batch.wait(timeout=60, poll_interval=0.1, progress=False)

    flat = batch.results().to_pandas(flatten=True, key_type=df["image_id"].dtype)
    assert flat.shape == (40, 7 + 2 + 2)
    assert list(flat.columns[:7]) == [
        "id",
        "batch_id",
        "key",
        "status",
        "created_at",
        "completed_at",
        "vendor",
    ]
    assert {"input.image_id", "input.caption", "output.label", "output.confidence"} <= set(flat.columns)
    assert str(flat["completed_at"].dtype) == "datetime64[us, UTC]"
    joined = df.merge(flat, left_on="image_id", right_on="key")
    assert len(joined) == 40 and (joined["caption"] == joined["input.caption"]).all()

    nested = batch.results().to_pandas()
    assert nested.shape == (40, 9) and isinstance(nested["output"][0], dict)

    polars = batch.results().to_polars(flatten=True, key_type=pl.Int64)
    assert polars.shape == (40, 11) and polars["key"].dtype == pl.Int64
    assert sorted(polars["key"].to_list()) == list(range(1000, 1040))

    table = batch.results().to_arrow(flatten=True)
    assert table.num_rows == 40 and table.schema.field("key").type == pa.string()
    assert sorted(table.column("output.label").to_pylist()) == sorted(flat["output.label"])

    assert batch.results().to_parquet(tmp_path / "r.parquet") == 40
    back = pq.read_table(tmp_path / "r.parquet")
    assert back.num_rows == 40 and back.schema.names == list(flat.columns)
    assert back.schema.field("completed_at").type == pa.timestamp("us", tz="UTC")

    assert batch.results().to_csv(tmp_path / "r.csv") == 40
    csv_back = pd.read_csv(tmp_path / "r.csv")
    assert csv_back.shape == (40, 11) and sorted(csv_back["key"]) == list(range(1000, 1040))


def test_columns_that_appear_late_or_mix_types_are_kept(batch, unique, tmp_path):
    """A later output field that the first results lack still gets its column, in the frame and in the files."""
    records = [{"k": f"{unique}-{i}", "extra": {"note": "x"} if i % 2 else i} for i in range(6)]
    batch.upload(records, key="k").wait(timeout=60)
    batch.wait(timeout=60, poll_interval=0.1, progress=False)
    frame = batch.results().to_pandas(flatten=True)
    assert {"input.extra", "input.extra.note"} <= set(frame.columns)
    assert batch.results().to_parquet(tmp_path / "x.parquet") == 6
    names = pq.read_table(tmp_path / "x.parquet").schema.names
    assert "input.extra.note" in names and "input.extra" in names


def test_the_async_stream_gives_frames_too(sandbox, unique):
    async def main():
        async with lp.AsyncClient(
            "alegion", project=sandbox.project, base_url=sandbox.url, **sandbox.credentials
        ) as c:
            b = await c.create_batch(f"async-frames-{unique}")
            job = await b.upload(pd.DataFrame({"k": [f"{unique}-{i}" for i in range(7)]}), key="k")
            await job.wait(timeout=60)
            await b.wait(timeout=60, poll_interval=0.1, progress=False)
            return await b.results().to_pandas(flatten=True), await b.results().to_polars()

    frame, polars = asyncio.run(main())
    assert frame.shape[0] == 7 and "input.k" in frame.columns
    assert polars.shape == (7, 9)


@pytest.mark.parametrize(
    ("missing", "call", "extra"),
    [
        ("pandas", lambda b, p: b.results().to_pandas(), "pandas"),
        ("polars", lambda b, p: b.results().to_polars(), "polars"),
        ("pyarrow", lambda b, p: b.results().to_arrow(), "arrow"),
        ("pyarrow", lambda b, p: b.results().to_parquet(p / "x.parquet"), "arrow"),
        ("pyarrow", lambda b, p: b.upload(p / "in.parquet", key="k"), "arrow"),
    ],
)
def test_a_missing_library_names_the_extra_to_install(batch, tmp_path, monkeypatch, missing, call, extra):
    pd.DataFrame({"k": ["a"]}).to_parquet(tmp_path / "in.parquet")
    for name in list(sys.modules):
        if name == missing or name.startswith(missing + "."):
            monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=rf'pip install "labelport\[{extra}\]"'):
        call(batch, tmp_path)


def test_a_vendor_with_import_jobs_takes_frames_in_chunks_too(monkeypatch):
    """TaskMonk imports run as jobs at the vendor: a chunked upload waits for each part before the next one, and
    the parts add up to one job."""
    monkeypatch.setattr(lp.config, "upload_chunk", 50)
    df = pd.DataFrame({"image_id": np.arange(120), "caption": [f"car {i}" for i in range(120)]})
    with lp.sandbox.start("taskmonk", seed=2) as sb, sb.client() as client:
        batch = client.create_batch("frames-in-chunks")
        job = batch.upload(df, key="image_id")
        status = job.wait(timeout=120)
        assert (status["state"], status["total"], status["done"], status["failed"]) == (
            "completed",
            120,
            120,
            0,
        )
        assert batch.status()["total"] == 120

        one = client.create_batch("frames-in-one")
        job = one.upload(df.head(30), key="image_id")
        assert job.wait(timeout=120)["done"] == 30
