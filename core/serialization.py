"""Output serializers without DRF's per-instance copy of their fields.

Every DRF serializer instance deep-copies its declared fields (re-running each field's
`__init__`) before it can represent anything. For the API's hottest reads that copy cost more
than the representing: a vehicle list of one vehicle spent about 180 of its 200 us of
serialization copying the fields of the list, the vehicle and the nested reading.

`represent` keeps one instance per serializer class and thread and calls its
`to_representation`, which reads the (already bound) fields and never changes them. Only for
output: validation keeps state on the instance (`errors`, `validated_data`), so input
serializers are still created per request. The output is the same as `Serializer(...).data`
without the `ReturnDict` wrapper, which only the browsable API uses.
"""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

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
    return prototype.to_representation(instance)
