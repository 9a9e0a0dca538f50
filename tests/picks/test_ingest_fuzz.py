"""Fuzzing POST /api/picks/ingest from its OpenAPI schema (Hypothesis): bodies built from the
schema's own description of a pick, each field sometimes valid and sometimes anything JSON
can carry, and bodies that are not lists at all. Whatever comes in: never a 5xx, and a batch
is stored whole or not at all."""

import json

import pytest
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, event, given, settings, strategies as st

from picks.models import Pick
from tests.picks.conftest import post

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
PICK = SCHEMA["components"]["schemas"]["PickIn"]

anything = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6)


def valid(name: str, prop: dict):
    """Values the schema allows for one property (the server may still refuse some)."""
    if "enum" in prop or "allOf" in prop or "oneOf" in prop:
        return st.sampled_from(["BUY", "SELL"])
    kind = prop.get("type")
    if name == "symbol":
        return st.from_regex(r"\A[0-9A-Z]{6}\Z")
    if name == "generated_at":
        return st.sampled_from(["2026-11-24T09:00:00+09:00", "2026-11-24T00:00:00Z"])
    if kind == "integer":
        return st.integers(min_value=prop.get("minimum", -10**13),
                           max_value=prop.get("maximum", 10**13))
    if kind == "string" and prop.get("format") == "decimal":
        return st.decimals(min_value=-999_999, max_value=999_999, places=6).map(str)
    return st.text(min_size=1, max_size=prop.get("maxLength", 20))


def pick_strategy(source_code: str):
    """Half the picks are built to pass (exactly one of qty and budget, the budget within its
    bounds), half have any field valid, junk or missing."""
    props = PICK["properties"]
    fields = {name: st.one_of(valid(name, prop), valid(name, prop), anything)
              for name, prop in props.items() if name != "source"}
    fields["source"] = st.sampled_from([source_code, source_code, "other"])
    fuzzed = st.fixed_dictionaries({}, optional=fields)
    required = {name: valid(name, props[name]) for name in PICK["required"] if name != "source"}
    sized = st.one_of(
        st.fixed_dictionaries({"qty": st.integers(min_value=1, max_value=10**6)}),
        st.fixed_dictionaries({"budget_krw": st.integers(min_value=10_000,
                                                         max_value=100_000_000)}))
    sound = st.tuples(st.fixed_dictionaries({"source": st.just(source_code), **required}),
                      sized).map(lambda parts: parts[0] | parts[1])
    return st.one_of(sound, fuzzed)


@pytest.fixture
def source(make_source):
    return make_source()


@settings(max_examples=300, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_body_makes_a_5xx_or_a_partial_write(client, source, data):
    src, token = source
    body = data.draw(st.one_of(st.lists(pick_strategy(src.code), min_size=1, max_size=5),
                               anything), label="body")
    before = set(Pick.objects.filter(source=src).values_list("external_id", flat=True))
    answer = post(client, token, json.dumps(body))
    after = set(Pick.objects.filter(source=src).values_list("external_id", flat=True))
    assert answer.status_code < 500, answer.content
    assert answer.status_code in (202, 400, 403), answer.content
    event(f"status {answer.status_code}")
    if answer.status_code == 202:
        sent = {p["external_id"] for p in body}
        assert after == before | sent  # every pick of the batch, nothing else
        assert len(answer.json()["ids"]) == len(body)
    else:
        assert after == before  # nothing of a refused batch
