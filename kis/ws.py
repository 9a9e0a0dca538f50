"""The KIS WebSocket client: trades (KRX's, Nextrade's or both venues') and H0STCNI0/H0STCNI9
fill notices.

It keeps the set of subscriptions it was asked for, so after a dropped connection it reconnects
with backoff and subscribes to all of them again. Fill notices arrive AES-256-CBC encrypted with
the key and iv of their subscription's ack. PINGPONG frames are echoed as KIS expects.

A frame that cannot be read (or whose handler fails) is logged, without its payload, and skipped:
the stream goes on. Whatever ends a connection, a surprise included, the stream reconnects with
backoff; an outage longer than `alert_after_s` is reported once through `on_outage("down", …)`,
and its end through `on_outage("up", …)` (the callers raise a STREAM alert).
"""

import asyncio
import inspect
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

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
    hour_class: str  # "0" a trade; "C" a VI's expected price (market.vi)
    vi_reference: int = 0  # VI_STND_PRC: the static VI's base


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


class FrameError(ValueError):
    """A WebSocket frame or record this client cannot read. Its message names the field, never
    the payload (a fill notice carries the account)."""


def _num(value: str) -> int:
    value = (value or "").strip()
    return int(value) if value.lstrip("-").isdigit() else 0


def _field(record: dict[str, str], name: str, pattern: re.Pattern) -> str:
    value = (record.get(name) or "").strip()
    if not pattern.fullmatch(value):
        raise FrameError(f"{name} of {len(value)} characters is not well-formed")
    return value


_SYMBOL = re.compile(r"[0-9A-Z]{6}")
_HHMMSS = re.compile(r"([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]")
_PRICE = re.compile(r"[0-9]{1,12}")
_DATE = re.compile(r"([0-9]{8})?")


def trade_from(record: dict[str, str]) -> TradeTick:
    """A trade record. The fields an exit is decided on (symbol, time, price) are strict: a
    record without them is a FrameError, never a trade at 0."""
    return TradeTick(
        symbol=_field(record, "MKSC_SHRN_ISCD", _SYMBOL),
        time=_field(record, "STCK_CNTG_HOUR", _HHMMSS),
        price=int(_field(record, "STCK_PRPR", _PRICE)),
        sign=record["PRDY_VRSS_SIGN"],
        volume=_num(record["CNTG_VOL"]),
        cumulative_volume=_num(record["ACML_VOL"]),
        business_date=_field(record, "BSOP_DATE", _DATE),
        halted=record["TRHT_YN"] == "Y",
        hour_class=record["HOUR_CLS_CODE"],
        vi_reference=_num(record["VI_STND_PRC"]),
    )


def notice_from(record: dict[str, str]) -> FillNotice:
    return FillNotice(
        odno=record["ODER_NO"],
        original_odno=record["OODER_NO"],
        side="SELL" if record["SELN_BYOV_CLS"] == protocol.SELN_BYOV_SELL else "BUY",
        symbol=record["STCK_SHRN_ISCD"],
        qty=_num(record["CNTG_QTY"]),
        price=_num(record["CNTG_UNPR"]),
        time=record["STCK_CNTG_HOUR"],
        is_fill=record["CNTG_YN"] == "2",
        rejected=record["RFUS_YN"] == "1",
        order_qty=_num(record["ODER_QTY"]),
        order_price=_num(record["ODER_PRC"]),
    )


TradeHandler = Callable[[TradeTick], None | Awaitable[None]]
NoticeHandler = Callable[[FillNotice], None | Awaitable[None]]
AnyHandler = Callable[[Any], None | Awaitable[None]]
# on_outage(state, detail, since): state "down" (once an outage lasted alert_after_s) or "up"
# (the stream works again after a reported outage), `since` the outage's start (time.time()),
# which names it; run in a thread (it may write to the database).
OutageHandler = Callable[[str, str, float], None]


