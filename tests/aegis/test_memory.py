"""core.memory: a long-running process's start-up objects are frozen out of the garbage
collector's full passes (in a child process: freezing the test runner's own would keep its
garbage for the rest of the session)."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import gc, json, django
django.setup()
from core.memory import freeze_startup_objects
frozen = freeze_startup_objects("test")
print(json.dumps({"frozen": frozen, "count": gc.get_freeze_count(),
                  "left": len(gc.get_objects())}))
"""


def run_child(**env) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "aegis.settings"} | env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_start_up_objects_are_left_out_of_later_collections():
    seen = run_child()
    assert seen["frozen"] == seen["count"] > 50_000  # Django's objects, all of them
    assert seen["left"] < seen["frozen"] / 10  # what a full collection still walks


def test_the_freeze_can_be_turned_off():
    seen = run_child(AEGIS_GC_FREEZE="0")
    assert seen["frozen"] == seen["count"] == 0
