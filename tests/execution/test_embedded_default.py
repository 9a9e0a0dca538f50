"""The embedded default (SQLite, tasks in-process, no Redis) sends intents to KIS too: the hot
path's PostgreSQL statements give way to the ORM path there."""

import json
import subprocess
import sys

from tests.support import ROOT
from tests.support.workers import broker_orders, worker_env

SCRIPT = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from execution import services
from execution.models import Order
intent = services.entry_intent_open(symbol="005930", qty=3, idempotency_key="embedded-1")
order = Order.objects.get(intent=intent)
print(json.dumps({"status": order.status, "odno": order.broker_order_no}))
"""


def test_an_entry_goes_out_on_the_embedded_default(kis_sim, tmp_path):
    env = {k: v for k, v in worker_env(kis_sim).items() if k not in ("REDIS_URL",)}
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path}/embedded.sqlite3",
        "DJANGO_SETTINGS_MODULE": "aegis.settings",
        "AEGIS_AUTO_SUBMIT": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["status"] == "SUBMITTED"
    assert [o["odno"] for o in broker_orders(kis_sim)] == [result["odno"]]
