"""The official `playment==1.0.5` package pointed at the sandbox: proof that the simulator speaks Playment.

Install with ``pip install -r tests/witness-requirements/playment.txt``. The package installs top-level ``tests``
and ``examples`` packages; our pytest runs with ``--import-mode=importlib`` so they never shadow ours. Its URLs are
bound into ``playment.client_handler.urls`` at import time: that namedtuple is what we replace.
"""

from __future__ import annotations

import contextlib
import io
import uuid

import labelport as lp
import playment  # a missing witness fails the run: pip install -r tests/witness-requirements/playment.txt
import playment.client_handler as handler
import pytest
from playment.exception import PlaymentException


@pytest.fixture
def sdk(monkeypatch):
    with lp.sandbox.start("playment", seed=17) as sb:
        u = sb.url
        urls = handler.urls._replace(
            job_creation=u + "/projectsvc/projects/{}/jobs",
            batch_creation=u + "/v1/project/{}/batch",
            project_summary=u + "/v0/projects/{}/stats",
            project_batch_details=u + "/v0/projects/{}/details",
            batch_summary=u + "/v0/projects/{}/batch/{}",
            job_result=u + "/v0/projects/{}/jobs/{}",
        )
        monkeypatch.setattr(handler, "urls", urls)
        yield sb, playment.Client(sb.credentials["api_key"])


def test_the_official_package_agrees_with_the_sandbox_and_labelport(sdk):
    sb, client = sdk
    project = sb.project
    batch = client.create_batch(name="witness", label="witness", description="d", project_id=project)
    uuid.UUID(batch.id)
    jobs = []
    for i in range(130):
        data = playment.ImageData(image_url=f"https://example.com/a/{i}.jpg")
        job = client.create_job(
            reference_id=f"w{i:03d}", tag="t", data=data, project_id=project, batch_id=batch.id
        )
        jobs.append(job)
    assert all(uuid.UUID(j.id) for j in jobs)

    result = client.get_job_result(project_id=project, job_id=jobs[0].id)
    assert result.status == "completed"
    assert result.reference_id == "w000"
    assert result.result.startswith(sb.url)

    with pytest.raises(PlaymentException) as e:
        client.create_job(
            reference_id="w000",
            tag="t",
            data=playment.ImageData(image_url="https://example.com/a/x.jpg"),
            project_id=project,
            batch_id=batch.id,
        )
    assert e.value.code == "FS_0001"

    first = client.get_batch_summary(batch_id=batch.id, project_id=project)
    assert len(first.jobs) == 100 and first.next_page_token
    second = client.get_batch_summary(
        batch_id=batch.id, project_id=project, next_page_token=first.next_page_token
    )
    assert len(second.jobs) == 30 and second.next_page_token == ""
    sdk_keys = [j.reference_id for j in first.jobs + second.jobs]

    summary = client.get_project_batches_summary(project_id=project)
    ours = [b for b in summary.batches if b.id == batch.id][0]
    assert ours.total_jobs == 130 and ours.completed_jobs == 130
    stats = client.get_project_summary(project_id=project)
    assert stats.total_jobs == 130

    with pytest.raises(PlaymentException) as e:
        playment.Client("wrong-key").get_project_summary(project_id=project)
    assert e.value.code == "unauthorized_request"

    # labelport sees the same batch, the same jobs, and a re-upload of the same keys creates nothing.
    with sb.client() as c:
        b = c.create_batch("witness", exist_ok=True)
        assert b.id == batch.id
        assert sorted(r["key"] for r in b.records().to_list()) == sorted(sdk_keys)
        assert b.status()["completed"] == 130
        results = {r["key"]: r for r in b.results().to_list()}
        assert results["w000"]["id"] == jobs[0].id
        assert results["w000"]["input"]["image_url"] == "https://example.com/a/0.jpg"
        job = b.upload(
            [{"k": f"w{i:03d}", "image_url": "https://example.com/a/x.jpg"} for i in range(131)], key="k"
        )
        assert job.status()["skipped"] == 130
    assert set(sb.stats()["records_created"].values()) == {1}
    assert len(sb.stats()["records_created"]) == 131


def test_the_packages_blind_retry_meets_the_duplicate_after_a_commit_then_fail(sdk):
    sb, client = sdk
    sb.inject(status=500, method="POST", path="/jobs", commit=True)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(PlaymentException) as e:
        client.create_job(
            reference_id="retry",
            tag="t",
            data=playment.ImageData(image_url="https://example.com/a/r.jpg"),
            project_id=sb.project,
        )
    # The job exists once, but the package reports a failure: the hazard labelport's reconciliation avoids.
    assert e.value.code == "FS_0001"
    assert "retrying" in out.getvalue()
    assert sb.stats()["records_created"] == {"retry": 1}
