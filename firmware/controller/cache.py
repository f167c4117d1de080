# Cache 70 and the drive interfaces 81-84: a stager task reads the volume ahead
# into a small ring of preallocated slots (step 510 "stage the next data") and
# signals each completed read (step 301 "data-read-complete notice") while the
# channel interface sends earlier slots over the link. Slots are released in
# order once the backup device has acknowledged them.
import asyncio
from micropython import const
import supervisor
from devcmd import BLOCK_MAX as CHUNK  # one tape block, or 4 disk blocks, per link request

SLOTS = const(3)  # WINDOW in flight and one being staged from the SD card
_DEADLINE_MS = const(60000)  # the stager waits for the link to free a slot: it retries for less


class Cache:
    def __init__(self, slots, vol, first, hasher):
        self._vol = vol
        self._slots = slots  # SLOTS preallocated CHUNK-sized buffers
        self.total = (vol.size + CHUNK - 1) // CHUNK  # chunks in the volume
        self._staged = first    # next chunk the stager reads
        self._freed = first     # chunks before this one are acknowledged
        self._hasher = hasher
        self._ev = asyncio.Event()
        self._task = None
        self.error = None

    def start(self):
        # registered while the backup runs: the scheduler's runner waits on it
        supervisor.register("stager", _DEADLINE_MS)
        self._task = asyncio.create_task(self._stage())

    def stop(self):
        supervisor.unregister("stager")
        if self._task:
            self._task.cancel()
            self._task = None

    def length(self, i):
        return min(CHUNK, self._vol.size - i * CHUNK)

    async def _stage(self):
        bs = self._vol.block_size
        try:
            while self._staged < self.total:
                while self._staged - self._freed >= SLOTS:
                    self._ev.clear()
                    await supervisor.wait(self._ev, "stager")
                i = self._staged
                mv = memoryview(self._slots[i % SLOTS])[:self.length(i)]
                self._vol.readinto(i * CHUNK // bs, mv)
                self._hasher.update(mv)
                self._staged = i + 1
                self._ev.set()  # 301: data-read-complete notice
                supervisor.checkin("stager")
                await asyncio.sleep_ms(0)
        except Exception as e:  # an SD error ends the backup with its reason
            self.error = e
            self._ev.set()
        supervisor.unregister("stager")  # all staged (or failed): the sender finishes alone

    async def get(self, i):
        """Chunk i once staged (507/610: is there backup data in cache?)."""
        while self._staged <= i:
            if self.error:
                raise self.error
            self._ev.clear()
            await self._ev.wait()
        return memoryview(self._slots[i % SLOTS])[:self.length(i)]

    def release(self, upto):
        """Chunks before `upto` are on the backup device: their slots are free."""
        if upto > self._freed:
            self._freed = upto
            self._ev.set()
