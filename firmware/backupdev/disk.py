# Virtual disks on the SD card: /sd/disks/NAME.dsk is a 512-byte header (a
# VOL1 label with the volume name, the size, a CRC) followed by the blocks.
# The file grows as blocks are written; blocks never written read as zeros.
# Every write is flushed before the answer, so an acknowledged block survives
# a power cut.
import os
import struct
import asyncio
from binascii import crc32
from micropython import const
from console import CmdError
from devcmd import DISK_BLOCK
import ansilabel
from backupdev import store

_HDR = const(512)
_MAGIC = b"RPDK"
_FILL = const(16)  # zero-fill this many blocks between yields to the other tasks


def _path(name):
    return store.DISKS + "/" + name + ".dsk"


def _header(hdr):
    # (name, blocks) from a header block, or None.
    if crc32(memoryview(hdr)[:_HDR - 4]) != struct.unpack_from("<I", hdr, _HDR - 4)[0]:
        return None
    magic, blocks = struct.unpack_from("<4sI", hdr, 80)
    name = store.vol1_name(memoryview(hdr)[:80])
    return (name, blocks) if magic == _MAGIC and name else None


class Disk:
    def __init__(self, name):
        self.name = name
        self._f = open(_path(name), "r+b")
        hdr = bytearray(_HDR)
        self._f.readinto(hdr)
        h = _header(hdr)
        if h is None or h[0] != name:
            self._f.close()
            raise OSError("disk %s has a damaged header" % name)
        self.blocks = h[1]
        self._size = self._f.seek(0, 2)  # header + blocks written so far

    def close(self):
        self._f.close()

    def read(self, lba, count, dst):
        # count blocks at lba into dst; returns the byte count.
        off = _HDR + lba * DISK_BLOCK
        n = count * DISK_BLOCK
        have = max(0, min(n, self._size - off))
        if have:
            self._f.seek(off)
            self._f.readinto(dst[:have])
        while have < n:
            k = min(n - have, _HDR)
            dst[have:have + k] = store.ZEROS[:k]
            have += k
        return n

    async def write(self, lba, data):
        f = self._f
        off = _HDR + lba * DISK_BLOCK
        f.seek(self._size)
        i = 0
        while self._size < off:  # FAT leaves the bytes of a grown file undefined
            k = min(off - self._size, _HDR)
            f.write(store.ZEROS[:k])
            self._size += k
            i += 1
            if i % _FILL == 0:
                await asyncio.sleep_ms(0)
        f.seek(off)
        f.write(data)
        f.flush()
        self._size = max(self._size, off + len(data))

    def info(self):
        return {"name": self.name, "size": self.blocks * DISK_BLOCK, "blocks": self.blocks,
                "written": self._size - _HDR}


class Disks:
    def __init__(self):
        self.scan()

    def scan(self):
        # the disks on the card (again after the card came back)
        self.names = set()
        self._open = {}  # name -> Disk, opened on first use
        try:
            store.ensure_dir(store.DISKS)
            files = os.listdir(store.DISKS)
        except OSError:
            return  # no SD card: no disks (`disk new` says why)
        hdr = bytearray(_HDR)
        for fn in files:
            name = fn[:-4]
            if not fn.endswith(".dsk") or store.name_error(name):
                continue
            with open(_path(name), "rb") as f:
                n = f.readinto(hdr)
            if n == _HDR and _header(hdr):
                self.names.add(name)
            else:
                os.remove(_path(name))  # an unfinished `disk new`

    def get(self, name):
        # The Disk, or None when there is no such disk.
        d = self._open.get(name)
        if d is None and name in self.names:
            d = self._open[name] = Disk(name)
        return d

    def new(self, name, size):
        err = store.name_error(name)
        if err:
            raise CmdError(err)
        if name in self.names:
            raise CmdError("disk %s already exists" % name)
        if size % DISK_BLOCK:
            raise CmdError("disk size must be a multiple of %d bytes" % DISK_BLOCK)
        room = store.free_bytes()
        if size > room:
            raise CmdError("size %d is more than the SD card has free (%d bytes)" % (size, room))
        hdr = bytearray(_HDR)
        hdr[:80] = ansilabel.vol1(name)
        struct.pack_into("<4sI", hdr, 80, _MAGIC, size // DISK_BLOCK)
        struct.pack_into("<I", hdr, _HDR - 4, crc32(memoryview(hdr)[:_HDR - 4]))
        with open(_path(name), "wb") as f:
            f.write(hdr)
        self.names.add(name)

    def delete(self, name):
        err = store.name_error(name)
        if err:
            raise CmdError(err)
        if name not in self.names:
            raise CmdError("no disk %s (see disk list)" % name)
        d = self._open.pop(name, None)
        if d:
            d.close()
        os.remove(_path(name))
        self.names.discard(name)

    def list(self):
        out = []
        for name in sorted(self.names):
            out.append(self.get(name).info())
        return out
