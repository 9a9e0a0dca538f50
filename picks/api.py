"""POST /api/picks/ingest: a batch of picks from one authenticated source."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from .auth import SIGNATURE_HEADER, SourceTokenAuthentication, require_rate, require_signature
from .serializers import ErrorSerializer, IngestAnswerSerializer, PickInSerializer
from .services import picks_ingest


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class PicksIngestView(APIView):
    authentication_classes = [SourceTokenAuthentication]
    permission_classes = []

    def initial(self, request, *args, **kwargs):
        # Too large is refused before the body is read, authenticated or not.
        length = request.META.get("CONTENT_LENGTH") or "0"
        if not length.isdigit() or int(length) > settings.PICKS_MAX_BODY_BYTES:
            raise PayloadTooLarge(
                f"The body may be at most {settings.PICKS_MAX_BODY_BYTES:,} bytes.")
        super().initial(request, *args, **kwargs)

    @extend_schema(
        operation_id="picks_ingest",
        summary="Send a batch of picks",
        description=(
            "A JSON list of picks from the authenticated source (Authorization: Bearer "
            f"<token>; and {SIGNATURE_HEADER}: sha256=<hex HMAC-SHA256 of the body> when the "
            "source requires it). The whole batch is stored or nothing is; a pick already "
            "known by (source, external_id) stores nothing new. Stored picks are routed "
            "through the gates as soon as the batch commits. The source's rate counts picks."),
        request=PickInSerializer(many=True),
        responses={
            202: IngestAnswerSerializer,
            400: OpenApiResponse(ErrorSerializer, description="Field errors by pick index; "
                                 "nothing of the batch stored."),
            401: OpenApiResponse(ErrorSerializer, description="No valid token or signature."),
            403: OpenApiResponse(ErrorSerializer, description="Inactive source, or a pick of "
                                 "another source."),
            413: OpenApiResponse(ErrorSerializer, description="Body or batch too large."),
            429: OpenApiResponse(ErrorSerializer, description="Over the source's rate; see "
                                 "Retry-After."),
        },
        examples=[OpenApiExample("one pick", request_only=True, value=[{
            "source": "3001", "external_id": "news-20261124-0001", "symbol": "005930",
            "side": "BUY", "budget_krw": 1_000_000, "limit_price": 71_000, "score": "0.87",
            "generated_at": "2026-11-24T09:00:01.250+09:00"}])],
    )
    def post(self, request):
        source = request.auth
        require_signature(request, source)
        body = request.data
        if not isinstance(body, list) or not body:
            return Response({"errors": {"non_field_errors": ["Send a non-empty JSON list of "
                                                             "picks."]}},
                            status=status.HTTP_400_BAD_REQUEST)
        if len(body) > settings.PICKS_MAX_BATCH:
            raise PayloadTooLarge(f"A batch holds at most {settings.PICKS_MAX_BATCH} picks.")
        serializer = PickInSerializer(data=body, many=True)
        if not serializer.is_valid():
            found = serializer.errors  # by index (a list in older DRF releases)
            pairs = found.items() if isinstance(found, dict) else enumerate(found)
            errors = {str(i): e for i, e in pairs if e}
            return Response({"errors": errors}, status=status.HTTP_400_BAD_REQUEST)
        others = sorted({p["source"] for p in serializer.validated_data} - {source.code})
        if others:
            raise exceptions.PermissionDenied(
                f"This token sends picks of source {source.code} only, not {', '.join(others)}.")
        require_rate(source, len(body))
        ids, duplicates = picks_ingest(source=source, items=serializer.validated_data)
        return Response({"status": "queued", "ids": ids, "duplicates": duplicates},
                        status=status.HTTP_202_ACCEPTED)
