"""lp.compare on small fixed envelopes: every number checked against a hand computation (docs/compare.md has the
definitions; the arithmetic is in the comments)."""

from __future__ import annotations

import math

import labelport as lp
import pytest

pytest.importorskip("pandas")


def env(key, output=None, status="completed", created=None, completed=None):
    return {
        "id": f"id-{key}",
        "batch_id": "b",
        "key": key,
        "status": status,
        "input": {},
        "output": output if status == "completed" else None,
        "created_at": created,
        "completed_at": completed,
        "vendor": "test",
    }


def two_sources():
    a = [
        env("r1", {"label": "car"}),
        env("r2", {"label": "car"}),
        env("r3", {"label": "ped"}),
        env("r4", {"label": "ped"}),
        env("r5", {"label": "car"}),
        env("r6", status="exception"),
    ]
    b = [
        env("r1", {"label": "car"}),
        env("r2", {"label": "ped"}),
        env("r3", {"label": "ped"}),
        env("r4", {"label": "ped"}),
        env("r5", {"label": "car"}),
        env("r7", {"label": "car"}),
    ]
    return {"a": a, "b": b}


def row(df, field):
    rows = df[df["field"] == field]
    assert len(rows) == 1
    return rows.iloc[0]


def test_two_sources_agreement_kappa_alpha_by_hand():
    cmp = lp.compare(two_sources(), fields={"label": "category"})
    r = row(cmp.agreement(), "label")
    # r1..r7 in all; r1..r5 have both values; they agree on r1, r3, r4, r5.
    assert (r["records"], r["compared"]) == (7, 5)
    assert r["agreement"] == pytest.approx(4 / 5)
    # a: car 3, ped 2; b: car 2, ped 3 over the 5 complete pairs. p_o = 0.8, p_e = (3*2 + 2*3) / 25 = 0.48.
    assert r["kappa"] == pytest.approx((0.8 - 0.48) / (1 - 0.48))
    # alpha: 10 pairable values (car 5, ped 5): D = 100 - 50 = 50; within r2 (car, ped): 4 - 2 = 2.
    # alpha = 1 - (10 - 1) * 2 / 50 = 0.64. r6 (a exception, b missing) and r7 (one value) are not pairable.
    assert r["alpha"] == pytest.approx(0.64)
    assert (r["missing"], r["exception"], r["unfinished"], r["absent"], r["invalid"]) == (2, 1, 0, 0, 0)
    assert math.isnan(r["mean_iou"])


def test_disagreements_one_row_per_record_with_each_value():
    d = lp.compare(two_sources(), fields={"label": "category"}).disagreements()
    assert list(d.columns) == ["key", "field", "a", "b"]
    assert d.to_dict("records") == [{"key": "r2", "field": "label", "a": "car", "b": "ped"}]


def test_values_shows_what_is_not_a_value():
    v = lp.compare(two_sources(), fields={"label": "category"}).values("label")
    assert v.loc["r6"].tolist() == ["<exception>", "<missing>"]
    assert v.loc["r7"].tolist() == ["<missing>", "car"]


def three_sources():
    a = [
        env("r1", {"label": "x"}),
        env("r2", {"label": "x"}),
        env("r3", {"label": "y"}),
        env("r4", {"label": 7.5}),  # a float is no category: invalid
        env("r5", status="in_progress"),
        env("r6", {"other": 1}),  # completed without the field: absent
    ]
    b = [
        env("r1", {"label": "x"}),
        env("r2", {"label": "y"}),
        env("r3", {"label": "y"}),
        env("r4", {"label": "x"}),
        env("r5", {"label": "z"}),
        env("r6", {"label": "x"}),
    ]
    c = [
        env("r1", {"label": "y"}),
        env("r3", {"label": "y"}),
        env("r4", status="exception"),
        env("r5", {"label": "z"}),
        env("r6", {"label": "x"}),
    ]
    return {"a": a, "b": b, "c": c}


