from __future__ import annotations

from typing import Any

import pytest

from riverbed import records
from riverbed.exceptions import InvalidRecord
from riverbed.records import FieldMapping, decode_event, decode_label

MAX = 10_000


@pytest.mark.parametrize(
    ("raw", "stage", "reason"),
    [
        (None, "deserialize", "tombstone"),
        (b"{not json", "deserialize", "not valid JSON"),
        (b'{"id":"a","x":{"f":NaN}}', "deserialize", "not valid JSON"),
        (b'{"id":"a","x":{"f":1e999}}', "deserialize", "infinity"),
        (b"\xff\xfe", "deserialize", "not valid JSON"),
        (b"[1,2]", "validate", "JSON object"),
        (b'{"x":{"f":1}}', "validate", '"id" must be a non-empty string, got missing'),
        (b'{"id":7,"x":{"f":1}}', "validate", '"id" must be a non-empty string, got int'),
        (b'{"id":"a"}', "validate", '"x" must be a non-empty object'),
        (b'{"id":"a","x":[]}', "validate", '"x" must be a non-empty object'),
        (b'{"id":"a","x":{"f":null}}', "validate", '"x" has no features'),
        (b'{"id":"a","x":{"f":{"g":[1]}}}', "validate", '"x.f.g" must be'),
        (b'{"id":"a","x":{"f":1},"y":[1]}', "validate", '"y" must be'),
        (b'{"id":"a","x":{"f":1},"ts":"now"}', "validate", '"ts" is not an ISO-8601 time'),
        (b'{"id":"a","x":{"f":1},"ts":"2026-11-30T10:00:00"}', "validate", "no time zone"),
        (b'{"id":"a","x":{"f":1},"ts":-5}', "validate", '"ts" must be'),
        (b'{"id":"a","x":{"f":"' + b"z" * MAX + b'"}}', "deserialize", "RIVERBED_MAX_RECORD_BYTES"),
    ],
)
def test_bad_events(raw: bytes | None, stage: str, reason: str) -> None:
    with pytest.raises(InvalidRecord) as exc:
        decode_event(raw, MAX)
    assert exc.value.stage == stage
    assert reason in exc.value.reason


def test_good_event_keeps_types() -> None:
    ev = decode_event(b'{"id":"a","x":{"i":1,"f":1.0,"s":"x","b":false},"y":0,"ts":5}', MAX)
    assert ev.x == {"i": 1, "f": 1.0, "s": "x", "b": False}
    assert type(ev.x["f"]) is float and type(ev.x["i"]) is int
    assert ev.y == 0 and ev.ts == 5


def test_null_label_means_no_label() -> None:
    assert decode_event(b'{"id":"a","x":{"f":1},"y":null}', MAX).y is None


@pytest.mark.parametrize(
    "raw", [b'{"id":"a"}', b'{"id":"a","y":null}', b'{"y":1}', b'{"id":"a","y":{}}']
)
def test_bad_labels(raw: bytes) -> None:
    with pytest.raises(InvalidRecord):
        decode_label(raw, MAX)


def _nested(levels: int) -> bytes:
    """An event whose features nest ``levels`` objects deep (written out: orjson's
    own encoder stops at 254)."""
    return b'{"id": "deep", "x": ' + b'{"a": ' * levels + b"1" + b"}" * (levels + 1)


@pytest.mark.parametrize(
    "mapping",
    [
        None,
        FieldMapping(features=("*",)),
        FieldMapping(features=("x",), prediction_fields=("x.a",)),
        FieldMapping(features=("x.a",)),
    ],
    ids=["default", "every field", "a prediction field", "a path"],
)
def test_a_record_nested_1000_deep_is_a_bad_record_not_a_recursion(
    mapping: FieldMapping | None,
) -> None:
    decode = mapping.event_decoder() if mapping else FieldMapping().event_decoder()
    with pytest.raises(InvalidRecord, match=r"nested deeper than 32 levels \(RIVERBED_MAX_DEPTH\)"):
        decode(_nested(1000), None, 10**7)
    assert decode(_nested(31), None, 10**7).x  # 32 levels, the record and "x" counted
    with pytest.raises(InvalidRecord):
        decode(_nested(32), None, 10**7)


def test_the_depth_limit_is_a_setting() -> None:
    shallow = FieldMapping(max_depth=4).event_decoder()
    assert shallow(_nested(3), None, 1000).x == {"a.a.a": 1}
    with pytest.raises(InvalidRecord, match="deeper than 4 levels"):
        shallow(_nested(4), None, 1000)


def test_a_prediction_field_is_bounded_too() -> None:
    deep = b'{"a": ' * 40 + b"1" + b"}" * 40
    m = FieldMapping(features=("f",), prediction_fields=("meta",))
    with pytest.raises(InvalidRecord, match='"meta" is nested deeper'):
        m.event(b'{"id": "a", "f": 1, "meta": ' + deep + b"}", None, 10**6)
    assert m.event(b'{"id": "a", "f": 1, "meta": {"k": [1, 2]}}', None, 1000).fields == {
        "meta": {"k": [1, 2]}
    }


def test_ever_new_nested_prefixes_stay_within_the_name_cache_budget(monkeypatch: Any) -> None:
    monkeypatch.setattr(records._NameCache, "max_bytes", 200_000)
    before = records.name_cache()["resets"]
    for i in range(20_000):  # {"x": {"k<new>": {"v": 1}}}: a new prefix each time
        raw = b'{"id": "a", "x": {"k%d": {"v": 1}}}' % i
        assert decode_event(raw, 1000).x == {f"k{i}.v": 1}
        assert records.name_cache()["bytes"] <= 200_000 + 1000
    assert records.name_cache()["resets"] > before


@pytest.mark.parametrize(
    ("x", "huge"),
    [
        (b'{"a": 1.5, "b": "FR", "c": 3, "d": true}', False),
        (b'{"a": 1e300, "b": "FR"}', True),
        (b'{"a": -1e31}', True),
        (b'{"a": 1e29, "b": 100000000000000000000}', False),  # huge() looks at floats only
        (b'{"a": 1.0, "b": {"c": 1e300}}', None),  # flattened: the learner checks
        (b'{"a": 1.0, "b": null}', None),
    ],
)
def test_the_decoder_tells_the_guard_of_huge_floats(x: bytes, huge: bool | None) -> None:
    from riverbed.learning.guard import huge as guard_huge

    event = decode_event(b'{"id": "a", "x": %b}' % x, 1000)
    assert event.huge is huge
    if huge is not None:
        assert guard_huge(event.x) is huge