class KisStream:
    def __init__(
        self,
        *,
        url: str,
        approval_key: Callable[[], str],
        custtype: str = "P",
        on_trade: TradeHandler | None = None,
        on_notice: NoticeHandler | None = None,
        reconnect_min_s: float = 0.2,
        reconnect_max_s: float = 5.0,
        approval_key_refused: Callable[[str], None] | None = None,
        on_outage: OutageHandler | None = None,
        alert_after_s: float = 10.0,
    ) -> None:
        """`approval_key_refused(key)` forgets a key KIS no longer knows, so the next call of
        `approval_key` issues a fresh one. `on_outage` is told of an outage longer than
        `alert_after_s` and of its end."""
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
        self._ws: websockets.ClientConnection | None = None
        self.connections = 0
        self.connected = asyncio.Event()
        self.on_outage = on_outage
        self.alert_after_s = alert_after_s
        self.down_since: float | None = None  # time.time() of the outage's start
        self.outage_reported = False
        self.bad_frames = 0

    def __repr__(self) -> str:
        return f"KisStream(url={self.url}, subscriptions={len(self.subscriptions)})"

    def health(self) -> str:
        """For the process's /health: "ok" while connected, or down for less than the time an
        outage takes to be alerted (a reconnect is routine); else how long it has been down."""
        if self.connected.is_set():
            return "ok"
        since = self.down_since
        if since is None and self.connections == 0:
            return "error: never connected"
        down = 0.0 if since is None else time.time() - since
        return "ok" if down < self.alert_after_s else f"error: down for {down:.0f} s"

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
        ws = self._ws
        if ws is None:  # disconnected meanwhile: the next connection subscribes again
            return
        await ws.send(
            json.dumps(
                {
                    "header": {
                        "approval_key": key,
                        "custtype": self.custtype,
                        "tr_type": tr_type,
                        "content-type": "utf-8",
                    },
                    "body": {"input": {"tr_id": tr_id, "tr_key": tr_key}},
                }
            )
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Stay connected until `stop` is set, reconnecting with backoff, whatever ended the
        connection: a stream is never left dead."""
        delay = self.reconnect_min_s
        while not stop.is_set():
            reason = "closed"
            try:
                async with websockets.connect(self.url, ping_interval=None, open_timeout=10) as ws:
                    self._ws = ws
                    self.connections += 1
                    for tr_id, tr_key in sorted(self.subscriptions):
                        await self._send(tr_id, tr_key, "1")
                    self.connected.set()
                    await self._read(ws, stop)
            except (
                TimeoutError,
                OSError,
                websockets.ConnectionClosed,
                websockets.InvalidHandshake,
            ) as exc:
                reason = type(exc).__name__
                logger.warning("kis.ws disconnected (%s); reconnecting in %.1f s", reason, delay)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a surprise must not end the stream
                reason = type(exc).__name__
                logger.exception("kis.ws failed (%s); reconnecting in %.1f s", reason, delay)
            finally:
                self._ws = None
                self.connected.clear()
            if stop.is_set():
                break
            if self.connected_once_since_down():
                delay = self.reconnect_min_s  # it worked for a while: a fresh outage
            if self.down_since is None:
                self.down_since = time.time()
            await self._outage_check(reason)
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, self.reconnect_max_s)

    def connected_once_since_down(self) -> bool:
        return self.down_since is None

    async def _outage_check(self, reason: str) -> None:
        if (
            self.outage_reported
            or self.down_since is None
            or time.time() - self.down_since < self.alert_after_s
        ):
            return
        self.outage_reported = True
        await self._tell(
            "down",
            f"no working connection for {time.time() - self.down_since:.0f} s (last: {reason})",
            self.down_since,
        )

    async def _working(self) -> None:
        """A message arrived: the connection works, any outage is over."""
        if self.down_since is None:
            return
        since, self.down_since = self.down_since, None
        if self.outage_reported:
            self.outage_reported = False
            await self._tell("up", f"receiving again after {time.time() - since:.0f} s", since)

    async def _tell(self, state: str, detail: str, since: float) -> None:
        logger.log(
            logging.ERROR if state == "down" else logging.INFO, "kis.ws %s: %s", state, detail
        )
        if self.on_outage is None:
            return
        try:
            await asyncio.to_thread(self.on_outage, state, detail, since)
        except Exception:  # noqa: BLE001 - a failing alert never stops the stream
            logger.exception("kis.ws outage report failed")

    async def _read(self, ws, stop: asyncio.Event) -> None:
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while True:
                receiver = asyncio.ensure_future(ws.recv())
                done, _ = await asyncio.wait(
                    {receiver, stopper}, return_when=asyncio.FIRST_COMPLETED
                )
                if stopper in done:
                    receiver.cancel()
                    return
                raw = receiver.result()
                await self._working()
                try:
                    await self._handle(ws, raw)
                except (websockets.ConnectionClosed, OSError):
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad frame never ends the stream
                    self.bad_frames += 1
                    detail = str(exc) if isinstance(exc, FrameError) else ""
                    logger.error(
                        "kis.ws skipped an unreadable frame (%d characters, %s%s)",
                        len(raw),
                        type(exc).__name__,
                        f": {detail}" if detail else "",
                    )
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
        fields: tuple[str, ...]
        parse: Callable[[dict[str, str]], Any]
        handler: AnyHandler | None
        if tr_id in protocol.WS_TR_TRADES:
            fields, parse, handler = protocol.TRADE_FIELDS, trade_from, self.on_trade
        elif tr_id in (protocol.WS_TR_NOTICE_REAL, protocol.WS_TR_NOTICE_PAPER):
            fields, parse, handler = protocol.NOTICE_FIELDS, notice_from, self.on_notice
        else:
            return
        try:
            records = protocol.split_records(payload, fields, count)
        except ValueError as exc:
            raise FrameError(f"{tr_id}: {exc}") from None
        for record in records:
            try:
                item = parse(record)
            except (FrameError, KeyError) as exc:  # this record only: the frame's others count
                self.bad_frames += 1
                logger.error(
                    "kis.ws skipped an unreadable %s record: %s",
                    tr_id,
                    exc if isinstance(exc, FrameError) else f"lacks {exc}",
                )
                continue
            await self._dispatch(handler, item)

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
        if (
            msg_cd == protocol.WS_INVALID_APPROVAL
            and subscription in self.subscriptions
            and subscription not in self._renewing
        ):
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
        logger.warning(
            "kis.ws %s %s: approval key refused; subscribing with a fresh one", *subscription
        )
        if refused is not None and self._approval_key_refused is not None:
            await asyncio.to_thread(self._approval_key_refused, refused)
        if self._ws is not None:
            await self._send(*subscription, "1")

    @staticmethod
    async def _dispatch(handler: AnyHandler | None, item: object) -> None:
        if handler is None:
            return
        result = handler(item)
        if inspect.isawaitable(result):
            await result
