"""pricesync in a thread of this process, for its tests and the exit engine's end to end."""

import asyncio
import threading

from trading.pricesync import PriceSync


class Running:
    """PriceSync.run in a thread with its own event loop, stopped on exit."""

    def __init__(self, sync: PriceSync) -> None:
        self.sync = sync
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.stop = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop = asyncio.Event()
            await self.sync.run(self.stop, on_ready=self.ready.set)

        self.loop.run_until_complete(main())

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(30), "pricesync did not start"
        return self.sync

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
