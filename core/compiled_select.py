"""Run a hot SELECT without building or compiling its queryset again on every call.

Django builds a queryset (clone after clone, one per `filter`/`select_related`/…) and compiles
it into SQL on each run. For the API's hottest reads (the caller's user; one of a user's
vehicles with its account, telemetry state and latest reading joined in) building and
compiling cost more than running the query. A `CompiledSelect` is a queryset written once with
named placeholders, `Param`s, where the per-call values go:

    _ONE_VEHICLE = CompiledSelect(
        lambda: Vehicle.objects.filter(owner_id=Param("owner_id", ...), pk=Param("pk", ...))
    )
    _ONE_VEHICLE.fetch(owner_id=user.pk, pk=vehicle_id)

The queryset is built and compiled once per thread (compilers hold their thread's connection);
each call binds its values into the kept SQL's parameters, each converted for the database by
the placeholder's field exactly as the ORM converts a lookup's value. A placeholder is always
`= %s`, so None is refused (the ORM would write `IS NULL`), as is a missing or unknown name.
Querysets whose results the kept steps would not reproduce (values(), annotations,
prefetch_related, …) are refused when first compiled. `CompiledRows` does the same for a
`values_list()` queryset and returns its tuples, `CompiledUpdate` for an UPDATE of a filtered
queryset (a `Param` may stand for a value set as well as for one filtered on), and
`RowsUpdate` for an UPDATE that covers many rows each with values of its own.

Uses Django's compiler internals (`select`, `klass_info`, converters, related populators), the
same steps `ModelIterable` and `results_iter` take; `core/tests/test_compiled_select.py` pins
the behaviour against the ORM's on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from django.db import connections, router
from django.db.models import Expression, Field, Model, QuerySet, sql
from django.db.models.query import ModelIterable, ValuesListIterable, get_related_populators

M = TypeVar("M", bound=Model)
T = TypeVar("T")
R = TypeVar("R")


class Param(Expression):
    """A value given at fetch time, by name, converted by `field` (the column's model field).

    `nullable` lets the value be None, for a value an UPDATE sets (or a CASE returns), never
    for one compared with `=`."""

    def __init__(self, name: str, field: Field[Any, Any], *, nullable: bool = False) -> None:
        super().__init__(output_field=field)
        self.name = name
        self.nullable = nullable

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        return "%s", (_Slot(self.name, self.output_field, self.nullable),)


def column(model: type[Model], name: str) -> Field[Any, Any]:
    """`model`'s field `name`, for a `Param` or an `output_field` (a concrete column, never a
    reverse relation)."""
    found = model._meta.get_field(name)
    if not isinstance(found, Field):
        raise TypeError(f"{model.__name__}.{name} is not a column")
    return found


@dataclass(frozen=True)
class _Slot:
    """Where a `Param`'s value goes in the compiled SQL's parameters."""

    name: str
    field: Any
    nullable: bool = False

    def bind(self, values: dict[str, Any], connection: Any) -> Any:
        value = values[self.name]
        if value is None:
            if self.nullable:
                return None
            raise ValueError(f"CompiledSelect parameter {self.name!r} is None")
        return self.field.get_db_prep_value(value, connection, prepared=False)


@dataclass(frozen=True)
class _Sql:
    """A compiled queryset: its SQL, its parameters (constants and slots) and its compiler."""

    sql: str
    params: tuple[Any, ...]
    names: frozenset[str]
    compiler: Any

    def run(self, connection: Any, values: dict[str, Any]) -> Any:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self._bound(connection, values))
            return cursor.fetchall()

    def run_update(self, connection: Any, values: dict[str, Any]) -> int:
        with connection.cursor() as cursor:
            cursor.execute(self.sql, self._bound(connection, values))
            return int(cursor.rowcount)

    def _bound(self, connection: Any, values: dict[str, Any]) -> list[Any]:
        if values.keys() != self.names:
            raise TypeError(
                f"CompiledSelect takes {sorted(self.names)}, was given {sorted(values)}"
            )
        return [p.bind(values, connection) if isinstance(p, _Slot) else p for p in self.params]


@dataclass(frozen=True)
class _Shape:
    query: _Sql
    model: type[Model]
    init_list: list[str]
    model_start: int
    model_end: int
    populators: list[Any]
    converters: dict[int, Any]


class _Kept(Generic[T]):
    """What is kept per thread and database: `compile(queryset, db)` → T, made on first use."""

    writes = False

    def __init__(self, build: Callable[[], QuerySet[Any, Any]]) -> None:
        self._build = build
        self._model: type[Model] | None = None
        self._local = threading.local()

    def _kept(self) -> tuple[T, str, Any]:
        if self._model is None:
            self._model = self._build().model
        db = (router.db_for_write if self.writes else router.db_for_read)(self._model)
        connection = connections[db]
        kept: Any = self._local.__dict__.get(db)
        if kept is None or kept[1] is not connection:
            kept = self._local.__dict__[db] = (self._compile(self._build(), db), connection)
        return kept[0], db, connection

    def _compile(self, queryset: QuerySet[Any], db: str) -> T:
        raise NotImplementedError


class CompiledSelect(_Kept["_Shape"], Generic[M]):
    """`build()` returns the queryset, with a `Param` wherever a call's value goes."""

    def fetch(self, **values: Any) -> list[M]:
        shape, db, connection = self._kept()
        rows = shape.query.run(connection, values)
        if shape.converters:
            rows = shape.query.compiler.apply_converters(rows, shape.converters)
        return [_instance(shape, db, row) for row in rows]

    def _compile(self, queryset: QuerySet[Any], db: str) -> _Shape:
        if queryset._iterable_class is not ModelIterable or not _reproducible(queryset):
            raise TypeError(f"CompiledSelect cannot keep this queryset: {queryset.query}")
        query = _compile_sql(queryset, db)
        compiler = query.compiler
        select, klass_info = compiler.select, compiler.klass_info
        fields = [column[0] for column in select[: compiler.col_count]]
        select_fields = klass_info["select_fields"]
        start, end = select_fields[0], select_fields[-1] + 1
        return _Shape(
            query=query,
            model=klass_info["model"],
            init_list=[column[0].target.attname for column in select[start:end]],
            model_start=start,
            model_end=end,
            # What results_iter would work out again for every call: the columns' converters.
            converters=compiler.get_converters(fields),
            # django-stubs describes a later Django, whose version takes a fetch mode too.
            populators=get_related_populators(klass_info, select, db),  # type: ignore[call-arg]
        )


