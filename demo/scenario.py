"""The demo's trading day, as data: the stocks and what they do, the positions held from earlier
days, the picks that arrive, and the faults and the operator's actions, at simulated times
(Asia/Seoul) on a regular KRX trading day.

Each exit rule fires once, and the day is laid out so each firing is easy to follow:

  08:59:50  the GAP_DOWN thresholds of every held position are computed and kept hot
  09:00:00  005930 opens 6 % under yesterday's close: GAP_DOWN; 051910, held longer than its
            profile allows, is sold by the first evaluation in the session (maximum holding
            days: time rules wait for the open)
  09:00:30  picks arrive over HTTP from the news strategy (source 3001): two pass the gates and
            become entries, one is stale (gate 1), one is too far from the market (gate 3), one
            arrives twice (one intent), and a batch with a bad symbol gets a 400
  09:00:45  three SELL picks for 005380 race each other: the first takes the 40 shares, the
            others find nothing left
  09:01:10  000660 crosses +5 %: the take-profit tier sells half
  09:01:50  KIS starts answering 503: while it does, 035420 falls through its stop loss and
            000660 turns down from its high (trailing stop). An order answered 503 may or may
            not have reached KIS, so neither is sent again blindly: each waits in flight to be
            settled against KIS's daily orders, which fail too; the circuit opens and alerts
  09:02:20  the operator tries to sell 035420 by hand: the ledger refuses, the waiting stop
            loss already holds every share
  09:02:30  KIS recovers; the circuit closes, the daily orders show neither exit arrived, and
            both go out into a small rebound
  09:02:51  096770 falls 7 % in one trade: KRX interrupts its trading for a two-minute call
            auction (a dynamic VI). Its stop loss decides on the auction's expected price and,
            as its profile says, the order joins the auction; it trades at the auction's single
            price when trading resumes (09:04:51)
  15:20:00  the day-trade entries are sold before the close (time exit)
  15:30:00  the close: KRX takes no more regular orders; the day's orders end in the ledger
            (trading.day_end), which reconciles with KIS at once
  15:40:00  Nextrade's after-market opens (until 20:00). At 15:41 two held stocks trade under
            their stop losses there: 105560, whose profile allows Nextrade exits, is sold on
            Nextrade at once; 012330, whose profile does not, is held until KRX's next open,
            where the rules decide again on the price then

The quiet hours between the morning and 15:18:30, and between the close and 15:39:40, are
skipped.
"""

import datetime as dt
import random
from dataclasses import dataclass
from decimal import Decimal
from typing import TypedDict

from market import krx

# The simulated stretches of the day: (from, to), each "HH:MM:SS".
SEGMENTS = (("08:58:30", "09:05:30"), ("15:18:30", "15:31:30"), ("15:39:40", "15:44:00"))
# `--short`: the same events, less time around them (the morning from 08:59:40, the afternoon
# around the time exit and the close, the after-market around its trades).
SHORT_SEGMENTS = (
    ("08:59:40", "09:05:10"),
    ("15:19:40", "15:20:30"),
    ("15:29:50", "15:31:20"),
    ("15:39:50", "15:42:30"),
)
# The close: from it, no exit may be decided on KRX and no order sent there until the next
# open; a profile that allows it sells on Nextrade's after-market.
CLOSE = "15:30:00"
SKIP_NOTE = "the quiet hours in between are skipped"


class Profile(TypedDict):
    fields: dict[str, object]  # of trading.models.ExitProfile
    tiers: tuple[tuple[Decimal, Decimal], ...]  # (gain %, sell % of the most shares held)


# Exit profiles: name → fields of trading.models.ExitProfile, and take-profit tiers
# (gain %, sell % of the most shares held).
PROFILES: dict[str, Profile] = {
    "swing": {
        "fields": {
            "stop_loss_pct": Decimal("3"),
            "trailing_activation_pct": Decimal("6"),
            "trailing_pct": Decimal("2"),
            "gap_down_pct": Decimal("5"),
            "max_holding_days": 5,
        },
        "tiers": ((Decimal("5"), Decimal("50")), (Decimal("12"), Decimal("50"))),
    },
    "swing + Nextrade": {
        "fields": {
            "stop_loss_pct": Decimal("3"),
            "gap_down_pct": Decimal("5"),
            "nxt_exits": True,
        },
        "tiers": (),
    },
    "news day trade": {
        "fields": {
            "stop_loss_pct": Decimal("2"),
            "gap_down_pct": Decimal("5"),
            "day_trade": True,
            "time_exit_at": dt.time(15, 20),
        },
        "tiers": ((Decimal("4"), Decimal("50")),),
    },
}