def test_three_sources_with_ties_missing_exceptions_and_invalid_values():
    cmp = lp.compare(three_sources(), fields={"label": "category"})
    r = row(cmp.agreement(), "label")
    # pairable units: r1 [x x y], r2 [x y], r3 [y y y], r5 [z z], r6 [x x]; r4 has one value (b's x).
    assert (r["records"], r["compared"]) == (6, 5)
    assert r["agreement"] == pytest.approx(3 / 5)  # r3, r5, r6
    assert math.isnan(r["kappa"])  # three sources
    # n = 12 (x 5, y 5, z 2): D = 144 - (25 + 25 + 4) = 90. Within: r1 (9 - 5) / 2 = 2, r2 (4 - 2) / 1 = 2.
    # alpha = 1 - 11 * 4 / 90.
    assert r["alpha"] == pytest.approx(1 - 44 / 90)
    assert (r["missing"], r["exception"], r["unfinished"], r["absent"], r["invalid"]) == (1, 1, 1, 1, 1)

    cons = cmp.consensus().set_index("key")
    assert cons.loc["r1", ["value", "votes", "tie"]].tolist() == ["x", 3, False]
    assert cons.loc["r1", "support"] == pytest.approx(2 / 3)
    # r2: x (a) against y (b), c missing: a tie, flagged, the earliest source's value.
    assert cons.loc["r2", ["value", "votes", "support", "tie"]].tolist() == ["x", 2, 0.5, True]
    assert cons.loc["r3", ["value", "support", "tie"]].tolist() == ["y", 1.0, False]
    assert cons.loc["r4", ["value", "votes", "support"]].tolist() == [
        "x",
        1,
        1.0,
    ]  # the invalid value has no vote
    assert cons.loc["r5", ["value", "votes"]].tolist() == ["z", 2]

    d = cmp.disagreements()
    assert d["key"].tolist() == ["r1", "r2"]
    assert d.set_index("key").loc["r2", ["a", "b", "c"]].tolist() == ["x", "y", "<missing>"]
    assert cmp.values("label").loc["r4"].tolist() == ["<invalid: float>", "x", "<exception>"]


def test_numbers_interval_alpha_and_median_consensus():
    src = {
        "a": [env("u1", {"n": 1}), env("u2", {"n": 3}), env("u3", {"n": 1})],
        "b": [env("u1", {"n": 1}), env("u2", {"n": 3}), env("u3", {"n": 2.0})],
        "c": [env("u3", {"n": 9}), env("u1", {"n": "1"})],  # a string is no number
    }
    cmp = lp.compare(src, fields={"n": "number"})
    r = row(cmp.agreement(), "n")
    # units u1 [1 1], u2 [3 3], u3 [1 2 9]: n = 7, sum 20, sum of squares 106: D = 2*7*106 - 2*400 = 684.
    # within u3: 2*3*86 - 2*144 = 228, over m - 1 = 2: 114. alpha = 1 - 6 * 114 / 684 = 0.
    assert r["alpha"] == pytest.approx(0.0)
    assert r["invalid"] == 1 and r["missing"] == 1
    assert r["agreement"] == pytest.approx(2 / 3)
    cons = cmp.consensus().set_index("key")
    assert cons.loc["u3", "value"] == 2.0 and cons.loc["u3", "support"] == pytest.approx(1 / 3)

    two = lp.compare(
        {
            "a": [env("u1", {"n": 1}), env("u2", {"n": 3}), env("u3", {"n": 1})],
            "b": [env("u1", {"n": 1}), env("u2", {"n": 3}), env("u3", {"n": 2})],
        },
        fields={"n": "number"},
    )
    # values 1 1 3 3 1 2: D = 58 (ordered pairs); within u3: 2*2*5 - 2*9 = 2. alpha = 1 - 5 * 2 / 58.
    assert row(two.agreement(), "n")["alpha"] == pytest.approx(1 - 10 / 58)