class CompiledRows(_Kept["tuple[_Sql, dict[int, Any]]"]):
    """`build()` returns a `values_list()` queryset with `Param`s; `fetch` returns its tuples."""

    def fetch(self, **values: Any) -> list[tuple[Any, ...]]:
        (query, converters), _, connection = self._kept()
        rows = query.run(connection, values)
        if converters:
            rows = query.compiler.apply_converters(rows, converters)
        return [tuple(row) for row in rows]

    def _compile(self, queryset: QuerySet[Any], db: str) -> tuple[_Sql, dict[int, Any]]:
        if queryset._iterable_class is not ValuesListIterable or not _reproducible(queryset):
            raise TypeError(f"CompiledRows cannot keep this queryset: {queryset.query}")
        query = _compile_sql(queryset, db)
        compiler = query.compiler
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        return query, compiler.get_converters(fields)


class CompiledUpdate(_Kept["_Sql"]):
    """`build()` returns the queryset whose rows to update, `values` what to set on them, each
    a constant or a `Param`; `execute(**values)` runs the kept UPDATE and returns the rows it
    changed, as `queryset.update(...)` would. Only a plain filter on the model's own table: a
    filter across a join (which Django rewrites as `pk IN (SELECT …)`), a slice or an ordering
    is refused."""

    writes = True

    def __init__(self, build: Callable[[], QuerySet[Any, Any]], **values: Any) -> None:
        super().__init__(build)
        self._values = values

    def execute(self, **values: Any) -> int:
        query, _, connection = self._kept()
        return query.run_update(connection, values)

    def _compile(self, queryset: QuerySet[Any], db: str) -> _Sql:
        query = queryset.query
        if (
            queryset.db != db
            or not _reproducible(queryset)
            or query.is_sliced
            or query.order_by
            or query.select_related
            or query.count_active_tables() > 1
        ):
            raise TypeError(f"CompiledUpdate cannot keep this queryset: {query}")
        update = cast("sql.UpdateQuery", query.chain(sql.UpdateQuery))
        update.add_update_values(self._values)
        if update.get_related_updates():
            raise TypeError("CompiledUpdate sets the model's own fields only")
        text, params = update.get_compiler(db).as_sql()
        return _Sql(
            sql=text,
            params=tuple(params),
            names=frozenset(p.name for p in params if isinstance(p, _Slot)),
            compiler=None,
        )


