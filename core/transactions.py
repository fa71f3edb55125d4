"""Transaction helpers shared by the apps."""

from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db import connection, transaction


def savepoint_if_in_transaction() -> AbstractContextManager[Any]:
    """For one INSERT that may fail on a constraint the caller handles (a duplicate): inside a
    caller's transaction, a savepoint, so the failure does not break that transaction; in
    autocommit, nothing, as the statement is atomic on its own and BEGIN/COMMIT would be two
    more round trips on a hot path (the poller's readings, the webhook's store)."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()