@dataclass(frozen=True)
class Holding:
    qty: int
    avg_price: int
    profile: str
    days_ago: int  # KRX trading days since it was bought


@dataclass(frozen=True)
class Stock:
    code: str
    name: str
    prev_close: int
    path: tuple[tuple[str, int], ...]  # keyframes ("HH:MM:SS", price); straight lines between
    held: Holding | None = None


STOCKS = (
    Stock(
        "005930",
        "Samsung Electronics",
        71_000,
        (("09:00:00", 66_700), ("09:03:30", 66_900), ("15:18:30", 67_200), ("15:30:30", 67_300)),
        Holding(100, 70_000, "swing", 1),
    ),
    Stock(
        "000660",
        "SK hynix",
        180_000,
        (
            ("09:00:00", 181_000),
            ("09:00:50", 184_000),
            ("09:01:10", 187_500),
            ("09:01:40", 191_000),
            ("09:02:00", 190_500),
            ("09:02:20", 186_500),
            ("09:02:40", 187_200),
            ("09:03:30", 187_100),
            ("15:18:30", 185_500),
            ("15:30:30", 185_800),
        ),
        Holding(50, 178_000, "swing", 2),
    ),
    Stock(
        "035420",
        "NAVER",
        204_000,
        (
            ("09:00:00", 203_500),
            ("09:01:40", 202_000),
            ("09:02:00", 197_500),
            ("09:02:40", 198_700),
            ("09:03:30", 198_600),
            ("15:18:30", 198_000),
            ("15:30:30", 198_500),
        ),
        Holding(30, 205_000, "swing", 3),
    ),
    Stock(
        "051910",
        "LG Chem",
        310_000,
        (
            ("09:00:00", 311_000),
            ("09:03:30", 312_000),
            ("15:18:30", 309_500),
            ("15:30:30", 310_000),
        ),
        Holding(20, 300_000, "swing", 8),
    ),
    Stock(
        "005380",
        "Hyundai Motor",
        240_000,
        (
            ("09:00:00", 241_000),
            ("09:03:30", 241_500),
            ("15:18:30", 242_000),
            ("15:30:30", 242_500),
        ),
        Holding(40, 236_000, "swing", 2),
    ),
    # Held overnight: nothing fires in the day; after the close it trades under its stop.
    Stock(
        "012330",
        "Hyundai Mobis",
        250_000,
        (
            ("09:00:00", 250_500),
            ("09:03:30", 251_000),
            ("15:18:30", 250_000),
            ("15:30:30", 250_500),
            ("15:40:59", 250_500),
            ("15:41:00", 238_000),
            ("15:44:00", 238_500),
        ),
        Holding(12, 248_000, "swing", 1),
    ),
    # A dynamic VI: one trade 7 % down stops its trading for a two-minute call auction.
    Stock(
        "096770",
        "SK Innovation",
        110_000,
        (
            ("09:00:00", 110_500),
            ("09:02:50", 110_000),
            ("09:02:51", 102_000),
            ("09:05:30", 102_600),
            ("15:18:30", 103_000),
            ("15:30:30", 103_200),
        ),
        Holding(15, 110_000, "swing", 2),
    ),
    # Held under a profile with Nextrade exits: sold in the after-market.
    Stock(
        "105560",
        "KB Financial",
        80_000,
        (
            ("09:00:00", 80_200),
            ("09:05:30", 80_300),
            ("15:18:30", 80_100),
            ("15:30:30", 80_000),
            ("15:40:59", 80_000),
            ("15:41:00", 77_300),
            ("15:44:00", 77_500),
        ),
        Holding(25, 80_000, "swing + Nextrade", 1),
    ),
    Stock(
        "035720",
        "Kakao",
        41_000,
        (("09:00:00", 41_200), ("09:03:30", 41_400), ("15:18:30", 41_650), ("15:30:30", 41_600)),
    ),
    Stock(
        "068270",
        "Celltrion",
        180_000,
        (
            ("09:00:00", 181_000),
            ("09:03:30", 181_500),
            ("15:18:30", 182_300),
            ("15:30:30", 182_000),
        ),
    ),
    Stock(
        "005490",
        "POSCO Holdings",
        370_000,
        (
            ("09:00:00", 372_000),
            ("09:03:30", 371_500),
            ("15:18:30", 373_000),
            ("15:30:30", 373_500),
        ),
    ),
)

