"""`manage.py rotate_token_key`: re-encrypt every encrypted column under the first key.

Run after putting a new key first in TOKEN_ENCRYPTION_KEYS (old keys still listed); once it
reports no unreadable rows, the old keys can be removed. Rows go through `.update()` (no save
signals, `updated_at` untouched), in batches, each batch locked while it is rewritten so that a
token refreshed meanwhile is never overwritten with its older value. Values nobody can decrypt
are counted and left as they are; the command then exits non-zero.

Never prints or logs a token, a ciphertext or a key: only model, field and counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, transaction
from django.db.models import ExpressionWrapper, F, Value

from vehicles.crypto import TokenDecryptionError, reencrypt
from vehicles.fields import EncryptedTextField


@dataclass
class FieldCounts:
    reencrypted: int = 0
    current: int = 0
    unreadable: int = 0
    empty: int = 0


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every concrete model with its own EncryptedTextField columns (each table once)."""
    found = []
    for model in apps.get_models():
        if model._meta.proxy or model._meta.swapped:
            continue
        names = [
            field.attname
            for field in model._meta.local_concrete_fields
            if isinstance(field, EncryptedTextField)
        ]
        if names:
            found.append((model, names))
    return found


def rotate_model(
    model: type[models.Model], field_names: list[str], *, dry_run: bool, batch_size: int
) -> dict[str, FieldCounts]:
    """Re-encrypt `field_names` of every row of `model`; counts per field."""
    counts = {name: FieldCounts() for name in field_names}
    # Read the stored bytes, not the field's decrypted value: we must know which key opens them.
    raw = {
        f"_raw_{name}": ExpressionWrapper(F(name), output_field=models.BinaryField())
        for name in field_names
    }
    manager = model._base_manager
    last_pk: Any = None
    while True:
        with transaction.atomic():
            rows_query = manager.order_by("pk")
            if not dry_run:
                rows_query = rows_query.select_for_update()
            if last_pk is not None:
                rows_query = rows_query.filter(pk__gt=last_pk)
            rows = list(rows_query.annotate(**raw).values_list("pk", *raw)[:batch_size])
            for pk, *blobs in rows:
                changes = _rotate_row(dict(zip(field_names, blobs, strict=True)), counts)
                if changes and not dry_run:
                    manager.filter(pk=pk).update(**changes)
        if len(rows) < batch_size:
            return counts
        last_pk = rows[-1][0]


def _rotate_row(blobs: dict[str, Any], counts: dict[str, FieldCounts]) -> dict[str, Value]:
    changes: dict[str, Value] = {}
    for name, blob in blobs.items():
        tally = counts[name]
        if blob is None or len(blob) == 0:
            tally.empty += 1
            continue
        try:
            fresh = reencrypt(bytes(blob))
        except TokenDecryptionError:
            tally.unreadable += 1
            continue
        if fresh is None:
            tally.current += 1
        else:
            tally.reencrypted += 1
            # A plain BinaryField value: written as is, not encrypted again by our field.
            changes[name] = Value(fresh, output_field=models.BinaryField())
    return changes


class Command(BaseCommand):
    help = (
        "Re-encrypt every encrypted token under the first TOKEN_ENCRYPTION_KEYS key and print "
        "counts per model and field. Exits non-zero if any value cannot be decrypted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count only; change nothing.")
        parser.add_argument(
            "--batch-size", type=int, default=500, help="Rows per transaction (default 500)."
        )

    def handle(self, *args: Any, dry_run: bool, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        unreadable = 0
        verb = "would re-encrypt" if dry_run else "re-encrypted"
        for model, field_names in encrypted_fields():
            counts = rotate_model(model, field_names, dry_run=dry_run, batch_size=batch_size)
            for name, tally in counts.items():
                unreadable += tally.unreadable
                self.stdout.write(
                    f"{model._meta.label}.{name}: {verb} {tally.reencrypted}, "
                    f"already current {tally.current}, unreadable {tally.unreadable}, "
                    f"empty {tally.empty}"
                )
        if dry_run:
            self.stdout.write("Dry run: nothing was changed.")
        if unreadable:
            raise CommandError(
                f"{unreadable} value(s) cannot be decrypted with any TOKEN_ENCRYPTION_KEYS key and "
                "were left untouched; their accounts must re-authenticate. Keep the old keys "
                "until this is resolved."
            )
