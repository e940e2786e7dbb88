"""Bake-offs against the sandboxes over real sockets: lp.fan_out sends each record exactly once to each batch
(under faults, and on a re-run), sandboxes started with accuracy= give the agreement and consensus their settings
imply, and turnaround orders two sandboxes by their complete_after."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import labelport as lp
import pytest

pytest.importorskip("pandas")

FAULTS = {"rate_limit": 0.05, "server_error": 0.1, "commit_then_fail": 0.1}


def four_se(p: float, n: int) -> float:
    """Four standard errors of a share p measured on n records."""
    return 4 * math.sqrt(p * (1 - p) / n)


def test_fan_out_sends_each_record_once_per_batch_under_faults_and_on_rerun(lp_sandbox):
    alegion = lp_sandbox("alegion", faults=FAULTS, seed=3)
    sama = lp_sandbox("sama", faults=FAULTS, seed=4)
    records, key = lp.sandbox.sample_records("alegion", 60)
    ca, cs = alegion.client(), sama.client()
    batches = {
        "first": ca.create_batch("bake-off-1", exist_ok=True),
        "second": ca.create_batch("bake-off-2", exist_ok=True),  # the same vendor twice
        "sama": cs.create_batch("bake-off", exist_ok=True),
    }
    jobs = lp.fan_out(records, batches, key=key, progress=False)
    assert list(jobs) == ["first", "second", "sama"]
    for job in jobs.values():
        assert job.status()["done"] == 60
    faulted = [
        r
        for sb in (alegion, sama)
        for r, n in sb.stats()["requests"].items()
        if r.endswith((" 429", " 500", " 503"))
    ]
    assert faulted, "the faults never fired: this test would prove nothing"
    created_alegion = alegion.stats()["records_created"]
    assert alegion.stats()["records_total"] == 120
    assert sorted(Counter(created_alegion.values())) == [2]  # every key once in each of the two batches
    assert sama.stats()["records_total"] == 60
    for b in batches.values():
        assert b.status()["total"] == 60

    again = lp.fan_out(iter(records), batches, key=key, progress=False)  # a one-pass iterator, read once
    assert {n: j.status()["skipped"] for n, j in again.items()} == {"first": 60, "second": 60, "sama": 60}
    assert alegion.stats()["records_total"] == 120 and sama.stats()["records_total"] == 60


def test_a_failed_upload_is_raised_after_the_others_finish_and_a_rerun_sends_only_the_rest(lp_sandbox):
    alegion = lp_sandbox("alegion")
    sama = lp_sandbox("sama")
    records, key = lp.sandbox.sample_records("sama", 20)
    batches = {
        "alegion": alegion.client().create_batch("b", exist_ok=True),
        "sama": sama.client(max_retries=0).create_batch("b", exist_ok=True),
    }
    sama.inject(status=400, method="POST", times=50)
    with pytest.raises(lp.LabelportError) as e:
        lp.fan_out(records, batches, key=key, progress=False)
    summary = e.value.details["fan_out"]
    assert summary["alegion"] == "completed" and summary["sama"] != "completed"
    assert alegion.stats()["records_total"] == 20
    sama.clear_faults()
    jobs = lp.fan_out(records, batches, key=key, progress=False)
    assert jobs["alegion"].status()["skipped"] == 20
    assert alegion.stats()["records_total"] == 20 and sama.stats()["records_total"] == 20


def test_fan_out_refuses_what_it_cannot_do(lp_sandbox):
    sb = lp_sandbox("alegion")
    b = sb.client().create_batch("x", exist_ok=True)
    same = sb.client().batch(b.id)
    for batches, words in (
        ({}, "a dict of name"),
        ({"a": b, "b": same}, "are the same alegion batch"),
        ({"a": "batch"}, "must be a Batch"),
    ):
        with pytest.raises(lp.InvalidInput) as e:
            lp.fan_out([{"image_id": "1"}], batches, key="image_id")
        assert e.value.field == "batches" and words in str(e.value)
    assert sb.stats()["records_total"] == 0


@pytest.mark.parametrize(
    ("bad", "field"), [({"accuracy": 1.5}, "accuracy"), ({"accuracy": 0.5, "box_jitter": -0.1}, "box_jitter")]
)
def test_quality_settings_out_of_range_are_invalid_input(bad, field):
    with pytest.raises(lp.InvalidInput) as e:
        lp.sandbox.start("alegion", **bad)
    assert e.value.field == field


def consensus_accuracy(accuracies: list[float], k: int = 4) -> float:
    """P(the majority rule picks the truth) when source i is right with probability a_i and otherwise gives one of
    the k - 1 other classes, each equally likely; ties go to the earliest source (docs/compare.md)."""
    total = 0.0
    for labels in itertools.product(range(k), repeat=len(accuracies)):  # class 0 is the truth
        p = math.prod(a if c == 0 else (1 - a) / (k - 1) for a, c in zip(accuracies, labels, strict=True))
        counts = Counter(labels)
        top = max(counts.values())
        winner = next(c for c in labels if counts[c] == top)
        total += p * (winner == 0)
    return total


def test_accuracy_settings_give_the_agreement_and_consensus_they_imply(lp_sandbox):
    n = 400
    acc = {"alegion": 0.9, "sama": 0.75, "taskmonk": 0.6}
    records, key = lp.sandbox.sample_records("sama", n)
    sbs = {v: lp_sandbox(v, accuracy=a, box_jitter=0.02, seed=i) for i, (v, a) in enumerate(acc.items())}
    batches = {v: sb.client().create_batch("quality", exist_ok=True) for v, sb in sbs.items()}
    lp.fan_out(records, batches, key=key, progress=False)
    for b in batches.values():
        b.wait(timeout=60, poll_interval=0.2, progress=False)
    truth = {r[key]: t["label"] for r, t in zip(records, sbs["sama"].truth(records), strict=True)}
    assert set(truth.values()) <= set(lp.sandbox.TRUTH_CLASSES)

    cmp = lp.compare(batches, fields={"label": "category"})
    values = cmp.values("label")
    for v, a in acc.items():
        right = sum(values.loc[k, v] == t for k, t in truth.items()) / n
        assert abs(right - a) < four_se(a, n), (v, right)

    two = lp.compare({v: batches[v] for v in ("alegion", "sama")}, fields={"label": "category"})
    row = two.agreement().iloc[0]
    p = 0.9 * 0.75 + 0.1 * 0.25 / 3
    assert row["compared"] == n and abs(row["agreement"] - p) < four_se(p, n)
    # kappa with uniform true classes: (p - 1/4) / (1 - 1/4)
    assert abs(row["kappa"] - (p - 0.25) / 0.75) < four_se(p, n) / 0.75 + 0.02

    cons = cmp.consensus().set_index("key")
    right = sum(cons.loc[k, "value"] == t for k, t in truth.items()) / n
    expected = consensus_accuracy(list(acc.values()))
    assert abs(right - expected) < four_se(expected, n), (right, expected)
    assert right > acc["alegion"] - four_se(
        acc["alegion"], n
    )  # a majority of three does no worse than the best


def test_jittered_boxes_match_the_truth(lp_sandbox):
    n = 50
    records, key = lp.sandbox.sample_records("playment", n)
    alegion = lp_sandbox("alegion", accuracy=1.0, box_jitter=0.02)
    playment = lp_sandbox("playment", accuracy=1.0, box_jitter=0.02, seed=1)
    batches = {
        "alegion": alegion.client().create_batch("boxes", exist_ok=True),
        "playment": playment.client(rate_limit=0).create_batch("boxes", exist_ok=True),
    }
    lp.fan_out(records, batches, key=key, progress=False)
    for b in batches.values():
        b.wait(timeout=60, poll_interval=0.2, progress=False)
    fields = {
        "box": ({"alegion": "box", "playment": "annotations.rectangles.0"}, "box"),
        "label": ({"alegion": "label", "playment": "annotations.rectangles.0.label"}, "category"),
    }
    agreement = lp.compare(batches, fields=fields).agreement().set_index("field")
    assert agreement.loc["label", "agreement"] == 1.0
    # Sides of 0.2 or more, corners moved by at most 0.02 each: IoU at least (0.16 / 0.24) ** 2 = 0.44 in the
    # worst case, about 0.9 on average.
    assert agreement.loc["box", "compared"] == n
    assert 0.8 < agreement.loc["box", "mean_iou"] < 1.0
    assert agreement.loc["box", "agreement"] > 0.95


def test_turnaround_orders_sandboxes_by_complete_after(lp_sandbox):
    fast = lp_sandbox("alegion", complete_after=5.0)
    slow = lp_sandbox("sama", complete_after=20.0)
    records, key = lp.sandbox.sample_records("sama", 30)
    batches = {
        "fast": fast.client().create_batch("t", exist_ok=True),
        "slow": slow.client().create_batch("t", exist_ok=True),
    }
    lp.fan_out(records, batches, key=key, progress=False)
    for sb in (fast, slow):
        sb.advance(60)
    for b in batches.values():
        b.wait(timeout=60, poll_interval=0.2, progress=False)
    t = lp.compare(batches, fields={"label": "category"}).turnaround()
    assert t.loc["fast", "timed"] == 30 and t.loc["slow", "timed"] == 30
    assert t.loc["fast", "median_s"] == pytest.approx(5.0, abs=1.0)
    assert t.loc["slow", "median_s"] == pytest.approx(20.0, abs=1.0)
    assert t.loc["fast", "p90_s"] < t.loc["slow", "median_s"]
    assert (t["exception_rate"] == 0).all()


def test_afan_out_uploads_to_async_batches_at_once_and_once(lp_sandbox):
    import asyncio

    sbs = [lp_sandbox("alegion"), lp_sandbox("sama")]
    records, key = lp.sandbox.sample_records("alegion", 30)

    async def main():
        batches = {}
        for sb in sbs:
            client = lp.AsyncClient(sb.vendor, project=sb.project, base_url=sb.url, **sb.credentials)
            batches[sb.vendor] = await client.create_batch("async", exist_ok=True)
        with pytest.raises(lp.InvalidInput, match="use lp.afan_out"):
            lp.fan_out(records, batches, key=key)
        jobs = await lp.afan_out(records, batches, key=key, progress=False)
        again = await lp.afan_out(records, batches, key=key, progress=False)
        return (
            {n: (await j.status())["done"] for n, j in jobs.items()},
            {n: (await j.status())["skipped"] for n, j in again.items()},
        )

    done, skipped = asyncio.run(main())
    assert done == {"alegion": 30, "sama": 30} and skipped == {"alegion": 30, "sama": 30}
    assert [sb.stats()["records_total"] for sb in sbs] == [30, 30]
