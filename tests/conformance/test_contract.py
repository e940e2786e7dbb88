"""The contract of docs/contract.md, asserted on every vendor of ``lp.vendors()`` against its sandbox.

Each contract case is one test function parameterized by vendor. Where a vendor's API cannot do what a case
asks, the case does not run for that vendor: a row of ``DIFFERENCES`` says what the API cannot do and what
labelport does instead, and names the test that asserts that alternative. No test here is skipped or expected to
fail; a new vendor passes every case or adds a row, with its test, here and in docs/contract.md's table (which
``test_the_contract_doc_lists_every_difference`` keeps equal to ``DIFFERENCES``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import labelport as lp
import pytest

VENDORS = lp.vendors()
CONTRACT_DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"

ENVELOPE_KEYS = {"id", "batch_id", "key", "status", "input", "output", "created_at", "completed_at", "vendor"}
NEUTRAL = {"pending", "in_progress", "completed", "exception", "canceled", "rejected", "failed"}
#: Text that belongs to a vendor's server internals, never to a labelport message.
INTERNAL_TEXT = ("java.", "Exception", "Failed to convert", "Traceback", "nested exception", "panicked")


class Difference(NamedTuple):
    """One row of the differences table: what the vendor's API cannot do, what labelport does instead, and the
    test (a function of this module, parameterized by ``vendor-case``) that asserts what labelport does."""

    cannot: str
    instead: str
    test: str


_NO_REVIEW = "`batch.{op}()` raises `UnsupportedOperation` naming the vendor; `capabilities['operations']['{op}']` is False."

DIFFERENCES: dict[tuple[str, str], Difference] = {
    ("alegion", "accept"): Difference(
        "Alegion's API has no call to review a record's labels.",
        _NO_REVIEW.format(op="accept"),
        "test_unsupported_operation_raises",
    ),
    ("alegion", "reject"): Difference(
        "Alegion's API has no call to send a record's labels back.",
        _NO_REVIEW.format(op="reject"),
        "test_unsupported_operation_raises",
    ),
    ("taskmonk", "accept"): Difference(
        "TaskMonk's API (its SDKs and Postman collection) has no call to review a task's labels.",
        _NO_REVIEW.format(op="accept"),
        "test_unsupported_operation_raises",
    ),
    ("taskmonk", "reject"): Difference(
        "TaskMonk's API has no call to send a task's labels back.",
        _NO_REVIEW.format(op="reject"),
        "test_unsupported_operation_raises",
    ),
    ("taskmonk", "output_types"): Difference(
        "Results come from export files (CSV or Excel): every output cell is text, and nothing in the file or "
        "the API says which output field is a number or a bool.",
        "`output` values are the file's text as given; the client option `coerce={field: type}` (types "
        "`str`, `int`, `float`, `bool`, `json`) converts the named fields.",
        "test_output_values_are_text_unless_coerced",
    ),
    ("taskmonk", "input_text"): Difference(
        "Records go in and come back as CSV or Excel cells: the export holds every input value as text, and "
        "nothing in the file or the API keeps the type it was uploaded with.",
        "`input` holds every uploaded field, its value as text (`7`, `0.25`, `true`); the client option "
        "`coerce={field: type}` gives the named fields their types back, in `results()` and `records()` alike.",
        "test_input_values_are_text_unless_coerced",
    ),
    ("taskmonk", "created_at"): Difference(
        "No TaskMonk source (its SDKs, Postman collection, API pages, export columns) gives a task's creation "
        "time; the export has per-level start and completion dates only.",
        "`created_at` is None in `results()` and `records()`; `completed_at` is filled for every completed record.",
        "test_created_at_is_unknown",
    ),
    ("playment", "accept"): Difference(
        "Playment's API has no call to review a job's annotations.",
        _NO_REVIEW.format(op="accept"),
        "test_unsupported_operation_raises",
    ),
    ("playment", "reject"): Difference(
        "Playment's API has no call to send a job's annotations back.",
        _NO_REVIEW.format(op="reject"),
        "test_unsupported_operation_raises",
    ),
    ("playment", "created_at"): Difference(
        "Playment's jobs carry no timestamps: no source (its SDK, API pages, result files) gives a job's "
        "creation time.",
        "`created_at` is None in `results()` and `records()`; `completed_at` (the result file's Last-Modified) "
        "is filled for every completed record.",
        "test_created_at_is_unknown",
    ),
    ("playment", "since_second_repeats"): Difference(
        "Playment's only completion time is the result file's `Last-Modified`, in whole seconds: a job that finishes later in a second from which a result was already read has the same time as that result.",
        "A result completed in the second its listing was read, or the second before (for the clocks of Playment's API and its file storage), counts as unsettled: the stream's watermark stays one microsecond below its second, so the next `results(since=watermark)` returns that second's results again. No result is lost; one read within a second of finishing is read twice.",
        "test_a_result_of_an_unsettled_second_is_read_again",
    ),
    ("deepen", "accept"): Difference(
        "Deepen reviews one stage at a time: accepting a file's submitted task moves the file to its next "
        "stage (Labelling, then QA); no call accepts a file's labels as final.",
        "`batch.accept(ids)` (record keys or result ids) accepts the submitted task behind each record: that "
        "task reads `accepted` in `batch.tasks()`, the record stays `in_progress` until its last stage finishes, "
        "then reads `completed` and its labels are in `results()`.",
        "test_accept_moves_the_record_to_its_next_stage",
    ),
    ("deepen", "duplicate_empty_batch"): Difference(
        "Deepen creates a dataset together with its files, so an empty batch is no Deepen object: "
        "`create_batch` only reserves the name.",
        "Two empty batches of one name cannot be told apart: `create_batch(name)` a second time, before any "
        "upload, returns the same reserved batch instead of raising `DuplicateRecord`. Once the first upload "
        "created the dataset, a second `create_batch(name)` is `DuplicateRecord`.",
        "test_empty_batches_of_one_name_cannot_be_told_apart",
    ),
    ("deepen", "batch_before_first_upload"): Difference(
        "Before its first upload a batch is only a reservation: no Deepen dataset carries its id.",
        "`client.batch(id)`, `status()`, `wait()` and `results()` of a reservation raise `NotFound`, saying "
        "the dataset is created by the first upload; `upload()` into the batch `create_batch` returned creates "
        "it, and from then on the id is found.",
        "test_a_batch_is_not_found_until_its_first_upload",
    ),
    ("deepen", "second_upload"): Difference(
        "Deepen takes a dataset's files when it creates the dataset; no source shows a way to add files later.",
        "An upload that holds records the dataset does not have raises `UnsupportedOperation` before anything "
        "is sent, saying to use a new batch; an upload whose records the dataset already holds skips them all.",
        "test_a_second_upload_of_new_records_is_unsupported",
    ),
    ("deepen", "input_file"): Difference(
        "Deepen keeps the file, not the record: a file's metadata holds none of the user's other fields.",
        "`input` is the uploaded record without its `file` value (the file itself is at Deepen, named by the "
        "envelope's `id`); labelport keeps the record's other fields, with their JSON types, as tags of the "
        "dataset the first upload creates (one `labelport:input` tag per record, docs/vendors/deepen.md) and "
        "reads them back from there.",
        "test_input_is_the_record_without_its_file",
    ),
    ("sama", "accept"): Difference(
        "Sama's API can reject a delivered task but has no call to accept one.",
        _NO_REVIEW.format(op="accept"),
        "test_unsupported_operation_raises",
    ),
    ("sama", "list_batches"): Difference(
        "Sama keeps no list of client batch ids.",
        "`client.batches()` raises `UnsupportedOperation`; `capabilities['operations']['list_batches']` is "
        "False. Re-attach with `client.batch(name)`.",
        "test_unsupported_operation_raises",
    ),
    ("sama", "duplicate_empty_batch"): Difference(
        "Sama has no batch object: a batch is the value of the project's client-batch-id input, so a name no "
        "task carries is no Sama object.",
        "Two empty batches of one name cannot be told apart: `create_batch(name)` a second time, before any "
        "upload, returns the same batch instead of raising `DuplicateRecord`. Once a task carries the name, a "
        "second `create_batch(name)` is `DuplicateRecord`.",
        "test_empty_batches_of_one_name_cannot_be_told_apart",
    ),
    ("sama", "batch_before_first_upload"): Difference(
        "A Sama batch exists only once a task carries its client batch id.",
        "`client.batch(id)`, `status()`, `wait()` and `results()` of a client batch id no task carries raise "
        "`NotFound`, saying that a Sama batch exists once a task carries its client batch id; `upload()` into "
        "the batch `create_batch` returned creates the tasks, and from then on the id is found.",
        "test_a_batch_is_not_found_until_its_first_upload",
    ),
    ("sama", "input_types"): Difference(
        "Sama checks every task input against the project's creation schema, which types each input (the "
        "sandbox's: strings and numbers; no bool).",
        "A value the schema does not allow (a bool here) is `InvalidInput` naming the record's key and the "
        "field, raised before anything is sent; values the schema allows keep their JSON types.",
        "test_a_value_the_creation_schema_does_not_type_is_refused_before_sending",
    ),
}


def vendors_for(case: str) -> list[str]:
    """The vendors a contract case runs on: every vendor without a row for it."""
    return [v for v in VENDORS if (v, case) not in DIFFERENCES]


def rows_for(test: str) -> list[Any]:
    """The (vendor, case) rows whose alternative behaviour ``test`` asserts, as pytest parameters."""
    return [
        pytest.param(v, case, id=f"{v}-{case}") for (v, case), row in DIFFERENCES.items() if row.test == test
    ]


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def records(lab: Any, n: int) -> tuple[list[dict[str, Any]], str]:
    """``n`` records the vendor's sandbox accepts, keys unique to the call (Playment's keys are unique per
    project), with the user's own columns of every JSON scalar type: a string, an int, a float and a bool (no
    bool where the vendor's row ``input_types`` says it refuses one)."""
    recs, key = lp.sandbox.sample_records(lab.vendor, n, prefix=uuid.uuid4().hex[:10])
    for i, r in enumerate(recs):
        r["weather"] = "rain" if i % 2 else "sun"
        r["count"] = i + 7
        r["score"] = i + 0.25
        if (lab.vendor, "input_types") not in DIFFERENCES:
            r["flag"] = i % 2 == 0
    return recs, key


