"""Row leases shared by the poller (TelemetryState) and the webhook followers (WebhookEvent):
a row is claimed by writing `lease_owner` and `lease_until`; the claim is live only while
`lease_until` is in the future."""

import os
import socket
import uuid
from datetime import datetime

from django.db.models import Q


def lease_owner() -> str:
    """A lease owner unique to one claimer: host, process and a random part (≤ 77 characters)."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_free(now: datetime) -> Q:
    """Rows no live lease holds at `now` (never leased, released, or run out)."""
    return Q(lease_until__isnull=True) | Q(lease_until__lt=now)
