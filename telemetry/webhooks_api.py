"""`POST {API_PREFIX}/smartcar/webhook`: Smartcar's signed webhook deliveries.

No JWT and no CSRF: the `SC-Signature` HMAC is the authentication (`telemetry.services.webhooks`
checks it). This view only bounds and reads the raw body, hands it to the service, hands a newly
stored event on for processing (`webhook_dispatch`: by default in a background thread, so the
answer does not wait for it) and answers. It never touches `request.body`, `request.POST` or
`request.data`: the body is read once, raw, and never more than MAX_BODY_BYTES + 1 bytes, so a
huge or lying upload cannot make us buffer it (and Django's DATA_UPLOAD_MAX_MEMORY_SIZE, checked
only by `request.body`, never comes into play). Errors leave in our JSON shape.
"""

from http import HTTPStatus
from typing import Any, NoReturn

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from core.api import FirstRendererNegotiation, PublicApi
from core.errors import ApplicationError
from core.renderers import OrjsonRenderer
from telemetry.services.webhook_dispatch import webhook_event_dispatch
from telemetry.services.webhooks import MAX_BODY_BYTES, WebhookTooLargeError, webhook_receive

_ERROR = inline_serializer(
    "WebhookError", {"error": serializers.CharField(), "message": serializers.CharField()}
)


class WebhookMethodNotAllowedError(ApplicationError):
    code = "method_not_allowed"
    message = "Only POST is allowed on the webhook endpoint."
    http_status = HTTPStatus.METHOD_NOT_ALLOWED


def _content_length(request: Request) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def read_raw_body(request: Request) -> bytes:
    """The raw body, at most MAX_BODY_BYTES + 1 bytes of it: a declared length over the limit
    is refused before reading; an actual one (no Content-Length under ASGI) shows as the extra
    byte, which `webhook_receive` refuses."""
    declared = _content_length(request)
    if declared is not None and declared > MAX_BODY_BYTES:
        raise WebhookTooLargeError()
    return request._request.read(MAX_BODY_BYTES + 1)


class SmartcarWebhookApi(PublicApi):
    http_method_names = ["post"]
    renderer_classes = [OrjsonRenderer]
    # Smartcar's Accept header must never turn the VERIFY answer into a 406.
    content_negotiation_class = FirstRendererNegotiation

    @extend_schema(
        summary="Smartcar webhook receiver",
        description="Signed with `SC-Signature` (hex HMAC-SHA256 of the raw body under the "
        "management token). VERIFY answers `{challenge}`; other events are stored once per "
        "`eventId` and answered 200 (`accepted` or `duplicate`) once stored; an accepted "
        "event is processed in the background (`SMARTCAR_WEBHOOK_PROCESSING`). See the README's "
        "webhook section.",
        request=OpenApiTypes.OBJECT,
        responses={
            200: inline_serializer(
                "WebhookAck",
                {
                    "status": serializers.CharField(required=False),
                    "challenge": serializers.CharField(required=False),
                },
            ),
            400: OpenApiResponse(_ERROR, description="Signed, but not a webhook event."),
            401: OpenApiResponse(_ERROR, description="Missing or wrong SC-Signature."),
            405: OpenApiResponse(_ERROR, description="Not POST."),
            413: OpenApiResponse(_ERROR, description="Body over 256 KiB."),
            503: OpenApiResponse(_ERROR, description="Not configured, or storing failed."),
        },
        auth=[],
        tags=["smartcar"],
    )
    def post(self, request: Request) -> Response:
        signature = request.headers.get("SC-Signature", "")
        receipt = webhook_receive(body=read_raw_body(request), signature=signature)
        if receipt.challenge is not None:
            return Response({"challenge": receipt.challenge})
        if receipt.event is None or not receipt.created:
            return Response({"status": "duplicate"})
        # Stored and committed: from here on nothing may turn into a 5xx (Smartcar would send
        # the event again); a processing failure is recorded on the event instead.
        webhook_event_dispatch(event=receipt.event)
        return Response({"status": "accepted"})

    def http_method_not_allowed(self, request: Any, *args: Any, **kwargs: Any) -> NoReturn:
        raise WebhookMethodNotAllowedError()
