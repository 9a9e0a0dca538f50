"""Fill notices (H0STCNI0/H0STCNI9) trigger an immediate sync of the order they name.

KIS's notices carry no execution id, so they are never applied as increments: a notice only says
"this order moved", and the order is caught up to KIS's cumulative figures at once
(services.sync). The 5-second beat sync stays as the net for lost notices.
"""

import asyncio
import functools
import logging

from django.db import close_old_connections
from django.utils.translation import gettext

from core.metrics import health_check_register
from kis.protocol import notice_tr_id
from kis.ws import FillNotice, KisStream

from . import alerts
from .models import Order
from .services.sync import orders_sync

logger = logging.getLogger("aegis.fills")


def sync_for_notice(notice: FillNotice, broker) -> dict[str, int]:
    close_old_connections()
    odnos = {n for n in (notice.odno, notice.original_odno) if n}
    ids = list(Order.objects.filter(broker_order_no__in=odnos).values_list("pk", flat=True))
    if not ids:
        return {"orders": 0, "filled": 0, "closed": 0, "quarantined": 0, "unreadable": 0}
    return orders_sync(broker=broker, order_ids=ids)


def stream_outage(stream: str, state: str, detail: str, since: float) -> None:
    close_old_connections()
    alerts.stream_outage(
        stream=stream,
        state=state,
        detail=detail,
        since=since,
        fallback=gettext("fills arrive through the periodic orders sync only"),
    )


async def run(*, broker, stop: asyncio.Event, on_ready=lambda: None) -> None:
    config = broker.config
    if not config.hts_id:
        raise RuntimeError("Set KIS_HTS_ID: fill notices are subscribed by HTS user id.")

    async def on_notice(notice: FillNotice) -> None:
        try:
            counts = await asyncio.to_thread(sync_for_notice, notice, broker)
        except Exception as exc:  # noqa: BLE001 - the periodic sync catches up; the stream goes on
            logger.error("fills.notice_sync_failed odno=%s: %s", notice.odno, type(exc).__name__)
            return
        logger.info("fills.notice odno=%s fill=%s synced=%s", notice.odno, notice.is_fill, counts)

    stream = KisStream(
        url=config.ws_url,
        approval_key=broker.approval_key,
        approval_key_refused=broker.approval_key_refused,
        custtype=config.custtype,
        on_notice=on_notice,
        on_outage=functools.partial(stream_outage, "fill-notices"),
    )
    health_check_register("stream", stream.health)  # the process's /health, when served
    await stream.subscribe(notice_tr_id(config.flavour), config.hts_id)
    task = asyncio.create_task(stream.run(stop))
    await asyncio.wait_for(stream.connected.wait(), timeout=30)
    on_ready()
    await task
