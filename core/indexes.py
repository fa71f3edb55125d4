"""An index in `ORDER BY a ASC NULLS FIRST, b, …` order on both databases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.db import models


class NullsFirstIndex(models.Index):
    """An index on `fields` (names, ascending), the first with NULLs first, so that a query
    ordered `ORDER BY first ASC NULLS FIRST, …` reads it in order and stops at its LIMIT.

    PostgreSQL puts NULLs last in an ascending index unless told; SQLite puts them first and
    refuses NULLS FIRST in CREATE INDEX, so there the index is written plainly."""

    def __init__(self, *, fields: Sequence[str], name: str) -> None:
        first, *rest = fields
        super().__init__(
            models.F(first).asc(nulls_first=True), *(models.F(field) for field in rest), name=name
        )
        self.field_names_in_order = list(fields)

    def deconstruct(self) -> Any:
        path, _, _ = super().deconstruct()
        return path, (), {"fields": self.field_names_in_order, "name": self.name}

    def create_sql(self, model: Any, schema_editor: Any, using: str = "", **kwargs: Any) -> Any:
        if schema_editor.connection.vendor == "sqlite":
            plain = models.Index(fields=self.field_names_in_order, name=self.name)
            return plain.create_sql(model, schema_editor, using=using, **kwargs)
        return super().create_sql(model, schema_editor, using=using, **kwargs)
