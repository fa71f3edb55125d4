"""`represent` gives what `Serializer(...).data` gives, without copying fields per call."""

import copy
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.fields import get_attribute as drf_get_attribute

from core.serialization import represent


class Point(serializers.Serializer):
    at = serializers.DateTimeField()
    value = serializers.FloatField(allow_null=True)
    label = serializers.SerializerMethodField()

    def get_label(self, point) -> str:
        return f"{point.value}@{point.at:%H:%M}"


class Series(serializers.Serializer):
    name = serializers.CharField()
    last = Point(allow_null=True)
    points = Point(many=True)


def point(hour: int, value: float | None) -> SimpleNamespace:
    return SimpleNamespace(at=datetime(2025, 3, 1, hour, tzinfo=UTC), value=value)


SERIES = [
    SimpleNamespace(name="a", last=point(9, 1.5), points=[point(8, None), point(9, 1.5)]),
    SimpleNamespace(name="b", last=None, points=[]),
]


def test_same_output_as_data_for_one_and_many():
    for series in SERIES:
        assert represent(Series, series) == Series(series).data
    assert represent(Series, SERIES, many=True) == Series(SERIES, many=True).data
    assert represent(Point, point(10, 2.0)) == Point(point(10, 2.0)).data


def test_fields_are_copied_once_per_thread_not_per_call():
    represent(Series, SERIES[0])  # this thread's instance, fields copied once
    with patch("rest_framework.serializers.copy.deepcopy", wraps=copy.deepcopy) as copies:
        for series in SERIES * 3:
            represent(Series, series)
    assert copies.call_count == 0

    with patch("rest_framework.serializers.copy.deepcopy", wraps=copy.deepcopy) as copies:
        assert Series(SERIES[0]).data
    assert copies.call_count > 0  # what `.data` costs every time


def test_threads_get_their_own_instances_and_the_same_output():
    expected = [Series(series).data for series in SERIES]
    results, errors = [], []

    def run():
        try:
            for _ in range(50):
                results.append([represent(Series, series) for series in SERIES])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert all(result == expected for result in results)


# --- The direct path of flat serializers ------------------------------------------------------


class Flat(serializers.Serializer):
    """Plain value fields only, renamed sources included: represented by the direct path."""

    when = serializers.DateTimeField(source="at")
    amount = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=["a", "b"])
    flag = serializers.BooleanField(allow_null=True)
    note = serializers.CharField(default="none", source="text")


class Holder(serializers.Serializer):
    """Not flat (a nested list): DRF's own method, with the flat child on the direct path."""

    title = serializers.CharField()
    items = Flat(many=True)


flats = st.builds(
    SimpleNamespace,
    at=st.datetimes(timezones=st.just(UTC)),
    amount=st.none() | st.floats(allow_nan=False),
    count=st.integers(),
    kind=st.sampled_from(["a", "b"]),
    flag=st.none() | st.booleans(),
    text=st.text(max_size=5),
)


@settings(max_examples=100, deadline=None)
@given(items=st.lists(flats, max_size=5))
def test_the_direct_path_gives_what_drf_gives(items):
    holder = SimpleNamespace(title="t", items=items)

    assert represent(Holder, holder) == Holder(holder).data
    assert represent(Flat, items, many=True) == Flat(items, many=True).data


def test_the_direct_path_skips_drf_attribute_walk():
    item = SimpleNamespace(
        at=datetime(2025, 3, 1, tzinfo=UTC), amount=1.0, count=2, kind="a", flag=True, text="x"
    )
    represent(Flat, item)
    with patch("rest_framework.fields.get_attribute", wraps=drf_get_attribute) as walks:
        represent(Flat, item)
    assert walks.call_count == 0

    with patch("rest_framework.fields.get_attribute", wraps=drf_get_attribute) as walks:
        represent(Point, point(10, 2.0))
    assert walks.call_count > 0  # SerializerMethodField: not flat, DRF's own method


class WithMethod:
    at = datetime(2025, 3, 1, tzinfo=UTC)
    amount = None
    kind = "b"
    flag = None
    text = "t"

    def count(self) -> int:  # DRF calls a simple callable
        return 7


@pytest.mark.parametrize(
    "instance",
    [
        # A mapping: DRF reads keys.
        {
            "at": datetime(2025, 3, 1, tzinfo=UTC),
            "amount": 1.5,
            "count": 1,
            "kind": "a",
            "flag": False,
            "text": "m",
        },
        WithMethod(),
        # `text` missing: DRF uses the field's default.
        SimpleNamespace(
            at=datetime(2025, 3, 1, tzinfo=UTC), amount=None, count=3, kind="a", flag=None
        ),
    ],
    ids=["mapping", "callable", "missing-with-default"],
)
def test_what_the_direct_path_does_not_cover_goes_to_drf(instance):
    assert represent(Flat, instance) == Flat(instance).data


def test_a_missing_required_attribute_fails_as_in_drf():
    incomplete = SimpleNamespace(
        at=datetime(2025, 3, 1, tzinfo=UTC), amount=None, kind="a", flag=None, text="t"
    )

    with pytest.raises(AttributeError, match="count") as ours:
        represent(Flat, incomplete)
    with pytest.raises(AttributeError) as drfs:
        Flat(incomplete).data  # noqa: B018 - the property raises

    assert str(ours.value) == str(drfs.value)
