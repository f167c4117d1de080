# Restore and verify: read a backup back from tape or disk, volume by volume as
# the catalog lists them, and check it against the SHA-256 taken at backup time.
import hashlib
import binascii
import asyncio
import devcmd
from devcmd import Device, SenseError
from controller.cache import CHUNK
from controller.engine import DISK_DATA_LBA, BackupError, _sense
from controller.table140 import Table140


class Restorer:
    def __init__(self, con, engine):
        self.con = con
        self.engine = engine

    async def run(self, rec, target=None, progress_every=64):
        """Read backup `rec`; write it into volume `target` (None = verify only).
        Returns the SHA-256 hex of what was read; raises BackupError."""
        eng = self.engine
        async with eng.lock:
            dev = Device(eng.link, rec["address"])
            t = Table140(rec["address"])
            h = hashlib.sha256()
            size = rec["bytes"]
            total = (size + CHUNK - 1) // CHUNK
            i = 0
            try:
                inq = await dev.inquiry()
            except Exception as e:
                raise BackupError(307, "device type of address %d unreadable: %s" % (rec["address"], _sense(e)))
            if inq["type"] == "disk":
                name = await dev.read_label()
                if name != rec["device_volume"]:
                    raise BackupError(504, "disk label is %s, the backup is on %s" % (name, rec["device_volume"]))
                blocks, bsize = await dev.capacity()
                per = CHUNK // bsize
                while i < total:
                    n = min(CHUNK, size - i * CHUNK)
                    data = await dev.read_blocks(DISK_DATA_LBA + i * per, (n + bsize - 1) // bsize)
                    i = self._take(h, target, i, memoryview(data)[:n], total, progress_every, rec)
                    await asyncio.sleep_ms(0)
            else:
                for sec in rec["sections"]:
                    await eng.mount(t, dev, sec["name"], 603, 605)
                    await dev.space(1, filemarks=True)  # past HDR1/HDR2/UHLn and their tapemark
                    while True:
                        try:
                            data = await dev.read(CHUNK)
                        except SenseError as e:
                            if e.filemark:
                                break
                            raise BackupError(611, "reading %s block %d: %s" % (sec["name"], i, e))
                        i = self._take(h, target, i, memoryview(data), total, progress_every, rec)
                    await dev.rewind()
                    await dev.unload()
                    self.con.event("restore_volume_done", run=rec["id"], tape=sec["name"])
            if i != total:
                raise BackupError(612, "backup has %d of %d chunks" % (i, total))
            return binascii.hexlify(h.digest()).decode()

    def _take(self, h, target, i, mv, total, every, rec):
        h.update(mv)
        if target is not None:
            target.write(i * CHUNK // target.block_size, mv)
        i += 1
        if i % every == 0 or i == total:
            self.con.event("restore_progress", run=rec["id"], bytes=min(i * CHUNK, rec["bytes"]), total=rec["bytes"])
        return i
