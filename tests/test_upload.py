"""Uploads: idempotent by key, a stable content hash without one, and bad records refused before anything is sent."""

from __future__ import annotations

import math

import labelport as lp
import pytest

IMPORT = "POST /api/v1/batches/{batchId}/records/import"


def test_rerunning_the_same_upload_sends_nothing_twice(batch, make_records, counter, created):
    records = make_records(300)
    first = batch.upload(records, key="image_id").wait(timeout=60)
    assert first["total"] == 300
    assert first["skipped"] == 0

    counter.start()
    job = batch.upload(records, key="image_id")
    job.wait(timeout=60)
    assert job.status()["skipped"] == 300
    assert counter.since_start(IMPORT) == 0

    per_key = created()
    assert [per_key.get(r["image_id"]) for r in records] == [1] * 300
    assert batch.status()["total"] == 300


def test_an_overlapping_upload_sends_only_the_new_records(batch, make_records, counter, created):
    records = make_records(300)
    batch.upload(records[:100], key="image_id").wait(timeout=60)

    counter.start()
    job = batch.upload(records, key="image_id")
    status = job.wait(timeout=60)
    assert status["skipped"] == 100
    assert counter.since_start(IMPORT, 200) == 1  # the 200 new records fit one import call

    per_key = created()
    assert [per_key.get(r["image_id"]) for r in records] == [1] * 300
    assert batch.status()["total"] == 300


def test_upload_without_key_uses_a_stable_content_hash(client, unique, counter):
    records = [
        {
            "caption": f"{unique} photo {i}",
            "url": f"https://example.com/{unique}/{i}.jpg",
        }
        for i in range(50)
    ]

    first = client.create_batch(f"nokey-a-{unique}")
    first.upload(records).wait(timeout=60)
    counter.start()
    again = first.upload(records)
    again.wait(timeout=60)
    assert again.status()["skipped"] == 50
    assert counter.since_start(IMPORT) == 0
    assert first.status()["total"] == 50

    keys = sorted(r["key"] for r in first.records().to_list())
    assert len(keys) == 50
    assert len(set(keys)) == 50
    assert all(isinstance(k, str) and k for k in keys)

    # The same content gives the same keys anywhere: a hash of the record, not a random id.
    second = client.create_batch(f"nokey-b-{unique}")
    second.upload(records).wait(timeout=60)
    assert sorted(r["key"] for r in second.records().to_list()) == keys


@pytest.mark.parametrize("bad", ["just a string", 42, None, ["a", "list"], ("a", "tuple")], ids=repr)
def test_a_record_that_is_not_a_dict_is_invalid_input_before_anything_is_sent(batch, counter, bad):
    records = [{"image_id": "ok-1"}, bad, {"image_id": "ok-2"}]
    counter.start()
    with pytest.raises(lp.InvalidInput) as info:
        batch.upload(records, key="image_id")
    assert isinstance(info.value, ValueError)
    assert counter.since_start(IMPORT) == 0
    assert batch.status()["total"] == 0


def test_a_bad_record_in_a_later_chunk_still_stops_everything_before_sending(batch, make_records, counter):
    records: list[object] = list(make_records(1500))
    records.insert(1200, "not a record")
    counter.start()
    with pytest.raises(lp.InvalidInput):
        batch.upload(records, key="image_id")
    assert counter.since_start(IMPORT) == 0
    assert batch.status()["total"] == 0


def test_a_record_without_the_key_field_is_invalid_input(batch, make_records, counter):
    records = make_records(3)
    del records[1]["image_id"]
    counter.start()
    with pytest.raises(lp.InvalidInput) as info:
        batch.upload(records, key="image_id")
    assert info.value.field == "image_id"
    assert counter.since_start(IMPORT) == 0


def test_nan_in_a_record_is_invalid_input(batch, make_records, counter):
    records = make_records(3)
    records[2]["score"] = math.nan
    counter.start()
    with pytest.raises(lp.InvalidInput):
        batch.upload(records, key="image_id")
    assert counter.since_start(IMPORT) == 0