# The source that sends the picks, and the profile its entries are watched with.
SOURCE = "3001"
SOURCE_NAME = "news / LLM strategy"
SOURCE_PROFILE = "news day trade"


@dataclass(frozen=True)
class Pick:
    external_id: str
    symbol: str
    side: str = "BUY"
    qty: int | None = None
    budget_krw: int | None = None
    limit_price: int | None = None
    age_s: int = 1  # how long before it arrives the strategy generated it
    note: str = ""

    def body(self, now: dt.datetime) -> dict:
        item = {
            "source": SOURCE,
            "external_id": self.external_id,
            "symbol": self.symbol,
            "side": self.side,
            "score": "0.8",
            "generated_at": (now - dt.timedelta(seconds=self.age_s)).isoformat(),
        }
        for name in ("qty", "budget_krw", "limit_price"):
            if getattr(self, name) is not None:
                item[name] = getattr(self, name)
        return item


@dataclass(frozen=True)
class Event:
    at: str  # "HH:MM:SS"
    action: str
    picks: tuple[Pick, ...] = ()
    note: str = ""


EVENTS = (
    Event(
        "09:00:30",
        "picks",
        (
            Pick("news-1041", "035720", budget_krw=2_000_000, note="passes"),
            Pick("news-1042", "068270", qty=10, note="passes"),
            Pick("news-1043", "000270", qty=5, age_s=600, note="stale: refused at gate 1"),
            Pick(
                "news-1044",
                "005490",
                qty=3,
                limit_price=350_000,
                note="6 % under the market: refused at gate 3",
            ),
        ),
        note="picks over HTTP",
    ),
    Event(
        "09:00:33",
        "picks",
        (Pick("news-1041", "035720", budget_krw=2_000_000),),
        note="the same pick again: nothing new",
    ),
    Event(
        "09:00:36",
        "bad_picks",
        (Pick("news-1045", "12345", qty=1),),
        note="a bad symbol: 400, nothing stored",
    ),
    Event(
        "09:00:45",
        "race_picks",
        tuple(Pick(f"desk-{n}", "005380", side="SELL", qty=40) for n in (1, 2, 3)),
        note="three SELL picks for the same 40 shares, at once",
    ),
    Event("09:01:50", "outage_start", note="KIS answers 503 to every REST call"),
    Event("09:02:20", "operator_sell", note="the operator sells 035420 by hand"),
    Event("09:02:30", "outage_end", note="KIS recovers"),
    Event("15:30:00", "close", note="the close: KRX takes no more regular orders"),
    Event("15:40:00", "after_market", note="Nextrade's after-market opens"),
)
OPERATOR_SELL = ("035420", 30)

# Seconds between trades of each stock: every second around the open, less often later.
RUSH = ("08:59:55", "09:03:30")
RUSH_EVERY_S, CALM_EVERY_S = 1, 3


def at(day: dt.date, hms: str, tz) -> dt.datetime:
    return dt.datetime.combine(day, dt.time.fromisoformat(hms), tz)


def second_of_day(hms: str) -> int:
    t = dt.time.fromisoformat(hms)
    return t.hour * 3600 + t.minute * 60 + t.second


def price_at(stock: Stock, second: int, *, seed: int = 0) -> int | None:
    """The stock's trade at `second` (of the day), or None before its first keyframe. On a
    keyframe it is the keyframe's price; between two, on the straight line between them plus a
    tick of noise (seeded, so a day replays the same), on the KRX tick grid."""
    keys = [(second_of_day(t), p) for t, p in stock.path]
    if second < keys[0][0]:
        return None
    for (t0, p0), (t1, p1) in zip(keys, keys[1:]):
        if t0 <= second <= t1:
            if second in (t0, t1):
                return p0 if second == t0 else p1
            base = p0 + (p1 - p0) * (second - t0) / (t1 - t0)
            noise = random.Random(f"{seed}:{stock.code}:{second}").choice((-1, 0, 0, 1))
            price = int(base) + noise * krx.tick_size(int(base))
            return krx.round_to_tick(price, direction="down")
    return keys[-1][1]


def trade_every(second: int) -> int:
    rush = second_of_day(RUSH[0]) <= second <= second_of_day(RUSH[1])
    return RUSH_EVERY_S if rush else CALM_EVERY_S
