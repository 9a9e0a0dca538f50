"""KIS answers mapped to typed errors. Messages carry the broker's codes and texts, never a
token, app key or secret.
"""

from core.errors import AegisError

from . import protocol


class KisError(AegisError):
    """KIS refused or failed a request."""

    def __init__(
        self, message: str, *, msg_cd: str = "", http_status: int | None = None, tr_id: str = ""
    ) -> None:
        self.msg_cd = msg_cd
        self.http_status = http_status
        self.tr_id = tr_id
        detail = ", ".join(
            p
            for p in (
                f"msg_cd {msg_cd}" if msg_cd else "",
                f"HTTP {http_status}" if http_status else "",
                f"tr_id {tr_id}" if tr_id else "",
            )
            if p
        )
        super().__init__(f"{message} ({detail})" if detail else message)


class KisRateLimited(KisError):
    """Still over KIS's per-second limit after the bounded retries: slow down and try later."""


class KisTokenRateLimited(KisError):
    """KIS issues one token a minute per app key: wait a minute, or use the cached token."""


class KisTokenExpired(KisError):
    pass


class KisTokenInvalid(KisError):
    pass


class KisMarketClosed(KisError):
    """The market is not open for this order (outside its session's hours, or not a market
    day): it did not go out."""


class KisProductNotFound(KisError):
    """KIS does not know the symbol: check the 6-character code."""


class KisOrderRefused(KisError):
    """KIS refused the order (rt_cd != 0): the order did not go out."""


class KisUnavailable(KisError):
    """KIS did not answer usefully (5xx, refused connection): nothing was done."""


class KisCircuitOpen(KisUnavailable):
    """The circuit breaker of this app key and use is open: KIS was not called."""


class KisAmbiguousOutcome(KisError):
    """The request may or may not have reached KIS (timeout, dropped connection after sending).
    For an order this must never be resubmitted blindly: settle it against the daily orders
    inquiry.
    """


class KisWriteWithheld(KisError):
    """The order was not written to KIS: its row did not grant the right to send at the last
    moment (another sender has it, it is settled, the trading state forbids it, or it is too
    old). Nothing left; `reason` says which."""

    def __init__(self, message: str, *, reason: str = "") -> None:
        self.reason = reason
        super().__init__(message)


class KisProtocolError(KisError):
    """KIS answered in a shape this client does not understand."""


_BY_CODE = {
    protocol.EGW_RATE_LIMIT: KisRateLimited,
    protocol.EGW_LEDGER_RATE_LIMIT: KisRateLimited,
    protocol.EGW_TOKEN_RATE: KisTokenRateLimited,
    protocol.EGW_TOKEN_EXPIRED: KisTokenExpired,
    protocol.EGW_TOKEN_INVALID: KisTokenInvalid,
    protocol.MSG_MARKET_CLOSED: KisMarketClosed,
    protocol.MSG_NOT_MARKET_DAY: KisMarketClosed,
    protocol.MSG_PRODUCT_NOT_FOUND: KisProductNotFound,
}


def error_for(*, msg_cd: str, msg1: str, http_status: int, tr_id: str, order: bool) -> KisError:
    """The typed error of a KIS answer that is not a success. For an order write (`order`),
    only the gateway's refusals (protocol.GATEWAY_NOT_PROCESSED) and the order system's
    definite refusals below HTTP 500 (protocol.ORDER_REFUSALS) say the order did not go out;
    anything else is KisAmbiguousOutcome."""
    message = msg1 or "KIS refused the request"
    cls = _BY_CODE.get(msg_cd)
    hours = protocol.MARKET_HOURS_TEXT.search(message) is not None
    if cls is KisMarketClosed and not hours:
        cls = None  # KIS has been seen to use APBK0918 for other refusals: the text decides
    if order:
        if msg_cd in protocol.GATEWAY_NOT_PROCESSED:
            pass
        elif http_status < 500 and (msg_cd in protocol.ORDER_REFUSALS or hours):
            cls = KisMarketClosed if hours else cls or KisOrderRefused
        else:
            return KisAmbiguousOutcome(
                f"order outcome unknown: HTTP {http_status} {msg_cd or 'without a KIS code'} "
                f"({message}): settle it against the daily orders inquiry, do not resend",
                msg_cd=msg_cd,
                http_status=http_status,
                tr_id=tr_id,
            )
    if cls is None:
        if http_status >= 500 and not msg_cd:
            cls = KisUnavailable
        else:
            cls = KisOrderRefused if order else KisError
    return cls(message, msg_cd=msg_cd, http_status=http_status, tr_id=tr_id)