def expected_input(vendor: str, record: dict[str, Any]) -> dict[str, Any]:
    """What ``input`` of a record's envelope holds: the record as uploaded (Deepen: without its file)."""
    if (vendor, "input_file") in DIFFERENCES:
        return {k: v for k, v in record.items() if k != "file"}
    return dict(record)


def as_text_input(vendor: str, record: dict[str, Any]) -> dict[str, Any]:
    """What ``input`` holds where the vendor's row ``input_text`` says values come back as text: each uploaded
    value spelled as JSON spells it (a string as itself)."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in expected_input(vendor, record).items()}


def type_mismatches(got: Any, want: dict[str, Any]) -> dict[str, str]:
    """Fields of ``want`` whose value in ``got`` differs or has another JSON type (``1 == 1.0 == True`` in
    Python, so equality alone would not tell)."""
    if not isinstance(got, dict):
        return {"<input>": f"{got!r} is not a dict"}
    out = {}
    for field, value in want.items():
        if field not in got:
            out[field] = "missing"
        elif type(got[field]) is not type(value) or got[field] != value:
            out[field] = (
                f"{got[field]!r} ({type(got[field]).__name__}), uploaded {value!r} ({type(value).__name__})"
            )
    for field in set(got) - set(want):
        out[field] = f"not uploaded, got {got[field]!r}"
    return out


def parse_time(value: object) -> dt.datetime:
    assert isinstance(value, str) and value, f"not an ISO 8601 string: {value!r}"
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert parsed.tzinfo is not None, f"no time zone in {value!r}"
    return parsed


def assert_clean(error: lp.LabelportError, vendor: str) -> None:
    """A labelport error of ``vendor`` whose message quotes none of the vendor's internals."""
    assert error.vendor == vendor, f"error.vendor is {error.vendor!r}: {error}"
    message = str(error)
    leaked = [t for t in INTERNAL_TEXT if t in message]
    assert not leaked, f"the message quotes the vendor's internals ({leaked}): {message}"


