"""Fill notices (H0STCNI0/H0STCNI9) trigger an immediate sync of the order they name.

KIS's notices carry no execution id, so they are never applied as increments: a notice only says
"this order moved", and the order is caught up to KIS's cumulative figures at once
(services.sync). The 5-second beat sync stays as the net for lost notices.
"""

import asyncio
import logging

from django.db import close_old_connections

from .brokers.kis.protocol import notice_tr_id
from .brokers.kis.ws import FillNotice, KisStream
from .models import Order
from .services.sync import orders_sync

logger = logging.getLogger("aegis.fills")


def sync_for_notice(notice: FillNotice, broker) -> dict[str, int]:
    close_old_connections()
    odnos = {n for n in (notice.odno, notice.original_odno) if n}
    ids = list(Order.objects.filter(broker_order_no__in=odnos).values_list("pk", flat=True))
    if not ids:
        return {"orders": 0, "filled": 0, "closed": 0}
    return orders_sync(broker=broker, order_ids=ids)


async def run(*, broker, stop: asyncio.Event, on_ready=lambda: None) -> None:
    config = broker.config
    if not config.hts_id:
        raise RuntimeError("Set KIS_HTS_ID: fill notices are subscribed by HTS user id.")

    async def on_notice(notice: FillNotice) -> None:
        counts = await asyncio.to_thread(sync_for_notice, notice, broker)
        logger.info("fills.notice odno=%s fill=%s synced=%s", notice.odno, notice.is_fill, counts)

    stream = KisStream(url=config.ws_url, approval_key=broker.approval_key,
                       approval_key_refused=broker.approval_key_refused,
                       custtype=config.custtype, on_notice=on_notice)
    await stream.subscribe(notice_tr_id(config.flavour), config.hts_id)
    task = asyncio.create_task(stream.run(stop))
    await asyncio.wait_for(stream.connected.wait(), timeout=30)
    on_ready()
    await task
