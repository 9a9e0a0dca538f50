"""NOTIFY new_intent for intents that outside writers insert (the review's option A).

Aegis's own intents are enqueued when their transaction commits, so the trigger skips
connections named "aegis" (settings set application_name) and spares a duplicate task per intent;
anything else that inserts a NEW intent (a script, another service, psql) is announced.
PostgreSQL delivers the notification at commit, never for a rolled-back insert.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION execution_notify_new_intent() RETURNS trigger AS $$
BEGIN
    IF NEW.status = 'NEW'
       AND coalesce(current_setting('application_name', true), '') NOT LIKE 'aegis%' THEN
        PERFORM pg_notify('new_intent', json_build_object(
            'intent_id', NEW.id, 'intent_type', NEW.intent_type, 'symbol', NEW.symbol)::text);
    END IF;
    RETURN NEW;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER execution_orderintent_notify_new
    AFTER INSERT ON execution_orderintent
    FOR EACH ROW EXECUTE FUNCTION execution_notify_new_intent();
"""

DROP = """
DROP TRIGGER IF EXISTS execution_orderintent_notify_new ON execution_orderintent;
DROP FUNCTION IF EXISTS execution_notify_new_intent();
"""


def _postgres_only(sql):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("execution", "0002_trading_state_row")]

    operations = [migrations.RunPython(_postgres_only(CREATE), _postgres_only(DROP))]
