# `heap watch MS|off` and `heap min`: the lowest free heap while something
# runs (a backup, a restore), for `backupctl bench`. Loaded on first use.
import gc
import asyncio
from console import UsageError


class _Watch:
    # Live heap (after a collection) every `ms`: the lowest a backup or a
    # restore brings it to, short of what happens between two samples.
    task = None
    min_free = samples = 0

    def start(self, ms):
        gc.collect()
        self.min_free = gc.mem_free()
        self.samples = 0
        self.task = asyncio.create_task(self._sample(ms))

    def stop(self):
        if self.task:
            self.task.cancel()
            self.task = None

    async def _sample(self, ms):
        while True:
            gc.collect()
            self.min_free = min(self.min_free, gc.mem_free())
            self.samples += 1
            await asyncio.sleep_ms(ms)


def install(con):
    watch = _Watch()

    @con.command("heap watch", "heap watch MS|off", "sample the free heap every MS ms (`heap min` tells the lowest)")
    def _watch(args):
        if len(args) != 1:
            raise UsageError("give a period in ms, or off")
        watch.stop()
        if args[0] != "off":
            ms = int(args[0]) if args[0].isdigit() else 0
            if not 10 <= ms <= 60000:
                raise UsageError("the period must be 10-60000 ms")
            watch.start(ms)
        return {"watching": watch.task is not None}

    @con.command("heap min", "heap min", "lowest free heap since `heap watch` started")
    def _min(args):
        return {"min_free": watch.min_free, "samples": watch.samples, "mem_total": gc.mem_free() + gc.mem_alloc()}
