"""A small TCP fault proxy (asyncio, standard library only) in front of Redis or PostgreSQL.

    proxy = FaultProxy("127.0.0.1", 6379).start()     # listens on proxy.port, in a thread
    proxy.latency(0.6)        # every chunk, both ways, held 0.6 s before it is passed on
    proxy.stall()             # bytes are held (not lost) until resume()
    proxy.resume()
    proxy.reset()             # every open connection closed at once (new ones still accepted)
    proxy.stop()

The processes under test connect to the proxy's port instead of the server's; the drill turns the
faults on and off while they run. Latency keeps the order of bytes in each direction (each
connection direction is one FIFO), so the protocol stays intact: only time moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

logger = logging.getLogger("drill.proxy")

CHUNK = 65_536


class FaultProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        name: str = "proxy",
    ) -> None:
        self.target = (target_host, target_port)
        self.host, self.port, self.name = host, port, name
        self._latency_s = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None
        self._ready = threading.Event()
        self.connections_total = 0
        self.resets = 0

    # --- control (any thread) ------------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread = threading.Thread(
            target=self._run, name=f"fault-proxy-{self.name}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"the {self.name} proxy did not start")
        return self

    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be ≥ 0")
        self._latency_s = seconds

    def stall(self) -> None:
        self._call(lambda: self._flowing.clear())

    def resume(self) -> None:
        self._call(lambda: self._flowing.set())

    def reset(self) -> None:
        """Close every open connection (both sides) at once."""

        def close_all():
            self.resets += 1
            for writer in list(self._writers):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._writers.clear()

        self._call(close_all)

    def clear(self) -> None:
        self.latency(0.0)
        self.resume()

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown():
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                with contextlib.suppress(Exception):
                    writer.transport.abort()
            self._flowing.set()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop = None

    def _call(self, fn) -> None:
        if self._loop is None:
            raise RuntimeError(f"the {self.name} proxy is not running")
        done = threading.Event()

        def run():
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(run)
        done.wait(5)

    # --- the loop --------------------------------------------------------------------------------
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._accept, self.host, self.port)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_total += 1
        await self._flowing.wait()  # a stalled proxy does not connect anyone through either
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError as exc:
            logger.warning("drill.proxy %s cannot reach %s: %s", self.name, self.target, exc)
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                with contextlib.suppress(Exception):
                    w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction. Chunks go into a FIFO with the time each may leave; a second task
        sends them in order, so latency delays bytes without reordering them."""
        queue: asyncio.Queue = asyncio.Queue()

        async def send():
            while True:
                due, data = await queue.get()
                if data is None:
                    return
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(send())
        try:
            while True:
                data = await reader.read(CHUNK)
                if not data:
                    break
                queue.put_nowait((time.monotonic() + self._latency_s, data))
            queue.put_nowait((0.0, None))
            await sender
            with contextlib.suppress(Exception):
                writer.write_eof()
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if not sender.done():
                sender.cancel()
            with contextlib.suppress(Exception):
                writer.transport.abort()
