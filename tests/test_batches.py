"""Batches: get-or-create by name, re-attaching by id, and unknown or malformed ids."""

from __future__ import annotations

import datetime as dt
import uuid

import labelport as lp
import pytest

CREATE = "POST /api/v1/workflows/{workflowId}/batches"


def test_create_batch_with_exist_ok_twice_gives_one_batch(sandbox, client, unique, counter):
    name = f"cars-{unique}"
    counter.start()
    first = client.create_batch(name, exist_ok=True)
    second = client.create_batch(name, exist_ok=True)
    assert first.id == second.id
    assert first.name == second.name == name
    assert counter.since_start(CREATE) == 1
    assert [b.id for b in client.batches() if b.name == name] == [first.id]


def test_exist_ok_finds_a_batch_created_earlier(client, unique):
    name = f"earlier-{unique}"
    original = client.create_batch(name)
    again = client.create_batch(name, exist_ok=True)
    assert again.id == original.id


def test_batch_attributes(sandbox, client, unique):
    b = client.create_batch(f"attrs-{unique}")
    uuid.UUID(b.id)
    assert b.vendor == "alegion"
    assert b.name == f"attrs-{unique}"
    assert b.created_at is not None
    assert dt.datetime.fromisoformat(b.created_at.replace("Z", "+00:00")).tzinfo is not None
    assert b.raw["id"] == b.id
    assert b.raw["workflowId"] == sandbox.project


def test_batches_lists_created_batches(client, unique):
    made = {client.create_batch(f"list-{unique}-{i}").id for i in range(3)}
    listed = {b.id for b in client.batches()}
    assert made <= listed


def test_reattach_by_id(client, unique):
    made = client.create_batch(f"reattach-{unique}")
    again = client.batch(made.id)
    assert again.id == made.id
    assert again.name == made.name


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "0123456789abcdef0123456789abcdef"])
def test_a_malformed_batch_id_is_a_labelport_error(client, bad_id):
    with pytest.raises((lp.NotFound, lp.InvalidInput)) as info:
        client.batch(bad_id)
    assert isinstance(info.value, lp.LabelportError)
    assert info.value.vendor == "alegion"


def test_an_unknown_batch_id_is_not_found(client):
    missing = str(uuid.uuid4())
    with pytest.raises(lp.NotFound) as info:
        client.batch(missing)
    assert info.value.vendor == "alegion"
    assert info.value.status == 404
