"""Fleet and simulation: determinism for a seed, VINs, plausible behaviour over time."""

import itertools
import math

import pytest

from smartcar_emulator import simulation
from smartcar_emulator.fleet import build_fleet, user_id_for, vin_check_digit
from smartcar_emulator.simulation import CYCLE_S, state_at

T0 = 1_767_225_600.0


def test_same_seed_same_fleet_and_states():
    assert build_fleet(42) == build_fleet(42)
    for a, b in zip(build_fleet(42), build_fleet(42), strict=True):
        assert state_at(a, T0 + 1234) == state_at(b, T0 + 1234)


def test_different_seed_different_fleet():
    ids_42 = {v.id for v in build_fleet(42)}
    ids_43 = {v.id for v in build_fleet(43)}
    assert ids_42.isdisjoint(ids_43)
    assert [v.vin for v in build_fleet(42)] != [v.vin for v in build_fleet(43)]


def test_fleet_has_several_brands_and_known_models():
    fleet = build_fleet(42)
    models = {(v.make, v.model) for v in fleet}
    assert {("TESLA", "Model 3"), ("FORD", "Mustang Mach-E"), ("VOLKSWAGEN", "ID.4")} <= models
    assert len({v.make for v in fleet}) >= 6
    assert len({v.id for v in fleet}) == len(fleet)


def test_vins_are_plausible_and_check_digits_valid():
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"  # the textbook example VIN
    for vehicle in build_fleet(42):
        assert len(vehicle.vin) == 17
        assert not set(vehicle.vin) & set("IOQ")
        assert vehicle.vin[8] == vin_check_digit(vehicle.vin)
    assert build_fleet(42)[0].vin.startswith("5YJ3")


def test_user_id_is_stable_per_seed_brand_and_account():
    assert user_id_for(42, "TESLA", "driver") == user_id_for(42, "TESLA", "driver")
    assert user_id_for(42, "TESLA", "driver") != user_id_for(42, "FORD", "driver")
    assert user_id_for(42, "TESLA", "driver") != user_id_for(43, "TESLA", "driver")


@pytest.mark.parametrize("vehicle", build_fleet(42), ids=lambda v: v.model)
def test_state_over_one_cycle_is_plausible(vehicle):
    states = [state_at(vehicle, T0 + minute * 60) for minute in range(0, 2 * CYCLE_S // 60, 5)]
    for before, after in itertools.pairwise(states):
        assert after.odometer_km >= before.odometer_km
        assert 0 <= after.soc <= vehicle.charge_limit
        if before.phase == after.phase == "driving":
            assert after.soc < before.soc
            assert after.odometer_km > before.odometer_km
            assert (after.latitude, after.longitude) != (before.latitude, before.longitude)
        if before.charge_state == after.charge_state == simulation.CHARGING:
            assert after.soc > before.soc
            assert after.is_plugged_in
        if after.phase in ("parked_home", "parked_work"):
            assert after.charge_state == simulation.NOT_CHARGING
            assert not after.is_plugged_in
    charges = [s for s in states if s.phase == "charging"]
    assert any(s.charge_state == simulation.CHARGING for s in charges)
    full = [s for s in charges if s.charge_state == simulation.FULLY_CHARGED]
    assert full
    assert all(s.soc == vehicle.charge_limit for s in full)
    # After two cycles the car has driven four commutes.
    assert math.isclose(
        states[-1].odometer_km - states[0].odometer_km, 4 * vehicle.trip_km, abs_tol=vehicle.trip_km
    )


def test_state_is_sampled_at_the_last_report():
    vehicle = build_fleet(42)[0]
    assert state_at(vehicle, T0 + 59.9) == state_at(vehicle, T0)
    assert state_at(vehicle, T0 + 59.9).oem_updated_at == T0
