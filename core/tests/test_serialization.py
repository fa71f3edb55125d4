"""`represent` gives what `Serializer(...).data` gives, without copying fields per call."""

import copy
import threading
from datetime import UTC, datetime
from types import SimpleNamespace
from unittest.mock import patch

from rest_framework import serializers

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
