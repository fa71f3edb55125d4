"""`OrjsonRenderer` writes what DRF's `JSONRenderer` writes (see core/renderers.py)."""

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.utils.functional import lazy
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from core.renderers import OrjsonRenderer

drf, ours = JSONRenderer(), OrjsonRenderer()

# What our serializers hand the renderer: strings (any text, U+2028 included), 64-bit ints,
# finite floats, booleans, None, and DRF-formatted or raw times, UUIDs and Decimals.
_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(["\u2028", "a\u2029b", "é", "\U0001f697"])
    | st.datetimes(timezones=st.just(UTC))
    | st.datetimes()
    | st.dates()
    | st.times()
    | st.uuids()
    | st.decimals(allow_nan=False, allow_infinity=False, places=4)
)
_documents = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=8), children, max_size=5)
        | st.tuples(children, children)
    ),
    max_leaves=30,
)


def _has_float(value) -> bool:
    if isinstance(value, float | Decimal):  # DRF writes a Decimal as a float
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_has_float(v) for v in value)
    return False


@settings(max_examples=400, deadline=None)
@given(_documents)
def test_any_document_renders_as_drf_renders_it(document):
    expected, got = drf.render(document), ours.render(document)
    # Floats may differ only in spelling (0.00001 for Python's 1e-05): the same number to any
    # parser. Everything else is the same bytes.
    if _has_float(document):
        assert json.loads(got) == json.loads(expected)
    else:
        assert got == expected


def test_times_are_written_by_drfs_encoder_with_z_for_utc():
    moment = datetime(2026, 12, 6, 5, 7, 55, 281984, tzinfo=UTC)
    document = {"at": moment, "day": date(2026, 12, 6), "time": time(5, 7, 55, 123456)}
    assert ours.render(document) == drf.render(document)
    assert b'"2026-12-06T05:07:55.281984Z"' in ours.render(document)  # orjson: "+00:00"


def test_decimals_uuids_lazy_strings_and_durations_go_through_drfs_encoder():
    lazy_text = lazy(lambda: "translated", str)()
    document = {
        "amount": Decimal("12.50"),
        "id": uuid.UUID(int=7),
        "label": lazy_text,
        "every": timedelta(minutes=5),
    }
    assert ours.render(document) == drf.render(document)


def test_line_and_paragraph_separators_are_escaped():
    assert ours.render({"text": "a\u2028b\u2029c"}) == b'{"text":"a\\u2028b\\u2029c"}'


def test_none_is_an_empty_body():
    assert ours.render(None) == b""


def test_an_integer_beyond_64_bits_is_rendered_by_drf():
    document = {"big": 2**70, "small": -(2**70)}
    assert (
        ours.render(document)
        == drf.render(document)
        == b'{"big":%d,"small":%d}'
        % (
            2**70,
            -(2**70),
        )
    )


def test_keys_that_are_not_strings_are_rendered_by_drf():
    document = {1: "one", None: "none", 2.5: "half"}
    assert ours.render(document) == drf.render(document)


def test_an_indent_in_the_media_type_is_honoured_as_drf_does():
    document = {"a": [1, 2]}
    media_type = "application/json; indent=2"
    assert ours.render(document, media_type) == drf.render(document, media_type)
    assert b"\n  " in ours.render(document, media_type)


def test_settings_asking_for_ascii_or_spaces_are_honoured(monkeypatch):
    monkeypatch.setattr(OrjsonRenderer, "ensure_ascii", True)
    assert ours.render({"car": "é"}) == b'{"car":"\\u00e9"}'
    monkeypatch.setattr(OrjsonRenderer, "ensure_ascii", False)
    monkeypatch.setattr(OrjsonRenderer, "compact", False)
    assert ours.render({"a": 1}) == b'{"a": 1}'


def test_what_drf_cannot_write_fails_as_it_fails_in_drf():
    @dataclass
    class Point:
        x: int

    with pytest.raises(TypeError):
        drf.render({"p": Point(1)})
    with pytest.raises(TypeError):
        ours.render({"p": Point(1)})


def test_a_non_finite_float_is_null_not_a_crash():
    # On purpose (see the module docstring): DRF's strict renderer raises here.
    with pytest.raises(ValueError, match="Out of range float"):
        drf.render({"soc": float("nan")})
    assert ours.render({"soc": float("nan"), "range": float("inf")}) == b'{"soc":null,"range":null}'


def test_the_api_renders_with_it():
    from rest_framework.settings import api_settings

    assert [OrjsonRenderer] == api_settings.DEFAULT_RENDERER_CLASSES
