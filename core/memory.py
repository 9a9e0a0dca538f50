"""Keeping the garbage collector's full passes short in the long-running processes.

Most of what a worker, pricesync or a web worker will ever hold exists once it has started:
Django, Celery, every module and its tables. A full collection (generation 2) walks all of it
each time, which cost 100-150 ms in the benchmarks' processes on this machine (measured with
gc.callbacks during `bench.ticks`), a pause that stalls whatever trade, pick or order is in
flight at that moment. Frozen after start-up, those objects are skipped by every later
collection; only what the process makes afterwards is walked.
"""

import gc
import logging
import os

logger = logging.getLogger("aegis")


def freeze_startup_objects(process: str) -> int:
    """Collect once, then move every surviving object into the permanent generation, which
    collections skip. Call once the process is set up, before it serves; the number frozen
    (0 with AEGIS_GC_FREEZE=0, which leaves the collector as Python sets it)."""
    if os.environ.get("AEGIS_GC_FREEZE", "1") == "0":
        return 0
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    logger.info("gc.frozen process=%s objects=%d", process, frozen)
    return frozen
