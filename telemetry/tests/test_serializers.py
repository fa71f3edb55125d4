"""UtcDateTimeField writes what DRF's DateTimeField in UTC writes, by its own shorter path."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework import serializers

from telemetry.serializers import UtcDateTimeField

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware = st.datetimes(timezones=st.just(UTC) | offsets)
values = aware | st.datetimes() | st.none() | st.text(max_size=5)


def drf_utc(**kwargs) -> serializers.DateTimeField:
    return serializers.DateTimeField(default_timezone=UTC, **kwargs)


@given(value=values)
def test_same_text_as_drf_for_any_value(value):
    expected = drf_utc().to_representation(value)
    assert UtcDateTimeField().to_representation(value) == expected


@given(value=aware)
def test_another_format_goes_to_drf(value):
    fmt = "%Y/%m/%d %H:%M"
    assert UtcDateTimeField(format=fmt).to_representation(value) == drf_utc(
        format=fmt
    ).to_representation(value)


def test_a_time_that_overflows_in_utc_fails_as_in_drf():
    ahead = datetime.max.replace(tzinfo=timezone(-timedelta(hours=5)))
    with pytest.raises(serializers.ValidationError) as ours:
        UtcDateTimeField().to_representation(ahead)
    with pytest.raises(serializers.ValidationError) as drfs:
        drf_utc().to_representation(ahead)
    assert ours.value.detail == drfs.value.detail


def test_utc_is_written_with_z():
    moment = datetime(2025, 3, 1, 12, 0, 5, 120, tzinfo=timezone(timedelta(hours=2)))
    assert UtcDateTimeField().to_representation(moment) == "2025-03-01T10:00:05.000120Z"