def missing_id(vendor: str) -> str:
    """A well-formed batch id of ``vendor`` that no batch has."""
    return {
        "alegion": lambda: str(uuid.uuid4()),  # a workflow batch is a UUID
        "taskmonk": lambda: "987654321",  # TaskMonk batch ids are numbers
        "playment": lambda: str(uuid.uuid4()),
        "deepen": lambda: uuid.uuid4().hex[:24],  # a dataset id: 24 letters and digits
        "sama": lambda: f"never-used-{uuid.uuid4().hex[:8]}",  # any client batch id no task carries
    }[vendor]()


def handle(lab: Any, batch_id: str) -> lp.Batch:
    """A ``Batch`` of ``batch_id`` built without asking the vendor, as unpickling one does (what a batch's
    ``__reduce__`` names: a Spark or Dask worker, a saved pipeline state): the way a typo'd id reaches
    ``status()`` without going through ``client.batch()``."""
    return lp._labelport._rebuild_batch(lab.client.spec(include_credentials=True), batch_id, None, None, None)


def outcome(call: Callable[[], Any]) -> str:
    """``call()``'s outcome in a word: the exception class it raised, or what it returned."""
    try:
        value = call()
    except lp.LabelportError as e:
        return type(e).__name__
    return f"returned {value!r}"[:300]


@dataclass
class Labelled:
    """A batch whose records all have their final labels, read once per vendor."""

    batch: lp.Batch
    records: list[dict[str, Any]]
    key: str
    results: list[dict[str, Any]]
    listed: list[dict[str, Any]]

    def uploaded(self, key: str) -> dict[str, Any]:
        return next(r for r in self.records if r[self.key] == key)


def labelled(lab: Any) -> Labelled:
    def make() -> Labelled:
        recs, key = records(lab, 3)
        batch = lab.client.create_batch(lab.name("labelled"))
        batch.upload(recs, key=key).wait(timeout=30)
        lab.finish()
        final = batch.wait(timeout=30, poll_interval=0.2)
        assert final["completed"] == 3, final
        return Labelled(batch, recs, key, batch.results().to_list(), batch.records().to_list())

    return lab.cached("labelled", make)


# ---------------------------------------------------------------------------------------------------------------
# Upload and Job


@pytest.mark.parametrize("vendor", VENDORS)
def test_upload_returns_once_the_vendor_holds_every_record(lab, vendor):
    recs, key = records(lab, 3)
    batch = lab.client.create_batch(lab.name("upload"))
    job = batch.upload(recs, key=key)
    state = job.status()
    assert state["state"] == "completed", f"job.status() right after upload(): {state}"
    assert (state["total"], state["done"], state["failed"], state["skipped"]) == (3, 3, 0, 0), state
    assert batch.status()["total"] == 3


@pytest.mark.parametrize("vendor", VENDORS)
def test_upload_with_wait_false_gives_a_job_whose_wait_reaches_the_same_state(lab, vendor):
    recs, key = records(lab, 3)
    batch = lab.client.create_batch(lab.name("nowait"))
    job = batch.upload(recs, key=key, wait=False)
    assert job.status()["state"] in {"running", "completed"}
    final = job.wait(timeout=30, poll_interval=0.1)
    assert final["state"] == "completed", final
    assert (final["total"], final["done"], final["failed"], final["skipped"]) == (3, 3, 0, 0), final
    assert job.status()["state"] == "completed"
    assert batch.status()["total"] == 3