class RowsUpdate(Generic[R]):
    """An UPDATE whose statement grows with the rows it covers (a CASE branch or an OR term per
    row), at most `most` rows a statement. `build(size)` returns the CompiledUpdate for `size`
    rows, whose Params `values(i, row)` names for row i; it is built for each power of two up
    to `most` and compiled once per thread, and a call's rows are padded with its last (so a
    row repeated must change nothing more)."""

    def __init__(
        self,
        build: Callable[[int], CompiledUpdate],
        values: Callable[[int, R], dict[str, Any]],
        *,
        most: int = 64,
    ) -> None:
        self._build = build
        self._values = values
        self.most = most
        self._updates: dict[int, CompiledUpdate] = {}

    def chunks(self, rows: Sequence[R]) -> list[Sequence[R]]:
        """`rows` in slices of at most `most`, one statement each."""
        return [rows[start : start + self.most] for start in range(0, len(rows), self.most)]

    def execute(self, rows: Sequence[R], **shared: Any) -> int:
        """One UPDATE for `rows` (1 to `most` of them) and the `shared` Params' values."""
        if not 0 < len(rows) <= self.most:
            raise ValueError(f"RowsUpdate takes 1 to {self.most} rows, not {len(rows)}")
        size = 1 << (len(rows) - 1).bit_length()
        values = dict(shared)
        for i, row in enumerate([*rows, *[rows[-1]] * (size - len(rows))]):
            values.update(self._values(i, row))
        update = self._updates.get(size)
        if update is None:
            update = self._updates.setdefault(size, self._build(size))
        return update.execute(**values)


def _compile_sql(queryset: QuerySet[Any], db: str) -> _Sql:
    if queryset.db != db:
        raise TypeError(f"CompiledSelect reads where the router sends {queryset.model}")
    compiler = queryset.query.get_compiler(db)
    sql, params = compiler.as_sql()
    fields = [column[0] for column in compiler.select[: compiler.col_count]]
    # Extra select columns (ordering that DISTINCT needs in the SELECT) would widen the rows.
    if compiler.has_composite_fields(fields) or compiler.has_extra_select:
        raise TypeError(f"CompiledSelect cannot keep this queryset: {queryset.query}")
    return _Sql(
        sql=sql,
        params=tuple(params),
        names=frozenset(p.name for p in params if isinstance(p, _Slot)),
        compiler=compiler,
    )


def _reproducible(queryset: QuerySet[Any]) -> bool:
    """Whether what the kept steps build from the rows is what the ORM would return."""
    query = queryset.query
    # Private attributes the stubs do not declare; ModelIterable reads the same ones.
    state: Any = queryset
    return (
        not state._prefetch_related_lookups
        and not state._known_related_objects
        and not query.annotations
        and not query.extra
        and not query.combinator
        and not query.distinct
    )


def _instance(shape: _Shape, db: str, row: Any) -> Any:
    obj = shape.model.from_db(db, shape.init_list, row[shape.model_start : shape.model_end])
    for populator in shape.populators:
        populator.populate(row, obj)
    return obj