def test_boxes_iou_matching_and_box_consensus():
    square = [0, 0, 10, 10]
    shifted = {"x": 5, "y": 0, "w": 10, "h": 10}  # (5, 0, 15, 10): IoU with square 50 / 150
    src = {
        "a": [env("r1", {"box": square}), env("r2", {"box": [0, 0, 4, 4]})],
        "b": [env("r1", {"box": shifted}), env("r2", {"box": {"x1": 0, "y1": 0, "x2": 4, "y2": 2}})],
        "c": [env("r1", {"box": {"coordinates": [{"x": 0, "y": 0}, {"x": 10, "y": 0}, {"x": 10, "y": 10}]}})],
    }
    cmp = lp.compare(src, fields={"box": "box"})
    r = row(cmp.agreement(), "box")
    # r1: a-b 1/3, a-c 1, b-c 1/3: mean 5/9, not all >= 0.5. r2: a-b 8/16 = 0.5: agree.
    assert r["compared"] == 2 and r["agreement"] == pytest.approx(0.5)
    assert r["mean_iou"] == pytest.approx((5 / 9 + 0.5) / 2)
    cons = cmp.consensus().set_index("key")
    # r1: mean IoU to the others a 2/3, b 1/3, c 2/3: a and c hold the same box, so no tie; support: a and c.
    assert cons.loc["r1", "value"] == (0.0, 0.0, 10.0, 10.0)
    assert cons.loc["r1", "support"] == pytest.approx(2 / 3) and not cons.loc["r1", "tie"]
    # r2: two different boxes, each with IoU 0.5 to the other: a tie, a's box, both supporting it.
    assert cons.loc["r2", ["value", "support", "tie"]].tolist() == [(0.0, 0.0, 4.0, 4.0), 1.0, True]


def test_lists_of_boxes_greedy_matching_counts_unmatched():
    src = {
        "a": [
            env("r1", {"boxes": [[0, 0, 10, 10], [20, 20, 30, 30]]}),
            env("r2", {"boxes": [[0, 0, 10, 10]]}),
            env("r3", {"boxes": []}),
        ],
        "b": [
            env(
                "r1", {"boxes": [[0, 0, 10, 5], [50, 50, 60, 60]]}
            ),  # IoU 0.5 with a's first; one unmatched each
            env("r2", {"boxes": [[0, 0, 10, 6], [0, 0, 10, 8]]}),  # greedy: 0.8 first, then 0.6 is left over
            env("r3", {"boxes": []}),
        ],
    }
    r = row(lp.compare(src, fields={"boxes": "boxes"}).agreement(), "boxes")
    assert r["compared"] == 3
    assert r["agreement"] == pytest.approx(1 / 3)  # only r3 (both empty)
    assert (r["matched"], r["unmatched"]) == (2, 3)
    assert r["mean_iou"] == pytest.approx((0.5 + 0.8) / 2)


def test_without_fields_the_shared_output_fields_are_compared():
    src = {
        "a": [env("r1", {"label": "car", "score": 0.5, "only_a": 1})],
        "b": [env("r1", {"label": "car", "score": 0.7})],
    }
    cmp = lp.compare(src)
    assert cmp.fields == {"label": "category", "score": "number"}
    assert cmp.agreement()["field"].tolist() == ["label", "score"]


def test_per_source_paths_and_callables():
    src = {
        "sama": [env("r1", {"answers": {"class": "car"}})],
        "alegion": [env("r1", {"label": "car"})],
        "playment": [env("r1", {"annotations": {"rectangles": [{"label": "truck"}]}})],
    }
    fields = {
        "label": (
            {
                "sama": "answers.class",
                "alegion": "label",
                "playment": lambda e: e["output"]["annotations"]["rectangles"][0]["label"],
            },
            "category",
        )
    }
    r = row(lp.compare(src, fields=fields).agreement(), "label")
    assert r["compared"] == 1 and r["agreement"] == 0.0


