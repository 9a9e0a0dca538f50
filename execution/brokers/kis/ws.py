"""The KIS WebSocket client: H0STCNT0 trades and H0STCNI0/H0STCNI9 fill notices.

It keeps the set of subscriptions it was asked for, so after a dropped connection it reconnects
with backoff and subscribes to all of them again. Fill notices arrive AES-256-CBC encrypted with
the key and iv of their subscription's ack. PINGPONG frames are echoed as KIS expects.
"""

import asyncio
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import websockets

from . import protocol
from .crypto import aes_decrypt

logger = logging.getLogger("aegis.kis.ws")


@dataclass(frozen=True)
class TradeTick:
    symbol: str
    time: str  # HHMMSS, Asia/Seoul
    price: int
    sign: str
    volume: int
    cumulative_volume: int
    business_date: str
    halted: bool
    hour_class: str


@dataclass(frozen=True)
class FillNotice:
    odno: str
    original_odno: str
    side: str  # "BUY" or "SELL"
    symbol: str
    qty: int  # the fill's qty (the order's qty on an accept/cancel/reject notice)
    price: int
    time: str
    is_fill: bool  # CNTG_YN "2"
    rejected: bool  # RFUS_YN "1"
    order_qty: int
    order_price: int


def _num(value: str) -> int:
    value = (value or "").strip()
    return int(value) if value.lstrip("-").isdigit() else 0


def trade_from(record: dict[str, str]) -> TradeTick:
    return TradeTick(
        symbol=record["MKSC_SHRN_ISCD"], time=record["STCK_CNTG_HOUR"],
        price=_num(record["STCK_PRPR"]), sign=record["PRDY_VRSS_SIGN"],
        volume=_num(record["CNTG_VOL"]), cumulative_volume=_num(record["ACML_VOL"]),
        business_date=record["BSOP_DATE"], halted=record["TRHT_YN"] == "Y",
        hour_class=record["HOUR_CLS_CODE"])


def notice_from(record: dict[str, str]) -> FillNotice:
    return FillNotice(
        odno=record["ODER_NO"], original_odno=record["OODER_NO"],
        side="SELL" if record["SELN_BYOV_CLS"] == protocol.SELN_BYOV_SELL else "BUY",
        symbol=record["STCK_SHRN_ISCD"], qty=_num(record["CNTG_QTY"]),
        price=_num(record["CNTG_UNPR"]), time=record["STCK_CNTG_HOUR"],
        is_fill=record["CNTG_YN"] == "2", rejected=record["RFUS_YN"] == "1",
        order_qty=_num(record["ODER_QTY"]), order_price=_num(record["ODER_PRC"]))


Handler = Callable[[object], None | Awaitable[None]]


