# Backup engine: the backup channel interface (41) of Fig. 7-13 with its backup
# information table 140. The service processor (scheduler.py) instructs it
# (step 202) and reads back normal or abnormal end (203-205).
import asyncio
import hashlib
import binascii
import json
import time
from micropython import const
import ansilabel
import devcmd
import isotime
from devcmd import Device, SenseError
from link import LinkError, LinkReset
from ds3231 import from_seconds
from controller.cache import Cache, CHUNK
from controller.table140 import Table140, next_volume_name

WINDOW = const(2)          # link WRITE requests in flight (< cache SLOTS): the link's 4 KiB
                           # transmit ring holds about 2 (a block and a frame) anyway
CKPT_EVERY = const(32)     # catalog checkpoint every 32 chunks (64 KiB)
MOUNT_TIMEOUT_MS = 120000  # 604/705: how long an operator has to mount a tape
DISK_HDR_LBA = const(1)    # disk: LBA 0 is the disk's label, 1 our backup header
DISK_DATA_LBA = const(8)   # data from here
_LABEL = const(80)


class BackupError(Exception):
    """Abnormal end of a backup, naming the flow-chart step."""

    def __init__(self, step, reason):
        super().__init__("%s %s" % (step, reason))
        self.step = step
        self.reason = reason


class Interrupted(BackupError):
    """The link or the SD card failed mid-run: the run can resume from rec's checkpoint."""

    def __init__(self, rec, reason):
        super().__init__(312, reason)
        self.rec = rec


def _sense(e):
    return str(e) if isinstance(e, SenseError) else "%s: %s" % (type(e).__name__, e)