def test_turnaround_by_hand():
    t0 = "2026-01-01T00:00:00Z"
    a = [
        env(f"r{i}", {"l": 1}, created=t0, completed=f"2026-01-01T00:00:{s}.000Z")
        for i, s in enumerate((10, 20, 30, 40))
    ]
    a.append(env("r9", status="exception"))
    b = [
        env("r1", {"l": 1}, created=None, completed="2026-01-01T00:00:05+00:00"),
        env("r2", status="pending"),
    ]
    t = lp.compare({"a": a, "b": b}, fields={"l": "number"}).turnaround()
    assert t.loc["a", ["records", "finished", "completed", "exceptions", "timed"]].tolist() == [5, 5, 4, 1, 4]
    assert t.loc["a", "exception_rate"] == pytest.approx(0.2)
    assert t.loc["a", "median_s"] == pytest.approx(25.0)
    assert t.loc["a", "p90_s"] == pytest.approx(30 + 0.7 * 10)  # position 0.9 * 3 = 2.7 between 30 and 40
    # b gives no creation time: nothing timed, counted as such.
    assert t.loc["b", ["records", "finished", "unfinished", "timed"]].tolist() == [2, 1, 1, 0]
    assert math.isnan(t.loc["b", "median_s"])


def test_a_key_twice_in_one_source_is_counted_and_the_completed_one_kept():
    a = [env("r1", status="exception"), env("r1", {"l": "x"}, completed="2026-01-01T00:00:00Z")]
    cmp = lp.compare({"a": a, "b": [env("r1", {"l": "x"})]}, fields={"l": "category"})
    assert cmp.turnaround().loc["a", "duplicates"] == 1
    assert row(cmp.agreement(), "l")["agreement"] == 1.0


def test_kappa_is_nan_when_both_raters_always_say_one_thing():
    src = {
        "a": [env("r1", {"l": "x"}), env("r2", {"l": "x"})],
        "b": [env("r1", {"l": "x"}), env("r2", {"l": "x"})],
    }
    r = row(lp.compare(src, fields={"l": "category"}).agreement(), "l")
    assert r["agreement"] == 1.0 and math.isnan(r["kappa"]) and math.isnan(r["alpha"])


@pytest.mark.parametrize(
    ("sources", "fields", "field", "words"),
    [
        ({"a": []}, None, "sources", "two or more"),
        ({"a": [], "b": "text"}, None, "sources", "iterable of envelope"),
        ({"a": [{"no": "key"}], "b": []}, None, "sources", "item #0"),
        ({"a": [], "b": []}, {"l": "colour"}, "fields", "kind must be one of"),
        ({"a": [], "b": []}, {"l": ({"a": "l"}, "category")}, "fields", "no path for the sources ['b']"),
        (
            {"a": [], "b": []},
            {"l": ({"a": "l", "b": "l", "z": "l"}, "category")},
            "fields",
            "unknown sources",
        ),
        ({"a": [], "b": []}, {"l": (3, "category")}, "fields", "a dotted path or a callable"),
        ({"a": [], "b": []}, None, "fields", "share no output field"),
    ],
)
def test_bad_arguments_are_invalid_input_naming_them(sources, fields, field, words):
    with pytest.raises(lp.InvalidInput) as e:
        lp.compare(sources, fields=fields)
    assert e.value.field == field and words in str(e.value)


def test_unknown_strategy_and_field_are_invalid_input():
    cmp = lp.compare(two_sources(), fields={"label": "category"})
    with pytest.raises(lp.InvalidInput) as e:
        cmp.consensus(strategy="mean")
    assert e.value.field == "strategy"
    with pytest.raises(lp.InvalidInput) as e:
        cmp.disagreements("colour")
    assert e.value.field == "field"


def test_metrics_agree_with_the_textbook_formulas_on_a_known_example():
    from labelport._agreement import cohen_kappa, krippendorff_alpha

    # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", the nominal example with missing
    # values (4 coders, 12 units): alpha = 0.743.
    data = [
        [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
        [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
        [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
        [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
    ]
    units = [[c[u] for c in data if c[u] is not None] for u in range(12)]
    assert krippendorff_alpha(units, "nominal") == pytest.approx(0.743, abs=5e-4)
    # Cohen's kappa, 2x2 with p_o = 0.8, p_e = 0.5 * 0.5 + 0.5 * 0.5 = 0.5: 0.6.
    a = ["y"] * 5 + ["n"] * 5
    b = ["y", "y", "y", "y", "n", "n", "n", "n", "y", "n"]
    assert cohen_kappa(a, b) == pytest.approx((0.8 - 0.5) / 0.5)
