"""A user's pipeline test: the labelport pytest plugin gives ``lp_sandbox`` with no conftest."""

import os

import labelport as lp
import pipeline
import pytest

RECORDS = [{"image_id": f"img-{i}", "image_url": f"https://example.com/{i}.jpg"} for i in range(20)]


def test_pipeline_labels_every_record(lp_sandbox):
    sb = lp_sandbox("sama", complete_after=0.2, env=True)
    labels = pipeline.run(RECORDS, "nightly")
    assert sorted(labels) == sorted(r["image_id"] for r in RECORDS)
    assert sb.stats()["records_total"] == 20


def test_pipeline_survives_rate_limits_and_reruns(lp_sandbox):
    sb = lp_sandbox("sama", faults={"rate_limit": 0.2}, seed=7, env=True)
    pipeline.run(RECORDS, "nightly")
    pipeline.run(RECORDS, "nightly")  # re-run: nothing sent twice
    assert sb.stats()["records_total"] == 20


def test_environment_is_set_only_when_asked(lp_sandbox):
    sb = lp_sandbox("sama")
    assert "LABELPORT_SAMA_BASE_URL" not in os.environ
    assert sb.client().project == sb.project


def test_a_wrong_label_fails_this_test(lp_sandbox):
    lp_sandbox("sama", env=True)
    labels = pipeline.run(RECORDS[:1], "one")
    assert labels == {"img-0": "EXPECTED-TO-FAIL"}


def test_sandboxes_stop_after_the_test(lp_sandbox):
    sb = lp_sandbox("alegion")
    pytest.shared_url = sb.url  # type: ignore[attr-defined]


def test_the_previous_sandbox_is_gone():
    with pytest.raises(lp.LabelportError):
        lp.Client(
            "alegion", project="p", base_url=pytest.shared_url, username="u", password="p", max_retries=0
        ).batches()  # type: ignore[attr-defined]
