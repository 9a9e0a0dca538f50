"""Model instances from statements written as SQL (the hot paths, where compiling the ORM's
query costs more than its round trip): the columns to select, and the instances made from a row
that holds them, one model after another, as Django makes them from its own queries."""

from django.db import connection


def columns(model, alias: str = "") -> str:
    """Every column of `model`, in field order (`alias.` before each when given)."""
    prefix = f"{alias}." if alias else ""
    return ", ".join(prefix + f.column for f in model._meta.concrete_fields)


def instances(row, *models) -> list:
    """One instance of each of `models` from `row`, whose leading values are their columns()
    in that order; what follows them is left alone."""
    made, at = [], 0
    for model in models:
        fields = model._meta.concrete_fields
        made.append(model.from_db(connection.alias, [f.attname for f in fields],
                                  row[at:at + len(fields)]))
        at += len(fields)
    return made
