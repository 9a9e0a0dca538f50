"""What the ingest API's OpenAPI schema says beyond what drf-spectacular reads from the fields: the
schema is the contract, and a client built from it must never send a pick the API refuses
(tests/picks/test_schema_contract.py sends it what the schema describes).

drf-spectacular states neither that a pick's fields are all its fields (unknown ones are
refused), nor that exactly one of qty and budget_krw is given, nor the bounds of the list the
view checks itself, nor strings free of NUL, nor which decimal and date-time spellings parse.

Where the API takes more than the schema shows (a score sent as a JSON number, a date-time with
a space for its T), the schema keeps to the one spelling: a client never needs the others. What
no JSON Schema can say is in the descriptions: the body's size in bytes, the source's rate, that
`source` is the token's own, and that `generated_at` is not ahead of the server's clock."""

from django.conf import settings
from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiSerializerExtension, OpenApiSerializerFieldExtension
from drf_spectacular.openapi import AutoSchema

# DRF refuses NUL in any string (PostgreSQL's text cannot hold it). It also refuses lone
# surrogates, which UTF-8 cannot carry and no JSON Schema pattern can name.
NO_NUL_PATTERN = r"^[^\u0000]*$"
# A score as DRF's DecimalField(max_digits=12, decimal_places=6) reads it, in ASCII digits: at
# most 6 before the point and 6 after, at least one in all.
SCORE_PATTERN = r"^-?(?:[0-9]{1,6}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})$"
# RFC 3339 in the spelling Django reads without fail: upper-case T and Z (a lower-case z is
# refused), seconds given but no leap second, at most microseconds, an offset below 24 hours;
# years 2000 to 2099, far from the ends of Python's calendar, where an offset would carry the
# time out of range. The `date-time` format beside it rules out 30 February.
GENERATED_AT_PATTERN = (
    r"^20[0-9]{2}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)


class TextFieldSchema(OpenApiSerializerFieldExtension):
    """A pick's string: free of NUL, unless a pattern of its own says more."""

    target_class = "picks.serializers.TextField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if not any(isinstance(v, RegexValidator) for v in self.target.validators):
            schema["pattern"] = NO_NUL_PATTERN
        return schema


class ScoreFieldSchema(OpenApiSerializerFieldExtension):
    """drf-spectacular's pattern for a decimal admits "-", "." and "-.", which the API refuses:
    none is a number."""

    target_class = "picks.serializers.ScoreField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return schema | {"type": "string", "format": "decimal", "pattern": SCORE_PATTERN}


class GeneratedAtSchema(OpenApiSerializerFieldExtension):
    """The `date-time` format alone allows a lower-case z, a leap second and year 0001 with an
    offset, which the API refuses."""

    target_class = "picks.serializers.AwareDateTimeField"

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        return schema | {"type": "string", "format": "date-time", "pattern": GENERATED_AT_PATTERN}


def _by(given: str, other: str) -> dict:
    """A pick that gives `given` (an integer) and not `other` (absent or null)."""
    return {
        "title": f"by {given}",
        "required": [given],
        "properties": {given: {"type": "integer"}, other: {"not": {"type": "integer"}}},
    }


class PickInSchema(OpenApiSerializerExtension):
    """A pick's fields are all the fields it may have, and it gives exactly one of qty and
    budget_krw (PickInSerializer.to_internal_value and validate)."""

    target_class = "picks.serializers.PickInSerializer"

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        schema["oneOf"] = [_by("qty", "budget_krw"), _by("budget_krw", "qty")]
        return schema


class PicksIngestSchema(AutoSchema):
    """The body's bounds, which the view checks before any pick's fields: a non-empty list
    (400) of at most PICKS_MAX_BATCH picks (413). drf-spectacular states no bounds of a list."""

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is not None and "requestBody" in operation:
            for media in operation["requestBody"]["content"].values():
                if media["schema"].get("type") == "array":
                    media["schema"]["minItems"] = 1
                    media["schema"]["maxItems"] = settings.PICKS_MAX_BATCH
        return operation
