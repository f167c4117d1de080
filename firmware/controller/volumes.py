# Volumes of storage device 20: fixed-size block stores, one file per volume on
# the SD card (/sd/vol/NAME.VOL). A file starts with two 512-byte header slots
# (name, block size, block count, created and last-update times), written in
# turn with a sequence number and a CRC-32: a power cut while one slot is being
# written leaves the other one whole. The blocks follow from byte 4096, so that
# 4 KiB pieces fill whole clusters. Every transfer is whole, sector-aligned
# blocks, which FatFs sends straight to the card: data is on the card when a
# call returns.
#
# API for the backup engine (times are seconds since 2000-01-01, ds3231.to_seconds):
#   store.names() -> sorted names; store.clock() -> now, from the DS3231
#   store.open(name) -> Volume                  VolumeError if there is none
#   vol.name, vol.block_size, vol.blocks, vol.size, vol.created, vol.updated
#   vol.readinto(lba, buf)  -> blocks read      buf (or memoryview) = whole blocks
#   vol.write(lba, data)    -> blocks written   touches the last-update time first
#   await vol.sha256(lba=0, count=None) -> digest (32 bytes), yielding to the loop
#   vol.touch()             last-update time := now
# A call never awaits between its seek and its transfer, so tasks may share a Volume.
import os
import struct
import asyncio
import hashlib
from binascii import crc32
from micropython import const
from console import CmdError
import tablebase

DIR = "/sd/vol"
BLOCK_SIZES = (512, 1024)  # a block fits one console line as base64
_SLOT = const(512)
_HDRS = const(1024)  # the two header slots
_DATA = const(4096)  # block 0: cluster-aligned
_CHUNK = const(2048)  # zero fill and SHA-256 go in pieces this big, yielding between them; the
                      # store keeps one such buffer for good, so it is no bigger than a cache slot
# magic, format, state, block size, block count, created, updated, sequence, name; CRC-32 follows
_HDR = "<4sBBHIIII6s"
_HDR_LEN = const(30)
_MAGIC = b"RVOL"
_FORMAT = const(1)
_CREATING = const(1)  # zero fill not finished: removed at boot
_READY = const(2)


class VolumeError(CmdError):
    """A volume operation was refused; the text says why (console shows it as is)."""


def check_name(name):
    # the rule is shared with table 100 (101, 120), which names volumes too;
    # it also keeps path separators and dots out of file names
    try:
        tablebase.check_name(name)
    except ValueError as e:
        raise VolumeError("volume name: %s" % e)


def _path(name):
    return "%s/%s.VOL" % (DIR, name)


class Volume:
    def __init__(self, store, f, hdr):
        self._store = store
        self._f = f
        _, _, _, self.block_size, self.blocks, self.created, self.updated, self._seq, name = hdr
        self.name = name.decode()
        self.size = self.block_size * self.blocks

    def _offset(self, lba, nbytes):
        bs = self.block_size
        if nbytes <= 0 or nbytes % bs:
            raise VolumeError("%d bytes is not a whole number of %d-byte blocks" % (nbytes, bs))
        n = nbytes // bs
        if lba < 0 or lba + n > self.blocks:
            raise VolumeError("blocks %d-%d are outside %s (blocks 0-%d)" % (lba, lba + n - 1, self.name,
                                                                            self.blocks - 1))
        return _DATA + lba * bs

    def readinto(self, lba, buf):
        self._f.seek(self._offset(lba, len(buf)))
        if self._f.readinto(buf) != len(buf):
            raise VolumeError("%s: short read at block %d" % (self.name, lba))
        return len(buf) // self.block_size

    def write(self, lba, data):
        off = self._offset(lba, len(data))
        self.touch()  # before the data: the header never shows an older time than the blocks
        self._f.seek(off)
        if self._f.write(data) != len(data):
            raise VolumeError("%s: short write at block %d" % (self.name, lba))
        return len(data) // self.block_size

    def touch(self):
        # The DS3231 counts seconds: writes within one second share one header write.
        now = self._store.clock()
        if now != self.updated:
            self._seq += 1
            self._store.put_header(self._f, self._seq, _READY, self.name, self.block_size, self.blocks,
                                   self.created, now)
            self.updated = now

    async def sha256(self, lba=0, count=None):
        count = self.blocks - lba if count is None else count
        self._offset(lba, count * self.block_size)  # range check before the first await
        h = hashlib.sha256()
        buf = self._store.buf
        per = len(buf) // self.block_size
        while count:
            n = min(per, count)
            mv = buf[:n * self.block_size]
            self.readinto(lba, mv)
            h.update(mv)  # readinto and update run without an await between them: the buffer is shared
            lba += n
            count -= n
            await asyncio.sleep_ms(0)
        return h.digest()

    def close(self):
        self._f.close()


