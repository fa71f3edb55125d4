"""Output serializers without DRF's per-instance copy of their fields, and with a direct path for
flat serializers.

Every DRF serializer instance deep-copies its declared fields (re-running each field's
`__init__`) before it can represent anything. For the API's hottest reads that copy cost more
than the representing: a vehicle list of one vehicle spent about 180 of its 200 us of
serialization copying the fields of the list, the vehicle and the nested reading.

`represent` keeps one instance per serializer class and thread and calls its
`to_representation`, which reads the (already bound) fields and never changes them. Only for
output: validation keeps state on the instance (`errors`, `validated_data`), so input
serializers are still created per request. The output is the same as `Serializer(...).data`
without the `ReturnDict` wrapper, which only the browsable API uses.

A *flat* serializer (every field a plain value field read from one attribute) also gets a direct
`to_representation` on that kept instance: `getattr` and the field's own `to_representation`,
without DRF's per-field attribute walk (Mapping and callable checks, exception handling), which
cost more than the formatting itself: a week of 1-hour history buckets (169 objects, 6 fields each)
spent about 2 of its 8 ms there. Anything the direct path does not cover (a dict, a callable or
missing attribute, a reverse relation that does not exist) goes to DRF's own method for that
object, so the output stays DRF's.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from rest_framework import fields as drf_fields
from rest_framework import relations, serializers

_local = threading.local()


def represent(
    serializer_class: type[serializers.BaseSerializer], instance: Any, *, many: bool = False
) -> Any:
    """`serializer_class(instance, many=many).data`, for a serializer without context."""
    prototypes: dict[tuple[type, bool], serializers.BaseSerializer] = _local.__dict__.setdefault(
        "prototypes", {}
    )
    prototype = prototypes.get((serializer_class, many))
    if prototype is None:
        prototype = prototypes[(serializer_class, many)] = serializer_class(many=many)
        _install_direct_paths(prototype)
    return prototype.to_representation(instance)


def _install_direct_paths(serializer: drf_fields.Field | None) -> None:
    """Gives `serializer` and the serializers nested in it a direct path where they are flat."""
    if isinstance(serializer, serializers.ListSerializer):
        _install_direct_paths(serializer.child)
        return
    if not isinstance(serializer, serializers.Serializer):
        return
    for field in serializer.fields.values():
        if isinstance(field, serializers.BaseSerializer):
            _install_direct_paths(field)
    direct = _direct_to_representation(serializer)
    if direct is not None:
        # An instance attribute: this kept instance only, never the class.
        serializer.to_representation = direct  # type: ignore[method-assign,assignment]


def _is_plain(field: drf_fields.Field) -> bool:
    return (
        not isinstance(
            field,
            serializers.BaseSerializer
            | relations.RelatedField
            | relations.ManyRelatedField
            | drf_fields.HiddenField,
        )
        and type(field).get_attribute is drf_fields.Field.get_attribute
        and field.source != "*"
        and len(field.source_attrs) == 1
    )


def _direct_to_representation(
    serializer: serializers.Serializer,
) -> Callable[[Any], dict[str, Any]] | None:
    readable = list(serializer._readable_fields)
    if not readable or not all(_is_plain(field) for field in readable):
        return None
    plan = [(str(f.field_name), f.source_attrs[0], f.to_representation) for f in readable]
    drf_path = serializer.to_representation

    def to_representation(instance: Any) -> dict[str, Any]:
        if isinstance(instance, Mapping):
            return drf_path(instance)
        out: dict[str, Any] = {}
        for name, attr, to_representation_of in plan:
            try:
                value = getattr(instance, attr)
            except (AttributeError, ObjectDoesNotExist):
                return drf_path(instance)  # DRF's defaults, SkipField and error text
            if value is None:
                out[name] = None
            elif callable(value):
                return drf_path(instance)  # DRF calls it, with its own error handling
            else:
                out[name] = to_representation_of(value)
        return out

    return to_representation
