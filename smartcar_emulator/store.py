"""The emulator's whole state, in memory, behind one lock.

Owns the data (fleet, grants, codes, tokens, consent tickets, faults, call counts) and `reset`.
No models and no database: a restart or `reset()` forgets everything. Every read-modify-write of
the state happens inside `locked()`; nothing here does I/O or sleeps while holding the lock.
"""

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from smartcar_emulator import conf
from smartcar_emulator.faults import Faults
from smartcar_emulator.fleet import SimulatedVehicle, build_fleet


@dataclass
class Grant:
    id: str
    client_id: str
    user_id: str
    make: str
    vehicle_ids: list[str]
    permissions: list[str]
    mode: str
    created_at: float
    revoked: bool = False


@dataclass
class AuthCode:
    grant_id: str
    client_id: str
    redirect_uri: str
    expires_at: float
    used: bool = False


@dataclass
class AccessToken:
    grant_id: str
    expires_at: float


@dataclass
class RefreshToken:
    grant_id: str
    expires_at: float
    used_at: float | None = None


@dataclass
class ConsentTicket:
    nonce: str
    params: dict[str, str]
    expires_at: float


@dataclass
class State:
    seed: int
    fleet: tuple[SimulatedVehicle, ...]
    grants: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, AuthCode] = field(default_factory=dict)
    access_tokens: dict[str, AccessToken] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    tickets: dict[str, ConsentTicket] = field(default_factory=dict)
    global_faults: Faults = field(default_factory=Faults)
    vehicle_faults: dict[str, Faults] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    path_calls: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def vehicles_by_id(self) -> dict[str, SimulatedVehicle]:
        return {vehicle.id: vehicle for vehicle in self.fleet}


_lock = threading.RLock()
_state: State | None = None


def _fresh(seed: int) -> State:
    return State(seed=seed, fleet=build_fleet(seed))


@contextmanager
def locked() -> Iterator[State]:
    """The state, held under the lock for the duration of the block."""
    global _state
    with _lock:
        if _state is None:
            _state = _fresh(conf.seed())
        yield _state


def reset(seed: int | None = None) -> State:
    """Forget every grant, token, fault and count; rebuild the fleet from `seed` (or the setting)."""
    global _state
    with _lock:
        _state = _fresh(conf.seed() if seed is None else seed)
        return _state