@pytest.mark.parametrize("vendor", vendors_for("second_upload"))
def test_a_second_upload_skips_known_keys_and_adds_new_records(lab, vendor):
    first, key = records(lab, 2)
    more, _ = records(lab, 2)
    batch = lab.client.create_batch(lab.name("again"))
    batch.upload(first, key=key).wait(timeout=30)
    state = batch.upload(first + more, key=key).wait(timeout=30)
    assert state["state"] == "completed", state
    assert (state["total"], state["done"], state["skipped"], state["failed"]) == (4, 4, 2, 0), state
    assert batch.status()["total"] == 4


# ---------------------------------------------------------------------------------------------------------------
# Batch ids: unknown and malformed ones are NotFound


@pytest.mark.parametrize("vendor", VENDORS)
def test_an_unknown_batch_id_is_not_found(lab, vendor):
    with pytest.raises(lp.NotFound) as info:
        lab.client.batch(missing_id(vendor))
    assert_clean(info.value, vendor)


@pytest.mark.parametrize("bad_id", ["not a uuid!!", "../x"], ids=["spaces-and-bangs", "dot-dot-slash"])
@pytest.mark.parametrize("vendor", VENDORS)
def test_a_malformed_batch_id_is_not_found(lab, vendor, bad_id):
    with pytest.raises(lp.NotFound) as info:
        lab.client.batch(bad_id)
    assert_clean(info.value, vendor)


@pytest.mark.parametrize("vendor", VENDORS)
def test_status_wait_and_results_of_a_missing_batch_raise_not_found(lab, vendor):
    batch = handle(lab, missing_id(vendor))
    seen = {
        "status": outcome(batch.status),
        "wait": outcome(lambda: batch.wait(timeout=10, poll_interval=0.1)),
        "results": outcome(lambda: batch.results().to_list()),
        "records": outcome(lambda: batch.records().to_list()),
    }
    assert seen == dict.fromkeys(seen, "NotFound"), seen


@pytest.mark.parametrize("vendor", VENDORS)
def test_the_async_client_raises_the_same_not_found(lab, vendor):
    async def attach() -> None:
        async with lab.client.spec(include_credentials=True).async_client() as client:
            await client.batch(missing_id(vendor))

    with pytest.raises(lp.NotFound) as info:
        asyncio.run(attach())
    assert_clean(info.value, vendor)


# ---------------------------------------------------------------------------------------------------------------
# create_batch: a name is one batch


@pytest.mark.parametrize("vendor", VENDORS)
def test_a_second_create_batch_of_a_name_with_records_is_a_duplicate(lab, vendor):
    recs, key = records(lab, 1)
    name = lab.name("dup")
    lab.client.create_batch(name).upload(recs, key=key).wait(timeout=30)
    with pytest.raises(lp.DuplicateRecord) as info:
        lab.client.create_batch(name)
    assert_clean(info.value, vendor)


@pytest.mark.parametrize("vendor", vendors_for("duplicate_empty_batch"))
def test_a_second_create_batch_of_an_empty_batch_is_a_duplicate(lab, vendor):
    name = lab.name("dup-empty")
    lab.client.create_batch(name)
    with pytest.raises(lp.DuplicateRecord) as info:
        lab.client.create_batch(name)
    assert_clean(info.value, vendor)


@pytest.mark.parametrize("vendor", VENDORS)
def test_exist_ok_returns_the_same_batch_id(lab, vendor):
    recs, key = records(lab, 1)
    name = lab.name("exist-ok")
    first = lab.client.create_batch(name)
    again = lab.client.create_batch(name, exist_ok=True)
    assert (again.id, again.name) == (first.id, name), "exist_ok=True on an empty batch"
    first.upload(recs, key=key).wait(timeout=30)
    after = lab.client.create_batch(name, exist_ok=True)
    assert (after.id, after.name) == (first.id, name), "exist_ok=True once the batch holds records"
    assert lab.client.batch(first.id).id == first.id, "client.batch(id) re-attaches under the same id"


# ---------------------------------------------------------------------------------------------------------------
# accept / reject


@contextmanager
def deepen_review(lab: Any, n: int) -> Iterator[tuple[lp.Batch, list[dict[str, Any]], str]]:
    """A Deepen batch of ``n`` records whose first-stage (Labelling) work is submitted and awaits review. The
    sandbox runs in manual mode meanwhile: only API calls move tasks (what a labeller's tool would do is done
    through ``client.request``)."""
    lab.sim("/_sim/deepen/mode", {"mode": "manual"})
    try:
        recs, key = records(lab, n)
        batch = lab.client.create_batch(lab.name("review"))
        batch.upload(recs, key=key).wait(timeout=30)
        submit_stage(lab, batch, "Labelling")
        yield batch, recs, key
    finally:
        lab.sim("/_sim/deepen/mode", {"mode": "auto"})


def submit_stage(lab: Any, batch: lp.Batch, stage: str) -> None:
    """Deepen: submit every task of ``stage`` that is ready, as its labeller would."""
    for task in batch.tasks():
        if task["stage_id"] == stage and task["status"] in {"ready", "in_progress", "rejected"}:
            lab.client.request("POST", f"/tasks/{task['task_id']}/submit")


