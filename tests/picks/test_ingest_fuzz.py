"""Fuzzing POST /api/picks/ingest from its own OpenAPI schema (Hypothesis): bodies generated
from the schema's request body (a list of PickIn, each property drawn from what the schema says
of it),
picks built to pass, the same with one field replaced by any JSON, and bodies that are not
lists at all. Whatever comes in: never a 5xx, and a batch is stored whole or not at all.
Deterministic (derandomize) and bounded (max_examples)."""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from picks.models import Pick
from tests.support.picks import post

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
OPERATION = SCHEMA["paths"]["/api/picks/ingest"]["post"]


def inline(node):
    """The schema with every $ref replaced by what it points at."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = SCHEMA
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return inline(target | {k: v for k, v in node.items() if k != "$ref"})
        return {k: inline(v) for k, v in node.items()}
    if isinstance(node, list):
        return [inline(v) for v in node]
    return node


BODY = inline(OPERATION["requestBody"]["content"]["application/json"]["schema"])
PICK = BODY["items"]

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)

FORMATS = {
    "decimal": st.decimals(min_value=-999_999, max_value=999_999, places=6).map(str),
    "date-time": st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
}


def from_property(prop: dict):
    """Values one property's schema allows: the subset of JSON Schema drf-spectacular writes
    for these fields (hypothesis-jsonschema does not work with the pinned Hypothesis)."""
    if "enum" in prop:
        values = st.sampled_from(prop["enum"])
    elif prop.get("format") in FORMATS:
        values = FORMATS[prop["format"]]
    elif "pattern" in prop:
        lengths = prop.get("minLength", 0), prop.get("maxLength", 20)
        values = st.from_regex(prop["pattern"], fullmatch=True).filter(
            lambda text: lengths[0] <= len(text) <= lengths[1]
        )
    elif prop.get("type") == "integer":
        values = st.integers(prop.get("minimum"), prop.get("maximum"))
    else:
        values = st.text(min_size=prop.get("minLength", 0), max_size=prop.get("maxLength", 20))
    return values | st.none() if prop.get("nullable") else values


def from_object_schema(schema: dict):
    required = set(schema.get("required", []))
    props = {name: from_property(prop) for name, prop in schema["properties"].items()}
    return st.fixed_dictionaries(
        {k: v for k, v in props.items() if k in required},
        optional={k: v for k, v in props.items() if k not in required},
    )


# Picks as the schema's properties allow them, each drawn on its own (most still refused: this
# leaves out the schema's oneOf of qty and budget_krw, and "not in the future"; the whole schema
# is the contract of tests/picks/test_schema_contract.py).
from_the_schema = from_object_schema(PICK)


def sound(source_code: str):
    """Picks built to pass: exactly one of qty and budget_krw, a past generated_at, a few
    external ids so that repeats (within a batch and across batches) are common."""
    return st.fixed_dictionaries(
        {
            "source": st.just(source_code),
            "external_id": st.sampled_from(["a", "b", "c", "d"]) | st.text(min_size=1, max_size=8),
            "symbol": st.from_regex(r"\A[0-9A-Z]{6}\Z"),
            "generated_at": st.sampled_from(["2026-11-24T09:00:00+09:00", "2026-11-24T00:00:00Z"]),
        },
        optional={
            "side": st.sampled_from(["BUY", "SELL"]),
            "limit_price": st.integers(1, 10_000_000),
            "score": FORMATS["decimal"] | st.none(),
        },
    ).flatmap(
        lambda pick: st.one_of(
            st.builds(lambda q: pick | {"qty": q}, st.integers(1, 10**6)),
            st.builds(lambda b: pick | {"budget_krw": b}, st.integers(10_000, 100_000_000)),
        )
    )


def spoiled(pick_strategy):
    """A pick with one of its fields replaced by any JSON value, or dropped."""
    names = sorted(PICK["properties"])
    return st.tuples(pick_strategy, st.sampled_from(names), anything, st.booleans()).map(
        lambda t: {k: v for k, v in t[0].items() if k != t[1]} if t[3] else t[0] | {t[1]: t[2]}
    )


def picks(source_code: str):
    own = st.sampled_from([source_code, source_code, source_code, "other"])
    schema_pick = st.tuples(from_the_schema, own).map(lambda t: t[0] | {"source": t[1]})
    return st.one_of(
        sound(source_code), sound(source_code), schema_pick, spoiled(sound(source_code))
    )


@pytest.fixture
def source(make_source):
    return make_source()


@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_body_makes_a_5xx_or_a_partial_write(client, source, data):
    src, token = source
    body = data.draw(
        st.one_of(
            st.lists(picks(src.code), min_size=1, max_size=6),
            st.lists(picks(src.code), min_size=1, max_size=6),
            anything,
        ),
        label="body",
    )
    before = set(Pick.objects.filter(source=src).values_list("external_id", flat=True))
    answer = post(client, token, json.dumps(body))
    after = set(Pick.objects.filter(source=src).values_list("external_id", flat=True))
    assert answer.status_code < 500, answer.content
    assert answer.status_code in (202, 400, 403), answer.content
    event(f"status {answer.status_code}")
    if answer.status_code == 202:
        sent = [p["external_id"] for p in body]
        assert all(isinstance(k, str) for k in sent)  # a number is refused, not stored as text
        new = set(sent) - before
        assert after == before | new  # every pick of the batch, nothing else
        reply = answer.json()
        assert len(reply["ids"]) == len(body)
        assert reply["duplicates"] == len(body) - len(new)
        by_key = dict(zip(sent, reply["ids"]))
        assert all(by_key[k] == i for k, i in zip(sent, reply["ids"]))  # a repeat, one id
    else:
        assert after == before  # nothing of a refused batch
