"""POST /api/picks/ingest: a batch of picks from one authenticated source.

Order of the checks, cheapest and least trusting first: the declared size (413, before anything
is read), the token (401/403), the body's signature (401/403, before the body is parsed), the
JSON shape (400), the batch size (413), the source's rate (429: every pick of a well-formed
batch counts, valid or not), each pick's fields (400 by index), the picks' source (403). Only
then is anything written, and then the whole batch or, on any error, nothing."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.parsers import JSONParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from .auth import (
    SIGNATURE_HEADER,
    SIGNATURE_PATTERN,
    PayloadTooLarge,
    SourceTokenAuthentication,
    require_rate,
    require_signature,
)
from .schema import PicksIngestSchema
from .serializers import ErrorSerializer, IngestAnswerSerializer, PickInSerializer
from .services import PicksBacklogFull, PickStoreRace, picks_ingest


class BatchConflict(exceptions.APIException):
    """A pick of the batch was deleted while the batch was being stored (PickStoreRace)."""

    status_code = status.HTTP_409_CONFLICT
    default_detail = "The batch met a concurrent change; send it again."
    default_code = "conflict"


class PicksJSONParser(JSONParser):
    """JSON whose nesting exceeds Python's recursion limit is a client error, not a 500."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


# Seconds a refused batch is told to wait when the routers are busy.
RETRY_AFTER_BUSY_S = 1


def _bad_request(errors: dict) -> Response:
    return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)


class PicksIngestView(APIView):
    authentication_classes = [SourceTokenAuthentication]
    permission_classes: list[type[BasePermission]] = []
    parser_classes = [PicksJSONParser]
    schema = PicksIngestSchema()

    def initial(self, request, *args, **kwargs):
        # Refused on the declared size before the body is read, authenticated or not.
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit():
            raise exceptions.ParseError("Invalid Content-Length.")
        if int(length) > settings.PICKS_MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"The body may be at most {settings.PICKS_MAX_BODY_BYTES:,} bytes."
            )
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="picks_ingest",
        summary="Send a batch of picks",
        description=(
            "A JSON list of picks (not wrapped in an object) from the authenticated source: "
            "`Authorization: Bearer <token>`, and, when the source requires it, "
            f"`{SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the raw body>`. Each pick gives "
            "exactly one of qty and budget_krw. The whole batch is stored or nothing is; a "
            "pick already known by (source, external_id) stores nothing new and answers its "
            "first id. Stored picks are routed through the gates once the batch commits. The "
            "source's rate counts picks (a batch of n costs n); unknown fields are refused."
        ),
        request=PickInSerializer(many=True),
        parameters=[
            OpenApiParameter(
                SIGNATURE_HEADER,
                str,
                OpenApiParameter.HEADER,
                required=False,
                pattern=SIGNATURE_PATTERN,
                description="sha256=<hex HMAC-SHA256 of the raw body>, keyed by the source's "
                "secret; required for sources that must sign.",
            )
        ],
        responses={
            202: IngestAnswerSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="Not a non-empty JSON list, or "
                "field errors by pick index; nothing of the batch stored.",
            ),
            401: OpenApiResponse(
                ErrorSerializer,
                description="No valid token, or a missing "
                "or wrong signature (see WWW-Authenticate).",
            ),
            403: OpenApiResponse(
                ErrorSerializer,
                description="Inactive source, a pick of "
                "another source, or a signing source without a secret on "
                "this server.",
            ),
            413: OpenApiResponse(
                ErrorSerializer,
                description="Body over "
                "PICKS_MAX_BODY_BYTES, more than PICKS_MAX_BATCH picks, or "
                "more picks than the source's whole rate.",
            ),
            415: OpenApiResponse(ErrorSerializer, description="Not application/json."),
            409: OpenApiResponse(
                ErrorSerializer,
                description="A pick of the batch already "
                "known was deleted while the batch was stored; send the "
                "batch again (what was stored answers as duplicates).",
            ),
            429: OpenApiResponse(
                ErrorSerializer,
                description="Over the source's rate; "
                "nothing stored. Send again after Retry-After seconds.",
            ),
            503: OpenApiResponse(
                description="The routers' backlog is full: "
                '{"error": "busy", "detail": ..., "retry_after_s": n}; '
                "nothing stored. Send again after Retry-After seconds."
            ),
        },
        examples=[
            # One pick each: drf-spectacular shows a list body's example as a list of it.
            OpenApiExample(
                "a buy for a budget",
                request_only=True,
                value={
                    "source": "3001",
                    "external_id": "news-20261124-0001",
                    "symbol": "005930",
                    "side": "BUY",
                    "budget_krw": 1_000_000,
                    "limit_price": 71_000,
                    "score": "0.87",
                    "generated_at": "2026-11-24T09:00:01.250+09:00",
                },
            ),
            OpenApiExample(
                "a sell of a quantity",
                request_only=True,
                value={
                    "source": "3001",
                    "external_id": "news-20261124-0002",
                    "symbol": "000660",
                    "side": "SELL",
                    "qty": 10,
                    "generated_at": "2026-11-24T14:30:00Z",
                },
            ),
            OpenApiExample(
                "queued",
                response_only=True,
                status_codes=["202"],
                value={"status": "queued", "ids": [1812, 1813], "duplicates": 1},
            ),
        ],
    )
    def post(self, request):
        source = request.auth
        if len(request.body) > settings.PICKS_MAX_BODY_BYTES:  # what was read, not declared
            raise PayloadTooLarge(
                f"The body may be at most {settings.PICKS_MAX_BODY_BYTES:,} bytes."
            )
        require_signature(request, source)
        try:
            body = request.data
        except exceptions.ParseError as exc:
            return _bad_request({"non_field_errors": [str(exc.detail)]})
        if not isinstance(body, list) or not body:
            return _bad_request({"non_field_errors": ["Send a non-empty JSON list of picks."]})
        if len(body) > settings.PICKS_MAX_BATCH:
            raise PayloadTooLarge(f"A batch holds at most {settings.PICKS_MAX_BATCH} picks.")
        require_rate(source, len(body))
        serializer = PickInSerializer(data=body, many=True)
        if not serializer.is_valid():
            found = serializer.errors  # by index (a list in older DRF releases)
            pairs = found.items() if isinstance(found, dict) else enumerate(found)
            return _bad_request({str(i): e for i, e in pairs if e})
        others = sorted({p["source"] for p in serializer.validated_data} - {source.code})
        if others:
            raise exceptions.PermissionDenied(
                f"This token sends picks of source {source.code} only, not {', '.join(others[:5])}."
            )
        try:
            ids, duplicates = picks_ingest(source=source, items=serializer.validated_data)
        except PickStoreRace as exc:
            raise BatchConflict(str(exc)) from None
        except PicksBacklogFull as exc:
            return Response(
                {"error": "busy", "detail": str(exc), "retry_after_s": RETRY_AFTER_BUSY_S},
                status=status.HTTP_503_SERVICE_UNAVAILABLE,
                headers={"Retry-After": str(RETRY_AFTER_BUSY_S)},
            )
        return Response(
            {"status": "queued", "ids": ids, "duplicates": duplicates},
            status=status.HTTP_202_ACCEPTED,
        )