class KisStream:
    def __init__(self, *, url: str, approval_key: Callable[[], str], custtype: str = "P",
                 on_trade: Handler | None = None, on_notice: Handler | None = None,
                 reconnect_min_s: float = 0.2, reconnect_max_s: float = 5.0,
                 approval_key_refused: Callable[[str], None] | None = None) -> None:
        """`approval_key_refused(key)` forgets a key KIS no longer knows, so the next call of
        `approval_key` issues a fresh one."""
        self.url = url.rstrip("/") + protocol.WS_PATH
        self._approval_key = approval_key
        self._approval_key_refused = approval_key_refused
        self._sent_with: dict[tuple[str, str], str] = {}  # subscription -> the key it carried
        self._renewing: set[tuple[str, str]] = set()
        self.custtype = custtype
        self.on_trade = on_trade
        self.on_notice = on_notice
        self.reconnect_min_s = reconnect_min_s
        self.reconnect_max_s = reconnect_max_s
        self.subscriptions: set[tuple[str, str]] = set()
        self.acks: dict[tuple[str, str], str] = {}  # subscription -> msg_cd of its last ack
        self._keys: dict[str, tuple[str, str]] = {}  # tr_id -> (key, iv)
        self._ws = None
        self.connections = 0
        self.connected = asyncio.Event()

    def __repr__(self) -> str:
        return f"KisStream(url={self.url}, subscriptions={len(self.subscriptions)})"

    async def subscribe(self, tr_id: str, tr_key: str) -> None:
        self.subscriptions.add((tr_id, tr_key))
        if self._ws is not None:
            await self._send(tr_id, tr_key, "1")

    async def unsubscribe(self, tr_id: str, tr_key: str) -> None:
        self.subscriptions.discard((tr_id, tr_key))
        self.acks.pop((tr_id, tr_key), None)
        if self._ws is not None:
            await self._send(tr_id, tr_key, "2")

    async def _send(self, tr_id: str, tr_key: str, tr_type: str) -> None:
        key = await asyncio.to_thread(self._approval_key)
        self._sent_with[(tr_id, tr_key)] = key
        await self._ws.send(json.dumps({
            "header": {"approval_key": key, "custtype": self.custtype, "tr_type": tr_type,
                       "content-type": "utf-8"},
            "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
        }))

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set, reconnecting with backoff."""
        delay = self.reconnect_min_s
        while not stop.is_set():
            try:
                async with websockets.connect(self.url, ping_interval=None,
                                              open_timeout=10) as ws:
                    self._ws = ws
                    self.connections += 1
                    delay = self.reconnect_min_s
                    for tr_id, tr_key in sorted(self.subscriptions):
                        await self._send(tr_id, tr_key, "1")
                    self.connected.set()
                    await self._read(ws, stop)
            except (OSError, websockets.ConnectionClosed, websockets.InvalidHandshake,
                    asyncio.TimeoutError) as exc:
                logger.warning("kis.ws disconnected (%s); reconnecting in %.1f s",
                               type(exc).__name__, delay)
            finally:
                self._ws = None
                self.connected.clear()
            if stop.is_set():
                break
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except asyncio.TimeoutError:
                pass
            delay = min(delay * 2, self.reconnect_max_s)

    async def _read(self, ws, stop: asyncio.Event) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiver = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait({receiver, stopper},
                                             return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    receiver.cancel()
                    return
                await self._handle(ws, receiver.result())
        finally:
            stopper.cancel()

    async def _handle(self, ws, raw: str) -> None:
        frame = protocol.split_frame(raw)
        if frame is None:
            await self._control(ws, raw)
            return
        encrypted, tr_id, count, payload = frame
        if encrypted:
            key_iv = self._keys.get(tr_id)
            if key_iv is None:
                logger.error("kis.ws encrypted %s frame before its key arrived", tr_id)
                return
            payload = aes_decrypt(payload, key=key_iv[0], iv=key_iv[1])
        if tr_id == protocol.WS_TR_TRADE:
            for record in protocol.split_records(payload, protocol.TRADE_FIELDS, count):
                await self._dispatch(self.on_trade, trade_from(record))
        elif tr_id in (protocol.WS_TR_NOTICE_REAL, protocol.WS_TR_NOTICE_PAPER):
            for record in protocol.split_records(payload, protocol.NOTICE_FIELDS, count):
                await self._dispatch(self.on_notice, notice_from(record))

    async def _control(self, ws, raw: str) -> None:
        try:
            message = json.loads(raw)
        except json.JSONDecodeError:
            logger.warning("kis.ws unreadable message of %d characters", len(raw))
            return
        header = message.get("header") or {}
        if header.get("tr_id") == "PINGPONG":
            await ws.send(raw)
            return
        body = message.get("body") or {}
        msg_cd = body.get("msg_cd", "")
        subscription = (header.get("tr_id", ""), header.get("tr_key", ""))
        self.acks[subscription] = msg_cd
        output = body.get("output") or {}
        if output.get("key") and output.get("iv"):
            self._keys[header.get("tr_id", "")] = (output["key"], output["iv"])
        if msg_cd == protocol.WS_INVALID_APPROVAL and subscription in self.subscriptions \
                and subscription not in self._renewing:
            await self._renew(subscription)
            return
        if msg_cd in (protocol.WS_SUBSCRIBED, protocol.WS_ALREADY_SUBSCRIBED):
            self._renewing.discard(subscription)
        if body.get("rt_cd") not in (None, protocol.RT_CD_OK):
            logger.error("kis.ws %s %s refused: %s %s", *subscription, msg_cd, body.get("msg1"))

    async def _renew(self, subscription: tuple[str, str]) -> None:
        """KIS no longer knows the approval key the subscription carried (it expired, or was
        revoked): forget the key and subscribe once more with a fresh one. Once until a
        subscription succeeds: a fresh key refused as well is logged, not retried forever."""
        self._renewing.add(subscription)
        refused = self._sent_with.get(subscription)
        logger.warning("kis.ws %s %s: approval key refused; subscribing with a fresh one",
                       *subscription)
        if refused is not None and self._approval_key_refused is not None:
            await asyncio.to_thread(self._approval_key_refused, refused)
        if self._ws is not None:
            await self._send(*subscription, "1")

    @staticmethod
    async def _dispatch(handler: Handler | None, item: object) -> None:
        if handler is None:
            return
        result = handler(item)
        if inspect.isawaitable(result):
            await result