class VolumeStore:
    def __init__(self, clock):
        self.clock = clock  # () -> seconds since 2000, from the DS3231
        self.buf = memoryview(bytearray(_CHUNK))
        self._slot = bytearray(_SLOT)
        self._vols = {}

    def scan(self):
        """Open every volume on the card; remove creations a power cut interrupted.
        Returns (removed, damaged) file names; damaged files are left for `vol delete`.
        A rescan (the card came back) forgets the volumes of the card before."""
        for v in self._vols.values():
            try:
                v.close()
            except OSError:
                pass  # its file system is gone
        self._vols = {}
        try:
            os.mkdir(DIR)
        except OSError:
            pass  # exists
        removed, damaged = [], []
        for fn in os.listdir(DIR):
            path = DIR + "/" + fn
            if not fn.endswith(".VOL") or len(fn) != 10:
                continue
            f = open(path, "r+b")
            hdr = self._get_header(f)
            if hdr is not None and hdr[2] == _READY:
                self._vols[fn[:6]] = Volume(self, f, hdr)
                continue
            f.close()
            if hdr is not None or os.stat(path)[6] < _HDRS:
                os.remove(path)
                removed.append(fn)
            else:
                damaged.append(fn)
        return removed, damaged

    def names(self):
        return sorted(self._vols)

    def open(self, name):
        v = self._vols.get(name)
        if v is None:
            check_name(name)
            raise VolumeError("no volume %s (`vol list` shows the volumes)" % name)
        return v

    async def create(self, name, size, block_size=512):
        check_name(name)
        if name in self._vols:
            raise VolumeError("volume %s exists already" % name)
        if len(self._vols) >= tablebase.MAX_VOLUMES:
            raise VolumeError("there are %d volumes already, the most a controller holds" % len(self._vols))
        if block_size not in BLOCK_SIZES:
            raise VolumeError("block size must be one of %s" % ", ".join(str(b) for b in BLOCK_SIZES))
        if size % block_size:
            raise VolumeError("size %d is not a whole number of %d-byte blocks" % (size, block_size))
        st = os.statvfs("/sd")
        need = -(-(_DATA + size) // st[0])  # whole clusters
        if need > st[3]:
            raise VolumeError("%s needs %s but the SD card has %s free" % (name, _mib(need * st[0]),
                                                                           _mib(st[3] * st[0])))
        path = _path(name)
        zero = memoryview(bytearray(_CHUNK))
        end = _DATA + size
        f = open(path, "wb")
        try:
            # Header CREATING, synced so that the directory holds the first
            # cluster (all later clusters hang on its chain: none leak), then the
            # full length allocated (seek past the end grows the file), then the
            # zero fill: a power cut at any point leaves a file the next boot removes.
            self.put_header(f, 0, _CREATING, name, block_size, size // block_size, 0, 0)
            f.write(zero[:_DATA - _SLOT])  # slot 1, empty, and the rest of the first 4 KiB
            f.flush()
            f.seek(end - _SLOT)
            f.write(zero[:_SLOT])
            f.flush()
            f.seek(_DATA)
            pos = _DATA
            while pos < end:
                n = min(_CHUNK, end - pos)
                f.write(zero[:n])
                pos += n
                await asyncio.sleep_ms(0)
            now = self.clock()
            self.put_header(f, 1, _READY, name, block_size, size // block_size, now, now)
            f.close()
        except BaseException as e:  # includes a cancelled task: leave nothing behind
            f.close()
            os.remove(path)
            if isinstance(e, OSError) and e.errno == 28:  # FatFs found no free cluster
                raise VolumeError("the SD card is full (ENOSPC): %s was not created" % name)
            raise
        f = open(path, "r+b")
        v = self._vols[name] = Volume(self, f, self._get_header(f))
        return v

    def delete(self, name):
        if name in self._vols:
            self._vols.pop(name).close()
        else:
            check_name(name)
            try:
                os.stat(_path(name))  # a damaged file that scan() left
            except OSError:
                raise VolumeError("no volume %s (`vol list` shows the volumes)" % name)
        os.remove(_path(name))

    # --- headers ----------------------------------------------------------
    def put_header(self, f, seq, state, name, block_size, blocks, created, updated):
        # slot seq % 2: the slot written before stays whole until this one is
        b = self._slot
        struct.pack_into(_HDR, b, 0, _MAGIC, _FORMAT, state, block_size, blocks, created, updated, seq,
                         name.encode())
        struct.pack_into("<I", b, _HDR_LEN, crc32(memoryview(b)[:_HDR_LEN]))
        f.seek((seq & 1) * _SLOT)
        f.write(b)

    def _get_header(self, f):
        # the newest slot whose CRC is right, or None
        mv = self.buf[:_HDRS]
        f.seek(0)
        if f.readinto(mv) != _HDRS:
            return None
        best = None
        for off in (0, _SLOT):
            if bytes(mv[off:off + 4]) != _MAGIC or mv[off + 4] != _FORMAT:
                continue
            if crc32(mv[off:off + _HDR_LEN]) != struct.unpack_from("<I", mv, off + _HDR_LEN)[0]:
                continue
            h = struct.unpack_from(_HDR, mv, off)
            if best is None or h[7] > best[7]:
                best = h
        return best

def _mib(n):
    return "%d.%d MiB" % (n >> 20, (n & 0xFFFFF) * 10 >> 20)