@contextmanager
def sama_review(lab: Any, n: int) -> Iterator[tuple[lp.Batch, list[dict[str, Any]], str]]:
    """A Sama batch of ``n`` records, delivered: what Sama lets a customer reject."""
    recs, key = records(lab, n)
    batch = lab.client.create_batch(lab.name("review"))
    batch.upload(recs, key=key).wait(timeout=30)
    lab.finish()
    yield batch, recs, key


#: How each vendor that reviews brings records to the point where they can be reviewed.
AWAITING_REVIEW = {"deepen": deepen_review, "sama": sama_review}


@pytest.mark.parametrize("vendor", vendors_for("reject"))
def test_reject_takes_keys_and_result_ids_and_shows_in_status_and_records(lab, vendor):
    with AWAITING_REVIEW[vendor](lab, 3) as (batch, recs, key):
        ids = {r["key"]: r["id"] for r in batch.records()}
        by_key, by_id, untouched = (r[key] for r in recs)
        batch.reject([by_key], reason="conformance: rejected by record key")
        batch.reject([ids[by_id]], reason="conformance: rejected by result id")

        status = batch.status()
        assert status["rejected"] == 2, f"status() after rejecting two records: {status}"
        assert status["done"] is False, f"rejected records go back to work: {status}"
        listed = {r["key"]: r["status"] for r in batch.records()}
        assert (listed[by_key], listed[by_id]) == ("rejected", "rejected"), listed
        assert listed[untouched] != "rejected", listed
        assert not {by_key, by_id} & {r["key"] for r in batch.results()}

        with pytest.raises(lp.NotFound):
            batch.reject(["no-such-record-key"])
        with pytest.raises(lp.InvalidInput):  # sent back already: nothing of it awaits review
            batch.reject([by_key])


# ---------------------------------------------------------------------------------------------------------------
# Envelopes: results() and records()


@pytest.mark.parametrize("vendor", VENDORS)
def test_results_envelopes_have_the_contract_shape(lab, vendor):
    done = labelled(lab)
    assert sorted(r["key"] for r in done.results) == sorted(r[done.key] for r in done.records)
    for r in done.results:
        assert set(r) == ENVELOPE_KEYS, sorted(r)
        assert (r["vendor"], r["batch_id"], r["status"]) == (vendor, done.batch.id, "completed"), r
        assert isinstance(r["id"], str) and r["id"], r
        assert isinstance(r["output"], dict) and r["output"], r


PLAIN = (dict, list, str, int, float, bool, type(None))


def not_plain(value: Any, path: str = "") -> Iterator[str]:
    """Where `value` holds anything but Python's own JSON types (exactly: no subclass), or a key not a str."""
    if type(value) not in PLAIN:
        yield f"{path or '.'}: {type(value).__name__}"
    elif type(value) is dict:
        for k, v in value.items():
            if type(k) is not str:
                yield f"{path}.{k!r}: a {type(k).__name__} key"
            yield from not_plain(v, f"{path}.{k}")
    elif type(value) is list:
        for i, v in enumerate(value):
            yield from not_plain(v, f"{path}[{i}]")


def typed(value: Any) -> Any:
    """`value` with every scalar tagged by its exact type, so `1 == 1.0 == True` and `0.0 == -0.0` compare apart."""
    if type(value) is dict:
        return ("dict", [(k, typed(v)) for k, v in value.items()])
    if type(value) is list:
        return ("list", [typed(v) for v in value])
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("vendor", VENDORS)
def test_results_are_plain_dicts_all_the_way_down(lab, vendor):
    """Pages come to Python through orjson (src/py/envelope_pages.rs): still `dict`, `list`, `str`, `int`,
    `float`, `bool` and `None` only, to the last nested value, in a list, one by one and with `raw`."""
    done = labelled(lab)
    listed = done.batch.results(include_raw=True).to_list()
    iterated = list(done.batch.results())
    assert len(listed) == len(iterated) == len(done.results) == 3
    # With and without `raw` (read in one pass, or with each item's own text kept): the same envelope.
    assert [typed({k: v for k, v in r.items() if k != "raw"}) for r in listed] == [typed(r) for r in iterated]
    for r in done.results + listed + iterated:
        assert type(r) is dict
        assert not list(not_plain(r)), list(not_plain(r))


@pytest.mark.parametrize("vendor", VENDORS)
def test_orjson_and_labelports_own_decoder_give_the_same_results(lab, vendor):
    """Both roads of a page (one orjson.loads, or labelport's decoder envelope by envelope) give the same
    objects, types included, for every vendor; so do the async stream and `to_jsonl`."""
    from labelport import _labelport as native

    done = labelled(lab)
    assert native._fast_pages_available()

    def read() -> Any:
        async def aread() -> list[Any]:
            sb = lab.sb
            ac = lp.AsyncClient(vendor, project=sb.project, base_url=sb.url, **sb.credentials)
            try:
                return [r async for r in (await ac.batch(done.batch.id)).results(include_raw=True)]
            finally:
                await ac.close()

        return (
            done.batch.results(include_raw=True).to_list(),
            list(done.batch.results()),
            asyncio.run(aread()),
        )

    before = native._set_fast_pages(True)
    try:
        fast = read()
        native._set_fast_pages(False)
        own = read()
    finally:
        native._set_fast_pages(before)
    for a, b in zip(fast, own, strict=True):
        assert [typed(r) for r in a] == [typed(r) for r in b]