class Engine:
    def __init__(self, con, link, vols, catalog, clock, slots):
        self.con = con
        self.link = link
        self.vols = vols
        self.catalog = catalog
        self.clock = clock            # () -> seconds since 2000 (DS3231)
        self.tables = {}              # device address -> Table140
        self.busy = None              # run record of the backup in progress
        self.slots = slots            # cache 70: SLOTS CHUNK-sized buffers (controller/app.py)
        self.lock = asyncio.Lock()    # one backup or restore at a time on this channel

    async def wait_link(self, timeout_ms):
        # after a cut the link comes back by itself; the run resumes once it has
        for _ in range(timeout_ms // 200):
            if self.link.up:
                return True
            await asyncio.sleep_ms(200)
        return False

    def table(self, addr):
        t = self.tables.get(addr)
        if t is None:
            t = self.tables[addr] = Table140(addr)
        return t

    def _step(self, t, step, **kw):
        self.con.event("backup_step", step=step, t140=t.as_dict(), **kw)

    # --- Fig. 7: take the request, find out what the device is --------------------
    async def backup(self, entry_no, entry, resume=None, due=None):
        """Back up one entry of table 100. Returns the catalog record; raises
        BackupError on abnormal end (after clearing table 140, step 710 -> 312).
        due: the start time it was instructed for; a later start says by how much."""
        async with self.lock:
            addr = entry["address"]                      # 305
            t = self.table(addr)
            rec = resume
            try:  # from the request on: an SD or clock error ends the run too, and busy is cleared
                if rec is None:
                    rec = self.catalog.new(
                        entry=entry_no, volume=entry["volume"], address=addr, device_volume=entry["device_volume"],
                        start=self.clock(), end=None, result="running", chunk=0, sections=[], bytes=0,
                        sha256=None)
                self.busy = rec
                self.con.event("backup_started", run=rec["id"], volume=rec["volume"], address=addr,
                               resume=bool(resume), chunk=rec["chunk"],
                               late_s=None if due is None else max(0, rec["start"] - due))
                dev = Device(self.link, addr)
                try:
                    inq = await dev.inquiry()                # 306
                except Exception as e:
                    raise BackupError(307, "device type of address %d unreadable: %s" % (addr, _sense(e)))
                try:
                    vol = self.vols.open(rec["volume"])  # the store keeps volumes open
                except Exception as e:
                    raise BackupError(202, "volume %s: %s" % (rec["volume"], e))
                rec.setdefault("updated", vol.updated)  # what the run reads: any other update time is newer
                if inq["type"] == "disk":                    # 308
                    t.disk = 1                               # 309
                    flow = self._disk
                elif inq["type"] in ("tape", "library"):     # 310
                    t.mt = 1                                 # 311
                    flow = self._tape
                else:
                    raise BackupError(310, "device %d is %s, neither disk nor tape" % (addr, inq["type"]))
                self._step(t, 309 if t.disk else 311)
                h = await self._hasher(vol, rec["chunk"])
                cache = Cache(self.slots, vol, rec["chunk"], h)  # lives across tape volumes: staged data is kept
                cache.start()
                try:
                    await flow(t, dev, vol, rec, cache, h)
                finally:
                    cache.stop()
            except BackupError as e:
                t.clear()                                    # 710
                self._end(rec, "failed", "%s %s" % (e.step, e.reason))
                self.con.event("backup_ended_abnormally", run=rec["id"], step=e.step, reason=e.reason)  # 312
                raise
            except LinkError as e:  # cable 14 down: resumable from the checkpoint
                t.clear()
                self.con.event("backup_interrupted", run=rec["id"], chunk=rec["chunk"], reason=_sense(e))
                raise Interrupted(rec, "interrupted at chunk %d: %s" % (rec["chunk"], _sense(e)))
            except Exception as e:  # an SD card error, a bug: end abnormally, say why
                t.clear()
                self.con.event("backup_ended_abnormally", run=rec and rec["id"], step=312, reason=_sense(e))
                if rec:
                    self._end(rec, "failed", "312 %s" % _sense(e))
                raise BackupError(312, _sense(e))
            finally:
                self.busy = None
            t.clear()                                        # 801
            self._step(t, 801)
            self._end(rec, "ok")
            self.con.event("backup_ended_normally", run=rec["id"], volume=rec["volume"], bytes=rec["bytes"],
                           sha256=rec["sha256"])            # 802
            return rec

    def _end(self, rec, result, reason=None):
        rec["result"] = result
        try:
            rec["end"] = self.clock()
        except OSError:
            # the DS3231 did not answer: the run is over all the same. Its start is
            # the time known; a volume changed since then counts as newer (stale),
            # the safe side of the guard in backupcmd.
            rec["end"] = rec["start"]
        if reason:
            rec["reason"] = reason
        self.catalog.save(rec)

    async def _hasher(self, vol, upto):
        # SHA-256 state cannot be saved, so a resumed backup re-reads the part
        # already on the device to carry the hash on; yielding at each chunk, as
        # re-reading most of a large volume takes longer than a watchdog period.
        h = hashlib.sha256()
        buf = self.slots[0]
        bs = vol.block_size
        for i in range(upto):
            mv = memoryview(buf)[:min(CHUNK, vol.size - i * CHUNK)]
            vol.readinto(i * CHUNK // bs, mv)
            h.update(mv)
            await asyncio.sleep_ms(0)
        return h

    def _meta(self, vol, rec):
        return {"volume": vol.name, "size": vol.size, "block_size": vol.block_size, "updated": vol.updated,
                "backup": rec["start"], "run": rec["id"]}

    # --- Fig. 9: disk-like backup device ----------------------------------------
    async def _disk(self, t, dev, vol, rec, cache, h):
        want = rec["device_volume"]
        try:
            name = await dev.read_label()                    # 501 (142 = 0) -> 502
        except LinkError:
            raise  # cable 14, not the label: the run is resumable
        except Exception as e:
            raise BackupError(503, "disk label unreadable: %s" % _sense(e))
        if name != want:                                     # 504
            raise BackupError(504, "disk label is %s, table 100 says %s" % (name, want))
        t.checked = 1                                        # 505
        t.current = want                                     # 506
        self._step(t, 506)
        blocks, bsize = await dev.capacity()
        per = CHUNK // bsize
        need = DISK_DATA_LBA + (vol.size + bsize - 1) // bsize
        if need > blocks:
            raise BackupError(508, "disk %s holds %d bytes, %s needs %d" % (want, blocks * bsize, vol.name,
                                                                          need * bsize))
        meta = self._meta(vol, rec)
        if not rec["sections"]:
            rec["sections"] = [{"name": want, "first": 0, "blocks": 0}]
            await self._disk_header(dev, bsize, meta, "writing")

        async def put(i, data):
            await dev.write_blocks(DISK_DATA_LBA + i * per, data)   # 508
            return False

        await self._send(t, vol, rec, put, cache, h)         # 507-510
        meta["sha256"] = rec["sha256"]
        await self._disk_header(dev, bsize, meta, "complete")

    async def _disk_header(self, dev, bsize, meta, state):
        meta["state"] = state
        b = json.dumps(meta).encode()
        await dev.write_blocks(DISK_HDR_LBA, b"RBKP" + b + b" " * (bsize - 4 - len(b)))

    # --- the write loop shared by Fig. 9 (507-510) and Fig. 10 (610-613) ----------
    async def _send(self, t, vol, rec, put, cache, h, section=None):
        """Send chunks rec["chunk"].. through put(i, data) -> early-warning flag,
        WINDOW requests in flight. Returns None at the end of the volume, or
        "ew" when the tape reached early warning (613)."""
        first = rec["chunk"]
        inflight = []
        nxt = first
        ew = False
        t0 = time.ticks_ms()
        try:
            while True:
                while not ew and nxt < cache.total and len(inflight) < WINDOW:
                    data = await cache.get(nxt)
                    inflight.append(asyncio.create_task(put(nxt, data)))
                    nxt += 1
                if not inflight:
                    break
                task = inflight.pop(0)
                try:
                    ew = (await task) or ew
                except SenseError as e:
                    if e.key == devcmd.VOLUME_OVERFLOW and section is not None:
                        ew = True  # the block did not fit: it goes to the next volume
                        for x in inflight:
                            try:
                                await x
                            except Exception:
                                pass
                        inflight = []
                        break
                    raise BackupError(611 if section else 508, "write failed: %s" % e)
                rec["chunk"] += 1
                if section is not None:
                    section["blocks"] += 1
                cache.release(rec["chunk"])
                if rec["chunk"] % CKPT_EVERY == 0:
                    self.catalog.save(rec)
                    ms = time.ticks_diff(time.ticks_ms(), t0) or 1
                    self.con.event("backup_progress", run=rec["id"], bytes=min(rec["chunk"] * CHUNK, vol.size),
                                   total=vol.size, volume=t.current,
                                   kbps=(rec["chunk"] - first) * CHUNK // ms)
        finally:
            for x in inflight:
                x.cancel()
        rec["bytes"] = min(rec["chunk"] * CHUNK, vol.size)
        if rec["chunk"] >= cache.total:
            rec["sha256"] = binascii.hexlify(h.digest()).decode()
            return None
        return "ew"

    # --- Fig. 10: tape backup device ----------------------------------------------
    async def _tape(self, t, dev, vol, rec, cache, h):
        name = rec["sections"][-1]["name"] if rec["sections"] else rec["device_volume"]
        # 601: 142 = 0 at the start of every run -> 602
        try:
            await dev.tur()                                  # 602 ready?
            ready = True
        except SenseError:
            ready = False
        except LinkError:
            raise
        except Exception as e:
            raise BackupError(602, "device does not answer: %s" % _sense(e))
        if ready and rec["sections"]:
            # resumed after a power cut at the change of cartridge: the drive
            # may hold the next one while the checkpoint still names this one
            try:
                ready = await dev.read_label() == name
            except LinkError:
                raise
            except Exception:
                ready = False  # unreadable: the mount of `name` below decides
            if not ready:
                await dev.unload()
        if ready:
            await self._check_label(t, dev, name, 605)
        else:
            await self.mount(t, dev, name, 603, 605)
        meta = self._meta(vol, rec)
        resumed = bool(rec["sections"])
        if resumed:
            # continue after the last acknowledged block of the current section
            sec = rec["sections"][-1]
            await dev.space(1, filemarks=True)
            await dev.space(sec["blocks"], filemarks=False)
        else:
            sec = {"name": name, "first": 0, "blocks": 0, "section": 1}
            rec["sections"].append(sec)
            await self._tape_header(dev, meta, sec, rec)
        while True:
            async def put(i, data):
                return await dev.write(data)                 # 611

            if await self._send(t, vol, rec, put, cache, h, sec) is None:   # 612 finished
                await self._tape_trailer(dev, "EOF", meta, sec, rec)
                break
            # 613 early warning: close this volume with EOV labels
            self.con.event("volume_full", run=rec["id"], tape=t.current, blocks=sec["blocks"])
            await self._tape_trailer(dev, "EOV", meta, sec, rec)
            self._step(t, 614)
            await dev.rewind()                               # 614, 615
            await dev.unload()                               # 701
            t.mount_wait = 1                                 # 702
            try:
                t.current = next_volume_name(t.current)      # 703
            except ValueError as e:
                raise BackupError(703, str(e))
            self._step(t, 703)
            await self.mount(t, dev, t.current, 704, 706)   # 704-708
            t.mount_wait = 0                                 # 709
            sec = {"name": t.current, "first": rec["chunk"], "blocks": 0, "section": sec["section"] + 1}
            rec["sections"].append(sec)
            await self._tape_header(dev, meta, sec, rec)
            # checkpointed once its header is on the tape: a run resumed on a
            # section spaces over that header (a cut before it resumes on the
            # previous cartridge, whose EOV labels are then written again)
            self.catalog.save(rec)
        self._step(t, 901)
        await dev.rewind()                                   # 901, 902
        await dev.unload()                                   # 903

    async def mount(self, t, dev, name, step, label_step):
        self._step(t, step, volume=name)
        self.con.event("mount_request", volume=name, address=dev.addr)
        sessions = self.link.stats()["sessions"]
        try:
            await dev.mount(name)                            # 603 / 704
        except LinkError:
            raise  # cable 14, not the mount: the run is resumable
        except Exception as e:
            raise BackupError(step, "mount %s failed: %s" % (name, _sense(e)))
        try:
            await dev.wait_ready(MOUNT_TIMEOUT_MS)           # 604 / 705
        except LinkError:
            raise
        except Exception as e:
            if self.link.stats()["sessions"] != sessions:
                # the device restarted between two polls and forgot the mount
                # with everything else: that is a link failure, resumable too
                raise LinkReset("the backup device restarted during the mount of %s" % name)
            raise BackupError(step + 1, "mount %s failed: %s" % (name, _sense(e)))
        await self._check_label(t, dev, name, label_step)

    async def _check_label(self, t, dev, want, step):
        try:
            got = await dev.read_label()                     # 605 / 706
        except LinkError:
            raise
        except Exception as e:
            raise BackupError(step + 1, "label unreadable: %s" % _sense(e))   # 606 / 707
        if got != want:
            raise BackupError(step + 2, "wrong tape: label is %s, expected %s" % (got, want))  # 607 / 708
        t.checked = 1                                        # 608
        t.current = want                                     # 609
        if step == 706:
            t.mount_wait = 0                                 # 709, before 709 is reported
        self._step(t, step + 4 if step == 605 else 709)

    async def _tape_header(self, dev, meta, sec, rec):
        created = ansilabel.julian(from_seconds(meta["backup"]))
        fid = "RVOL." + meta["volume"]
        for lab in (ansilabel.hdr1("HDR", fid, rec["device_volume"], sec["section"], created),
                    ansilabel.hdr2("HDR", CHUNK),
                    ansilabel.user("UHL", 1, "VOLUME=%s SIZE=%d BS=%d RUN=%d" % (
                        meta["volume"], meta["size"], meta["block_size"], meta["run"])),
                    ansilabel.user("UHL", 2, "UPDATED=%s BACKUP=%s" % (
                        isotime.fmt(from_seconds(meta["updated"])), isotime.fmt(from_seconds(meta["backup"]))))):
            await dev.write(lab)
        await dev.write_filemarks(1)

    async def _tape_trailer(self, dev, kind, meta, sec, rec):
        created = ansilabel.julian(from_seconds(meta["backup"]))
        await dev.write_filemarks(1)
        await dev.write(ansilabel.hdr1(kind, "RVOL." + meta["volume"], rec["device_volume"], sec["section"],
                                       created, sec["blocks"]))
        await dev.write(ansilabel.hdr2(kind, CHUNK))
        if kind == "EOF":
            await dev.write(ansilabel.user("UTL", 1, "SHA256=" + rec["sha256"]))
        await dev.write_filemarks(2)
        self.catalog.save(rec)
