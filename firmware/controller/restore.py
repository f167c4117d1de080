# Restore and verify: read a backup back from tape or disk, volume by volume as
# the catalog lists them, and check it against the SHA-256 taken at backup time.
import hashlib
import binascii
import asyncio
import json
import ansilabel
from devcmd import Device, SenseError
from controller.cache import CHUNK
from controller.engine import DISK_DATA_LBA, DISK_HDR_LBA, BackupError, _sense
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
            buf = eng.slots[0]  # the backup cache's, free while this holds the engine's lock
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
                await self._disk_header(dev, rec)
                per = CHUNK // bsize
                while i < total:
                    n = min(CHUNK, size - i * CHUNK)
                    data = await dev.read_blocks(DISK_DATA_LBA + i * per, (n + bsize - 1) // bsize, buf)
                    i = self._take(h, target, i, memoryview(data)[:n], total, progress_every, rec)
                    await asyncio.sleep_ms(0)
            else:
                if target is not None and len(rec["sections"]) > 1:
                    # every cartridge must still hold this run before the first
                    # block of the target is overwritten
                    for sec in rec["sections"]:
                        await eng.mount(t, dev, sec["name"], 603, 605)
                        await self._tape_header(dev, sec, rec)
                        await dev.rewind()
                        await dev.unload()
                for sec in rec["sections"]:
                    await eng.mount(t, dev, sec["name"], 603, 605)
                    await self._tape_header(dev, sec, rec)  # leaves the tape after the header's tapemark
                    while True:
                        try:
                            data = await dev.read(CHUNK, buf)
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

    async def _tape_header(self, dev, sec, rec):
        # HDR1 (file section) and UHL1 (RUN=) say which run this cartridge holds:
        # a cartridge reused by a later run must not be restored as this one.
        run = section = None
        while True:
            try:
                block = await dev.read(ansilabel.LABEL_LEN)
            except SenseError as e:
                if e.filemark:
                    break
                raise BackupError(606, "%s: header labels unreadable: %s" % (sec["name"], e))
            lid, f = ansilabel.parse(block)
            if lid == "HDR1":
                section = f["section"]
            elif lid == "UHL1":
                run = f.get("RUN")
        if run != str(rec["id"]) or section != sec.get("section", section):
            raise BackupError(607, "%s holds run %s section %s now, not run %d section %s: nothing restored"
                              % (sec["name"], run, section, rec["id"], sec.get("section")))

    async def _disk_header(self, dev, rec):
        # the backup header at DISK_HDR_LBA says which run the disk holds
        raw = bytes(await dev.read_blocks(DISK_HDR_LBA, 1))
        meta = None
        if raw[:4] == b"RBKP":
            try:
                meta = json.loads(raw[4:].decode().strip())
            except ValueError:
                pass
        if not meta or meta.get("run") != rec["id"] or meta.get("state") != "complete":
            raise BackupError(504, "%s holds %s now, not run %d: nothing restored" % (
                rec["device_volume"], "run %s" % meta.get("run") if meta else "no backup header", rec["id"]))

    def _take(self, h, target, i, mv, total, every, rec):
        h.update(mv)
        if target is not None:
            target.write(i * CHUNK // target.block_size, mv)
        i += 1
        if i % every == 0 or i == total:
            self.con.event("restore_progress", run=rec["id"], bytes=min(i * CHUNK, rec["bytes"]), total=rec["bytes"])
        return i