@pytest.mark.parametrize("vendor", vendors_for("input_text"))
def test_results_input_is_the_uploaded_record_with_its_types(lab, vendor):
    done = labelled(lab)
    wrong = {
        r["key"]: bad
        for r in done.results
        if (bad := type_mismatches(r["input"], expected_input(vendor, done.uploaded(r["key"]))))
    }
    assert not wrong, f"results() input differs from the uploaded record: {wrong}"


@pytest.mark.parametrize("vendor", vendors_for("output_types"))
def test_results_output_values_keep_their_json_types(lab, vendor):
    """The vendors' outputs are JSON: no number or bool may come back spelled as a string."""
    spelled = re.compile(r"-?\d+(\.\d+)?|true|false|True|False")

    def stringly(value: Any, path: str) -> Iterator[str]:
        if isinstance(value, str) and spelled.fullmatch(value):
            yield f"{path}={value!r}"
        elif isinstance(value, dict):
            for k, v in value.items():
                yield from stringly(v, f"{path}.{k}")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from stringly(v, f"{path}[{i}]")

    found = [s for r in labelled(lab).results for s in stringly(r["output"], "output")]
    assert not found, f"numbers or bools as strings: {found[:10]}"


@pytest.mark.parametrize("vendor", vendors_for("created_at"))
def test_results_timestamps_are_filled(lab, vendor):
    for r in labelled(lab).results:
        created, completed = parse_time(r["created_at"]), parse_time(r["completed_at"])
        assert created <= completed, r


@pytest.mark.parametrize("vendor", VENDORS)
def test_records_carry_the_uploaded_input_and_the_output(lab, vendor):
    done = labelled(lab)
    assert sorted(r["key"] for r in done.listed) == sorted(r[done.key] for r in done.records)
    for r in done.listed:
        assert set(r) == ENVELOPE_KEYS, sorted(r)
        assert r["status"] == "completed", r
        assert r["input"] is not None, f"records() input is None: {r}"
        assert r["output"] is not None, f"records() output of a finished record is None: {r}"
    expected = expected_input if (vendor, "input_text") not in DIFFERENCES else as_text_input
    wrong = {
        r["key"]: bad
        for r in done.listed
        if (bad := type_mismatches(r["input"], expected(vendor, done.uploaded(r["key"]))))
    }
    assert not wrong, f"records() input differs from the uploaded record: {wrong}"


@pytest.mark.parametrize("vendor", vendors_for("created_at"))
def test_records_timestamps_are_filled(lab, vendor):
    for r in labelled(lab).listed:
        created, completed = parse_time(r["created_at"]), parse_time(r["completed_at"])
        assert created <= completed, r


@pytest.mark.parametrize("vendor", VENDORS)
def test_records_and_results_agree_on_every_finished_record(lab, vendor):
    done = labelled(lab)
    listed = {r["key"]: r for r in done.listed}
    fields = ("id", "batch_id", "status", "input", "output", "created_at", "completed_at")
    differ = {
        r["key"]: {f: (listed[r["key"]][f], r[f]) for f in fields if listed[r["key"]][f] != r[f]}
        for r in done.results
        if r["key"] in listed
    }
    differ = {k: v for k, v in differ.items() if v}
    assert not differ, f"records() vs results(), field: (records, results): {differ}"


# ---------------------------------------------------------------------------------------------------------------
# The differences table: each row's alternative behaviour


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_unsupported_operation_raises"))
def test_unsupported_operation_raises(lab, vendor, case):
    def batch() -> lp.Batch:
        return lab.client.create_batch(lab.name("unsupported"))

    call = {
        "accept": lambda: batch().accept(["some-record-key"]),
        "reject": lambda: batch().reject(["some-record-key"], reason="conformance"),
        "list_batches": lab.client.batches,
    }[case]
    with pytest.raises(lp.UnsupportedOperation) as info:
        call()
    assert_clean(info.value, vendor)
    assert lab.client.capabilities["operations"][case] is False


@pytest.mark.parametrize("vendor", VENDORS)
def test_capabilities_agree_with_the_differences(lab, vendor):
    """An operation ``capabilities`` calls unsupported has an ``UnsupportedOperation`` row, and only then."""
    operations = lab.client.capabilities["operations"]
    for op in ("accept", "reject", "list_batches"):
        row = DIFFERENCES.get((vendor, op))
        unsupported_row = row is not None and row.test == "test_unsupported_operation_raises"
        assert operations.get(op, True) is not unsupported_row, (op, operations, row)


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_empty_batches_of_one_name_cannot_be_told_apart"))
def test_empty_batches_of_one_name_cannot_be_told_apart(lab, vendor, case):
    name = lab.name("twin")
    first = lab.client.create_batch(name)
    second = lab.client.create_batch(name)  # nothing at the vendor carries the name yet
    assert (second.id, second.name) == (first.id, name)
    assert (first.name, second.vendor) == (name, vendor)


