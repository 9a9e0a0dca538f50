"""The KIS WebSocket client against a tiny local WebSocket server: a bad frame (or record, or a
handler that fails) is logged and skipped while the stream goes on; a stream whose server goes
away reconnects with backoff, reports the outage once, and its end."""

import asyncio
import logging

import pytest
from websockets.asyncio.server import serve

from kis import protocol
from kis.ws import FrameError, KisStream, trade_from
from tests.support import free_port

TR = protocol.WS_TR_TRADE


def trade(symbol: str, price: str, time: str = "090001") -> dict[str, str]:
    return dict.fromkeys(protocol.TRADE_FIELDS, "0") | {
        "MKSC_SHRN_ISCD": symbol,
        "STCK_PRPR": price,
        "STCK_CNTG_HOUR": time,
        "BSOP_DATE": "20261207",
        "TRHT_YN": "N",
        "HOUR_CLS_CODE": "0",
    }


def frame(*records: dict[str, str]) -> str:
    return (
        f"0|{TR}|{len(records):03d}|{protocol.join_records(list(records), protocol.TRADE_FIELDS)}"
    )


@pytest.mark.parametrize(
    "name,value",
    [
        ("STCK_PRPR", ""),
        ("STCK_PRPR", "Infinity"),
        ("STCK_PRPR", "-5"),
        ("STCK_PRPR", "1E+5000000"),
        ("STCK_CNTG_HOUR", "0"),
        ("STCK_CNTG_HOUR", "246000"),
        ("MKSC_SHRN_ISCD", "59"),
        ("BSOP_DATE", "2026-12"),
    ],
)
def test_a_trade_without_its_decision_fields_is_a_frame_error(name, value):
    with pytest.raises(FrameError, match=name):
        trade_from(trade("005930", "71000") | {name: value})


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, timeout=60))


async def wait_until(pred, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def test_bad_frames_are_logged_and_skipped_and_the_stream_goes_on(caplog):
    frames = [
        "0|H0STCNT0|001|a^b",  # fewer values than a record
        "0|H0STCNT0|001|" + "^" * 45,  # a record of empty fields
        frame(trade("005930", "Infinity")),
        frame(trade("005930", "1E+5000000"), trade("000660", "120500")),  # the second counts
        "1|H0STCNT0|001|not-base64-at-all",  # encrypted before any key: logged
        "1|H0STCNI0|001|garbage",
        "not json and not a frame",
        frame(trade("999999", "100")),  # its handler fails: logged, skipped
        frame(trade("005930", "71000")),
    ]

    async def handler(ws):
        await ws.recv()  # the subscription
        for raw in frames:
            await ws.send(raw)
        await ws.wait_closed()

    async def main():
        seen = []

        def on_trade(tick):
            if tick.symbol == "999999":
                raise RuntimeError("a handler that fails")
            seen.append((tick.symbol, tick.price))

        port = free_port()
        outages = []
        async with serve(handler, "127.0.0.1", port):
            stream = KisStream(
                url=f"ws://127.0.0.1:{port}",
                approval_key=lambda: "approval",
                on_trade=on_trade,
                alert_after_s=0,
                on_outage=lambda *a: outages.append(a),
            )
            await stream.subscribe(TR, "005930")
            stop = asyncio.Event()
            task = asyncio.create_task(stream.run(stop))
            await wait_until(lambda: ("005930", 71000) in seen, "the good trade after the bad")
            assert stream.connected.is_set() and stream.connections == 1
            stop.set()
            await task
        return seen, stream, outages

    with caplog.at_level(logging.ERROR, logger="aegis.kis.ws"):
        seen, stream, outages = run(main())
    assert seen == [("000660", 120500), ("005930", 71000)]
    assert stream.bad_frames >= 5 and outages == []
    logged = caplog.text
    assert "approval" not in logged and "not-base64" not in logged and "garbage" not in logged


def test_a_dead_stream_reconnects_with_backoff_and_reports_the_outage_once():
    port = free_port()

    async def handler(ws):
        await ws.recv()
        await ws.send(frame(trade("005930", "71000")))
        await ws.wait_closed()

    async def main():
        seen, outages = [], []
        stream = KisStream(
            url=f"ws://127.0.0.1:{port}",
            approval_key=lambda: "approval",
            on_trade=lambda t: seen.append(t.price),
            reconnect_min_s=0.05,
            reconnect_max_s=0.2,
            alert_after_s=0.5,
            on_outage=lambda state, detail, since: outages.append(state),
        )
        await stream.subscribe(TR, "005930")
        stop = asyncio.Event()
        task = asyncio.create_task(stream.run(stop))
        server = await serve(handler, "127.0.0.1", port)
        await wait_until(lambda: len(seen) == 1, "the first trade")
        server.close()  # the server goes away: connections closed, new ones refused
        await server.wait_closed()
        await wait_until(lambda: outages == ["down"], "the outage reported")
        attempts_while_down = stream.connections
        # Keep looking long enough for a second report of the same outage to show.
        await asyncio.sleep(1.0)
        assert outages == ["down"] and not stream.connected.is_set()
        server = await serve(handler, "127.0.0.1", port)
        await wait_until(lambda: len(seen) == 2, "the trade after the restart")
        await wait_until(lambda: outages == ["down", "up"], "the end of the outage")
        assert stream.connections == attempts_while_down + 1
        stop.set()
        await task
        server.close()
        await server.wait_closed()
        return outages

    assert run(main()) == ["down", "up"]


def test_an_unexpected_error_in_the_connection_restarts_it(monkeypatch):
    port = free_port()

    async def handler(ws):
        await ws.recv()
        await ws.send(frame(trade("005930", "71000")))
        await ws.wait_closed()

    async def main():
        seen = []
        stream = KisStream(
            url=f"ws://127.0.0.1:{port}",
            approval_key=lambda: "approval",
            on_trade=lambda t: seen.append(t.price),
            reconnect_min_s=0.05,
        )
        real_read = stream._read
        calls = []

        async def read_once_failing(ws, stop):
            calls.append(1)
            if len(calls) == 1:
                raise LookupError("a surprise")  # not a network error
            await real_read(ws, stop)

        stream._read = read_once_failing
        await stream.subscribe(TR, "005930")
        stop = asyncio.Event()
        async with serve(handler, "127.0.0.1", port):
            task = asyncio.create_task(stream.run(stop))
            await wait_until(lambda: seen == [71000], "a trade on the second connection")
            stop.set()
            await task
        return stream.connections

    assert run(main()) == 2
