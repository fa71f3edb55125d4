"""Run a hot SELECT without compiling its SQL again on every call.

Django compiles a queryset into SQL on each run. For the API's hottest reads (one of a user's
vehicles with its account, telemetry state and latest reading joined in) that compilation was
about 40 % of the read's CPU, more than running the query. `CompiledSelect` keeps the compiled
SQL of a query *shape* and, on later calls, compiles only the WHERE clause (for this call's
parameters) and reuses the rest.

Safety rests on two checks made when a shape is first compiled: the whole query's parameters
must be exactly its WHERE clause's (so nothing else in the SQL depends on the values), and the
WHERE clause's SQL text is part of the cache key (so a value that changes the SQL, such as None
turning `=` into `IS NULL`, is a different shape), with the ordering, slice, select_related
and deferred fields. Anything else — a queryset that is not a plain model query, an empty IN
list — runs through the normal ORM path. Compilers hold their thread's connection, so the
cache is per thread.

Uses Django's compiler internals (`select`, `klass_info`, converters, related populators), the
same steps `ModelIterable` and `results_iter` take; `core/tests/test_compiled_select.py` pins
the behaviour against the ORM's on both databases.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import EmptyResultSet, FullResultSet
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import ModelIterable, get_related_populators

M = TypeVar("M", bound=Model)

# Shapes kept per thread and query; a bound, in case a caller's shapes vary more than expected.
MAX_SHAPES = 16


@dataclass(frozen=True)
class _Shape:
    sql: str
    compiler: Any
    model: type[Model]
    init_list: list[str]
    model_start: int
    model_end: int
    populators: list[Any]
    converters: dict[int, Any]


class CompiledSelect(Generic[M]):
    """`build(**values)` returns the queryset to run; only parameter values may vary with
    `values` (filters, excludes, slices with fixed bounds, select_related, defer, order_by)."""

    def __init__(self, build: Callable[..., QuerySet[M]]) -> None:
        self._build = build
        self._local = threading.local()

    def fetch(self, **values: Any) -> list[M]:
        queryset = self._build(**values)
        if not _cacheable(queryset):
            return list(queryset)
        db = queryset.db
        connection = connections[db]
        query = queryset.query
        try:
            where_sql, where_params = query.get_compiler(db).compile(query.where)
        except (EmptyResultSet, FullResultSet):
            return list(queryset)
        shapes: dict[tuple[Any, ...], _Shape] = self._local.__dict__.setdefault("shapes", {})
        key = (db, where_sql, *_outside_where(query))
        shape = shapes.get(key)
        if shape is None or shape.compiler.connection is not connection:
            shape = _compile(queryset, where_params)
            if shape is None:
                return list(queryset)
            if len(shapes) >= MAX_SHAPES:
                shapes.clear()
            shapes[key] = shape
        with connection.cursor() as cursor:
            cursor.execute(shape.sql, where_params)
            rows = cursor.fetchall()
        if shape.converters:
            rows = shape.compiler.apply_converters(rows, shape.converters)
        return [_instance(shape, db, row) for row in rows]


def _cacheable(queryset: QuerySet[Any]) -> bool:
    query = queryset.query
    # Private attributes the stubs do not declare; ModelIterable reads the same ones.
    state: Any = queryset
    return (
        queryset._iterable_class is ModelIterable
        and not state._prefetch_related_lookups
        and not state._known_related_objects
        and not query.annotations
        and not query.extra
        and not query.combinator
        and not query.distinct
    )


def _outside_where(query: Any) -> tuple[Any, ...]:
    # What besides the WHERE clause shapes the SQL, so a `build` that varies it by value gets
    # a shape per variant instead of another variant's SQL.
    return (
        query.order_by,
        query.default_ordering,
        query.standard_ordering,
        query.low_mark,
        query.high_mark,
        repr(query.select_related),
        query.deferred_loading,
    )


def _compile(queryset: QuerySet[Any], where_params: Any) -> _Shape | None:
    compiler = queryset.query.get_compiler(queryset.db)
    sql, params = compiler.as_sql()
    if tuple(params) != tuple(where_params) or compiler.annotation_col_map:
        return None  # something besides the WHERE clause carries values: not safe to reuse
    select, klass_info = compiler.select, compiler.klass_info
    fields = [column[0] for column in select[: compiler.col_count]]
    if compiler.has_composite_fields(fields):
        return None
    select_fields = klass_info["select_fields"]
    start, end = select_fields[0], select_fields[-1] + 1
    return _Shape(
        sql=sql,
        compiler=compiler,
        model=klass_info["model"],
        init_list=[column[0].target.attname for column in select[start:end]],
        model_start=start,
        model_end=end,
        # What results_iter would work out again for every call: the columns' converters.
        converters=compiler.get_converters(fields),
        # django-stubs describes a later Django, whose version takes a fetch mode too.
        populators=get_related_populators(klass_info, select, queryset.db),  # type: ignore[call-arg]
    )


def _instance(shape: _Shape, db: str, row: Any) -> Any:
    obj = shape.model.from_db(db, shape.init_list, row[shape.model_start : shape.model_end])
    for populator in shape.populators:
        populator.populate(row, obj)
    return obj