#: What the NotFound message of a batch before its first upload says, per vendor (lower case).
BEFORE_FIRST_UPLOAD_SAYS = {"sama": ("task", "client batch id"), "deepen": ("dataset", "upload")}


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_a_batch_is_not_found_until_its_first_upload"))
def test_a_batch_is_not_found_until_its_first_upload(lab, vendor, case):
    name = lab.name("unborn")
    created = lab.client.create_batch(name)
    with pytest.raises(lp.NotFound) as info:
        lab.client.batch(created.id)
    assert_clean(info.value, vendor)
    said = str(info.value).lower().replace("_", " ")
    missing = [w for w in BEFORE_FIRST_UPLOAD_SAYS[vendor] if w not in said]
    assert not missing, f"the message does not say {missing}: {info.value}"
    seen = {
        "status": outcome(created.status),
        "wait": outcome(lambda: created.wait(timeout=10, poll_interval=0.1)),
        "results": outcome(lambda: created.results().to_list()),
    }
    assert seen == dict.fromkeys(seen, "NotFound"), seen

    recs, key = records(lab, 1)
    created.upload(recs, key=key).wait(timeout=30)  # the batch create_batch returned takes an upload
    assert lab.client.batch(created.id).status()["total"] == 1


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_input_is_the_record_without_its_file"))
def test_input_is_the_record_without_its_file(lab, vendor, case):
    done = labelled(lab)
    for r in done.results + done.listed:
        uploaded = done.uploaded(r["key"])
        assert "file" in uploaded and "file" not in r["input"], r["input"]
        assert not type_mismatches(r["input"], {k: v for k, v in uploaded.items() if k != "file"}), (
            f"{r['key']}: {type_mismatches(r['input'], uploaded)}"
        )


@pytest.mark.parametrize(
    ("vendor", "case"), rows_for("test_a_value_the_creation_schema_does_not_type_is_refused_before_sending")
)
def test_a_value_the_creation_schema_does_not_type_is_refused_before_sending(lab, vendor, case):
    recs, key = records(lab, 2)
    recs[1]["flag"] = True
    batch = lab.client.create_batch(lab.name("schema"))
    with pytest.raises(lp.InvalidInput) as info:
        batch.upload(recs, key=key)
    assert (info.value.key, info.value.field) == (recs[1][key], "flag"), info.value
    created = lab.sb.stats()["records_created"]
    assert not {r[key] for r in recs} & set(created), "records were sent"


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_output_values_are_text_unless_coerced"))
def test_output_values_are_text_unless_coerced(lab, vendor, case):
    done = labelled(lab)
    for r in done.results:
        assert r["output"] and all(isinstance(v, str) for v in r["output"].values()), r["output"]
    with lab.sb.client(coerce={"confidence": "float", "is_occluded": "bool"}) as typed:
        again = typed.batch(done.batch.id).results().to_list()
    assert len(again) == len(done.results)
    for r in again:
        out = r["output"]
        assert (type(out["label"]), type(out["confidence"]), type(out["is_occluded"])) == (
            str,
            float,
            bool,
        ), out
    with lab.sb.client(coerce={"label": "int"}) as wrong:  # a value that does not convert is an error
        with pytest.raises(lp.InvalidInput) as info:
            wrong.batch(done.batch.id).results().to_list()
    assert info.value.field == "label" and info.value.key in {r["key"] for r in done.results}, info.value
    assert_clean(info.value, vendor)


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_input_values_are_text_unless_coerced"))
def test_input_values_are_text_unless_coerced(lab, vendor, case):
    done = labelled(lab)
    for r in done.results + done.listed:
        assert type_mismatches(r["input"], as_text_input(vendor, done.uploaded(r["key"]))) == {}, r["input"]
    typed_fields = {"count": "int", "score": "float", "flag": "bool"}
    with lab.sb.client(coerce=typed_fields) as typed:
        batch = typed.batch(done.batch.id)
        again = batch.results().to_list() + batch.records().to_list()
        assert typed.capabilities["coerce"] == typed_fields, typed.capabilities
    assert len(again) == len(done.results) + len(done.listed)
    for r in again:
        assert type_mismatches(r["input"], expected_input(vendor, done.uploaded(r["key"]))) == {}, r["input"]


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_created_at_is_unknown"))
def test_created_at_is_unknown(lab, vendor, case):
    done = labelled(lab)
    for r in done.results + done.listed:
        assert r["created_at"] is None, r
        parse_time(r["completed_at"])


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_accept_moves_the_record_to_its_next_stage"))
def test_accept_moves_the_record_to_its_next_stage(lab, vendor, case):
    with deepen_review(lab, 2) as (batch, recs, key):
        ids = {r["key"]: r["id"] for r in batch.records()}
        by_key, by_id = (r[key] for r in recs)
        batch.accept([by_key])
        batch.accept([ids[by_id]])
        stages = {(t["file_id"], t["stage_id"]): t["status"] for t in batch.tasks()}
        assert {stages[(k, "Labelling")] for k in (by_key, by_id)} == {"accepted"}, stages
        listed = {r["key"]: r["status"] for r in batch.records()}
        assert listed == {by_key: "in_progress", by_id: "in_progress"}, listed
        status = batch.status()
        assert (status["in_progress"], status["completed"], status["done"]) == (2, 0, False), status
        with pytest.raises(lp.NotFound):
            batch.accept(["no-such-record-key"])
        with pytest.raises(lp.InvalidInput):  # accepted already: nothing of it awaits review
            batch.accept([by_key])

        submit_stage(lab, batch, "QA")  # the last stage finishes the record
        assert batch.wait(timeout=10, poll_interval=0.1)["completed"] == 2
        assert sorted(r["key"] for r in batch.results()) == sorted([by_key, by_id])


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_a_second_upload_of_new_records_is_unsupported"))
def test_a_second_upload_of_new_records_is_unsupported(lab, vendor, case):
    first, key = records(lab, 2)
    more, _ = records(lab, 1)
    batch = lab.client.create_batch(lab.name("again"))
    batch.upload(first, key=key).wait(timeout=30)
    rerun = batch.upload(first, key=key).wait(timeout=30)
    assert (rerun["state"], rerun["skipped"]) == ("completed", 2), rerun
    with pytest.raises(lp.UnsupportedOperation) as info:
        batch.upload(first + more, key=key)
    assert_clean(info.value, vendor)
    assert "new batch" in str(info.value), info.value
    assert more[0][key] not in lab.sb.stats()["records_created"]
    assert batch.status()["total"] == 2


