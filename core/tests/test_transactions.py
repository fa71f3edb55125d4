"""savepoint_if_in_transaction: a savepoint inside a caller's transaction, nothing in autocommit."""

import pytest
from django.contrib.auth import get_user_model
from django.db import IntegrityError, connection
from django.test.utils import CaptureQueriesContext

from core.transactions import savepoint_if_in_transaction

User = get_user_model()


@pytest.mark.django_db
def test_a_failed_insert_leaves_the_callers_transaction_usable():
    User.objects.create(username="taken")

    with pytest.raises(IntegrityError), savepoint_if_in_transaction():
        User.objects.create(username="taken")

    assert connection.in_atomic_block
    assert User.objects.filter(username="taken").count() == 1  # the transaction still works


@pytest.mark.django_db(transaction=True)
def test_in_autocommit_the_insert_is_sent_alone():
    assert not connection.in_atomic_block
    with CaptureQueriesContext(connection) as queries, savepoint_if_in_transaction():
        User.objects.create(username="alone")

    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["INSERT"]
    with pytest.raises(IntegrityError), savepoint_if_in_transaction():
        User.objects.create(username="alone")
    assert User.objects.count() == 1
