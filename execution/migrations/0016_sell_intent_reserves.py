"""P0 on every path: the database itself makes a SELL intent reserve its shares.

Any SELL intent inserted NEW or ORDERED (by Aegis's statements, the ORM, or an outside writer
that the NOTIFY path serves) adds its qty to its position's reserved_qty, in the inserting
statement, or the insert fails with check_violation `intent_reserves_available` when the
position is not open or has fewer shares available. The services no longer reserve on insert
themselves (their in-memory copy mirrors what the trigger wrote).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION execution_sell_intent_reserves() RETURNS trigger AS $$
BEGIN
    IF NEW.side = 'SELL' AND NEW.status IN ('NEW', 'ORDERED') THEN
        UPDATE execution_position SET reserved_qty = reserved_qty + NEW.qty,
                                      updated_at = now()
        WHERE id = NEW.position_id AND status = 'OPEN' AND NEW.qty > 0
          AND qty - reserved_qty >= NEW.qty;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'SELL intent % for % shares of position % exceeds its available qty',
                NEW.id, NEW.qty, NEW.position_id
                USING ERRCODE = 'check_violation', CONSTRAINT = 'intent_reserves_available';
        END IF;
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER execution_orderintent_reserves
    AFTER INSERT ON execution_orderintent
    FOR EACH ROW EXECUTE FUNCTION execution_sell_intent_reserves();
"""

DROP = """
DROP TRIGGER IF EXISTS execution_orderintent_reserves ON execution_orderintent;
DROP FUNCTION IF EXISTS execution_sell_intent_reserves();
"""


def _postgres_only(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("execution", "0015_order_recorded_at")]

    operations = [migrations.RunPython(_postgres_only(CREATE), _postgres_only(DROP))]