# ---------------------------------------------------------------------------------------------------------------
# Incremental reads: `results(since=stream.watermark)` while records finish


def keys_since(batch: Any, since: str | None) -> tuple[list[str], str | None]:
    """One incremental read: the keys it gave and the watermark to pass next time."""
    stream = batch.results(since=since)
    keys = [r["key"] for r in stream]
    return keys, stream.watermark or since


@pytest.mark.parametrize("vendor", vendors_for("second_upload"))
def test_incremental_reads_while_records_finish_lose_nothing(lab, vendor):
    recs, key = records(lab, 12)
    batch = lab.client.create_batch(lab.name("incremental"))
    for r in recs:
        batch.upload([r], key=key)
        lab.sb.advance(0.1)  # the records finish 0.1 s of sandbox time apart
    lab.sb.advance(lab.complete_after - 1.5)
    reads: list[str] = []
    watermark = None
    for _ in range(50):  # 2.5 s of sandbox time in 0.05 s steps, across every completion
        lab.sb.advance(0.05)
        got, watermark = keys_since(batch, watermark)
        reads += got
    lab.finish()
    for _ in range(2):  # the last read of a settled batch gives nothing new
        got, watermark = keys_since(batch, watermark)
        reads += got
    assert keys_since(batch, watermark)[0] == []
    want = {str(r[key]) for r in recs}
    assert set(reads) == want, f"lost by incremental reads: {sorted(want - set(reads))}"
    if (vendor, "since_second_repeats") not in DIFFERENCES:
        assert len(reads) == len(want), f"read twice: {sorted(k for k in want if reads.count(k) > 1)}"


@pytest.mark.parametrize(("vendor", "case"), rows_for("test_a_result_of_an_unsettled_second_is_read_again"))
def test_a_result_of_an_unsettled_second_is_read_again(lab, vendor, case):
    recs, key = records(lab, 1)
    want = [str(recs[0][key])]
    batch = lab.client.create_batch(lab.name("unsettled"))
    batch.upload(recs, key=key)
    lab.sb.advance(lab.complete_after + 0.2)  # read within a second of finishing
    first = batch.results()
    (result,) = first.to_list()
    assert result["key"] == want[0]
    done_at = parse_time(result["completed_at"])
    assert parse_time(first.watermark) == done_at - dt.timedelta(microseconds=1)
    again, watermark = keys_since(batch, first.watermark)
    assert again == want  # still unsettled: read again
    lab.sb.advance(3)
    settled = batch.results(since=watermark)
    assert [r["key"] for r in settled] == want
    assert parse_time(settled.watermark) == done_at
    assert keys_since(batch, settled.watermark)[0] == []


# ---------------------------------------------------------------------------------------------------------------
# The table itself


def test_every_difference_is_about_a_vendor_and_names_a_test_of_this_suite():
    for (vendor, case), row in DIFFERENCES.items():
        assert vendor in VENDORS, (vendor, case)
        assert row.test.startswith("test_") and callable(globals().get(row.test)), (vendor, case, row.test)
        assert row.cannot.strip() and row.instead.strip(), (vendor, case)
        assert "|" not in row.cannot + row.instead, (vendor, case)


def doc_rows(text: str) -> list[tuple[str, ...]]:
    """The rows of the table under the contract doc's "## Differences" heading."""
    section = text.split("\n## Differences", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("|") and not line.startswith("|---") and not line.startswith("| vendor "):
            rows.append(tuple(cell.strip() for cell in line.strip().strip("|").split(" | ")))
    return rows


def differences_table() -> list[tuple[str, ...]]:
    """The rows docs/contract.md must hold, in order: vendor, case, cannot, instead, test id."""
    return [
        (vendor, f"`{case}`", row.cannot, row.instead, f"`{row.test}[{vendor}-{case}]`")
        for (vendor, case), row in DIFFERENCES.items()
    ]


def test_the_contract_doc_lists_every_difference():
    assert doc_rows(CONTRACT_DOC.read_text(encoding="utf-8")) == differences_table()
