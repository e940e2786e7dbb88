"""The Client: the request escape hatch, credentials (keywords and environment), secrets, plain HTTP."""

from __future__ import annotations

import os

import labelport as lp
import pytest

RECORDS = "GET /api/v1/batches/{batchId}/records"
ENV = ("USERNAME", "PASSWORD", "PROJECT", "BASE_URL")


@pytest.fixture
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(f"LABELPORT_ALEGION_{name}", raising=False)
    return monkeypatch


def test_request_returns_the_decoded_body(sandbox, client):
    workflows = client.request("GET", "/workflows")
    assert isinstance(workflows, list)
    assert sandbox.project in [w["id"] for w in workflows]
    # An absolute path under the API prefix means the same.
    assert client.request("GET", "/api/v1/workflows") == workflows


def test_request_paginate_iterates_items(sandbox, client):
    items = list(client.request("GET", "/workflows", paginate=True))
    assert all(isinstance(w, dict) for w in items)
    assert sandbox.project in [w["id"] for w in items]


def test_request_paginate_follows_every_page(client, batch, make_records, counter):
    batch.upload(make_records(250), key="image_id").wait(timeout=60)
    counter.start()
    items = list(
        client.request(
            "GET",
            f"/batches/{batch.id}/records",
            params={"pageSize": 100},
            paginate=True,
        )
    )
    assert len(items) == 250
    assert len({r["id"] for r in items}) == 250
    assert counter.since_start(RECORDS, 200) >= 3


def test_client_properties(sandbox, client):
    assert client.vendor == "alegion"
    assert client.project == sandbox.project
    assert client.base_url.rstrip("/") == sandbox.url.rstrip("/")


@pytest.mark.parametrize("field", ["password", "username"])
def test_bad_credentials_are_an_auth_error(sandbox, field):
    wrong = "wrong-Secret-9f3b2c"
    with pytest.raises(lp.AuthError) as info, sandbox.client(**{field: wrong}) as bad:
        bad.batches()
    assert wrong not in str(info.value)
    assert wrong not in repr(info.value)
    assert info.value.vendor == "alegion"


def test_credentials_from_the_environment(sandbox, clean_env):
    creds = sandbox.credentials
    clean_env.setenv("LABELPORT_ALEGION_USERNAME", creds["username"])
    clean_env.setenv("LABELPORT_ALEGION_PASSWORD", creds["password"])
    clean_env.setenv("LABELPORT_ALEGION_PROJECT", sandbox.project)
    clean_env.setenv("LABELPORT_ALEGION_BASE_URL", sandbox.url)
    with lp.Client("alegion") as c:
        assert c.project == sandbox.project
        assert c.base_url.rstrip("/") == sandbox.url.rstrip("/")
        assert sandbox.project in [w["id"] for w in c.request("GET", "/workflows")]


def test_keyword_arguments_win_over_the_environment(sandbox, clean_env):
    creds = sandbox.credentials
    clean_env.setenv("LABELPORT_ALEGION_USERNAME", creds["username"])
    clean_env.setenv("LABELPORT_ALEGION_PASSWORD", "wrong-from-env")
    clean_env.setenv("LABELPORT_ALEGION_PROJECT", sandbox.project)
    clean_env.setenv("LABELPORT_ALEGION_BASE_URL", sandbox.url)
    with lp.Client("alegion", password=creds["password"]) as c:
        c.batches()  # the keyword's right password wins
    with pytest.raises(lp.AuthError):
        list_batches(password="wrong-from-keyword")  # the keyword's wrong password wins too


def test_missing_credentials_are_a_labelport_error(sandbox, clean_env):
    with pytest.raises(lp.LabelportError) as info:
        list_batches(project=sandbox.project, base_url=sandbox.url, username="someone")
    assert "password" in str(info.value).lower()


def test_the_password_never_appears_in_reprs_or_errors(sandbox, unique):
    password = sandbox.credentials["password"]
    with sandbox.client() as c:
        b = c.create_batch(f"secret-{unique}")
        job = b.upload([{"image_id": "x"}], key="image_id")
        texts = [repr(c), str(c), repr(b), str(b), repr(job), str(job)]
        with pytest.raises(lp.LabelportError) as info:
            c.request("GET", "/batches/not-a-uuid")
        texts += [str(info.value), repr(info.value), repr(info.value.details)]
    assert "alegion" in repr(c)
    for text in texts:
        assert password not in text, text


def test_plain_http_to_a_remote_host_is_refused(sandbox):
    with pytest.raises(lp.InvalidInput) as info:
        list_batches(base_url="http://example.com", **creds_of(sandbox))
    assert sandbox.credentials["password"] not in str(info.value)


def test_allow_insecure_lets_plain_http_through(sandbox):
    # 192.0.2.1 is TEST-NET-1: never routed, so the call fails on the network, not on the scheme.
    with pytest.raises(lp.LabelportError) as info:
        list_batches(
            base_url="http://192.0.2.1:9",
            allow_insecure=True,
            timeout=1.0,
            max_retries=0,
            **creds_of(sandbox),
        )
    assert not isinstance(info.value, lp.InvalidInput)


def creds_of(sandbox):
    return {"project": sandbox.project, **sandbox.credentials}


def list_batches(**kwargs):
    """A Client for alegion built from ``kwargs`` (and the environment), used once."""
    with lp.Client("alegion", **kwargs) as c:
        return c.batches()


@pytest.mark.parametrize("track", [False, True])
def test_the_sandbox_counts_requests_per_process_only_when_asked(track):
    with lp.sandbox.start("alegion", track_pids=track) as sb, sb.client() as c:
        c.batches()
        by_pid = sb.stats()["requests_by_pid"]
    if track:
        assert set(by_pid) == {str(os.getpid())} and sum(by_pid.values()) >= 2  # the login and the list
    else:
        assert by_pid == {}
