"""Hourly totals of each vehicle's readings, kept by the database for history charts.

A `ReadingHour` holds, for one vehicle and one UTC hour, what the bucket aggregates need and can
add up across hours: the reading count, the sum and count of state-of-charge values, how many
readings report a charging state and how many of those say CHARGING, and the time and place of
the newest reading with a position. A week of 1-hour (or a year of 1-day) buckets then reads 168 (8,760)
rows instead of 10,080 (525,600) readings.

Triggers on `telemetry_reading` (migration 0005) keep it in step with every write, whichever code
or SQL makes it: an insert adds to its hour, a delete or an update recomputes the hours it
touched from the readings. Nothing in Python writes it; `telemetry.selectors` reads it.
"""

from django.db import models

from vehicles.models import Vehicle

HOUR_SECONDS = 3600


class ReadingHour(models.Model):
    id = models.BigAutoField(primary_key=True)
    vehicle = models.ForeignKey(Vehicle, on_delete=models.CASCADE, related_name="+", db_index=False)
    # Start of the UTC hour, in seconds since the Unix epoch (a multiple of 3600).
    hour_epoch = models.BigIntegerField()
    readings = models.PositiveIntegerField()
    soc_sum = models.FloatField()
    soc_count = models.PositiveIntegerField()
    with_state = models.PositiveIntegerField()
    charging = models.PositiveIntegerField()
    # The newest reading of the hour that has a position: when, and where.
    last_position_at = models.DateTimeField(null=True)
    last_latitude = models.FloatField(null=True)
    last_longitude = models.FloatField(null=True)

    class Meta:
        constraints = [
            # The triggers' upsert target; its index serves every read, by vehicle and hour range.
            models.UniqueConstraint(
                fields=["vehicle", "hour_epoch"], name="unique_reading_hour_per_vehicle"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.vehicle_id} hour {self.hour_epoch}"
