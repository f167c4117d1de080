# Virtual tape cartridges on the SD card, stored as mhVTL stores them: a folder
# per cartridge with the blocks back to back in `data` and one 16-byte record
# per block in `index` (data offset, size, kind data/filemark, CRC-32 of the
# data, CRC-32 of the record seeded with its block number).
#
# Power cuts: a block's data is written and flushed before its index record,
# and the record is flushed before the drive answers. At load the cartridge
# ends at the last record whose own CRC and data CRC check, so everything that
# was acknowledged is there and nothing half-written is. Writing anywhere but
# at the end of data cuts the tape there (tape semantics): the stale records
# are zeroed from the end backwards first, so a cut part way through leaves a
# shorter prefix of the old tape, never a hole. FAT has no truncate; bytes in
# `data` past the last record are simply never read.
import os
import json
import struct
from binascii import crc32
from micropython import const
from devcmd import (SenseError, NO_SENSE, MEDIUM_ERROR, BLANK_CHECK, VOLUME_OVERFLOW, ILLEGAL_REQUEST,
                    FM, EOM, SPACE_BLOCKS, SPACE_EOD, POS_BOP, POS_EW, POS_EOD)
import ansilabel
from backupdev import store

_REC = const(16)
_DATA = const(0)
_FILEMARK = const(1)
_CHUNK = const(512)
_FM_MAX = const(65535)


def create(name, capacity, early_warning, slot):
    # Data and index first, meta.json last: a folder without a readable
    # meta.json is an unfinished `tape new` (or `tape delete`), swept at boot.
    folder = store.TAPES + "/" + name
    os.mkdir(folder)
    label = ansilabel.vol1(name)
    with open(folder + "/data", "wb") as f:
        f.write(label)
    rec = bytearray(_REC)
    _pack(rec, 0, 0, len(label), _DATA, crc32(label))
    with open(folder + "/index", "wb") as f:
        f.write(rec)
    with open(folder + "/meta.json", "w") as f:
        f.write(json.dumps({"capacity": capacity, "early_warning": early_warning, "slot": slot}))


def read_meta(name):
    # The cartridge's fixed properties, or None for an unfinished folder.
    try:
        with open(store.TAPES + "/" + name + "/meta.json") as f:
            m = json.load(f)
        m["capacity"], m["early_warning"], m["slot"]  # all there, or KeyError
        return m
    except (OSError, ValueError, KeyError, TypeError):
        return None


def delete(name):
    folder = store.TAPES + "/" + name
    os.remove(folder + "/meta.json")  # from here on the cartridge is gone
    store.remove_tree(folder)


def _pack(rec, n, off, size, kind, dcrc):
    struct.pack_into("<IIII", rec, 0, off, size | kind << 24, dcrc, 0)
    struct.pack_into("<I", rec, 12, crc32(memoryview(rec)[:12], n))


class Tape:
    """A cartridge opened in the drive: its blocks and the head position."""

    def __init__(self, name, meta, writable=True):
        self.name = name
        self.capacity = meta["capacity"]
        self.early_warning = meta["early_warning"]
        self.slot = meta["slot"]
        folder = store.TAPES + "/" + name
        mode = "r+b" if writable else "rb"
        self._d = open(folder + "/data", mode)
        try:
            self._i = open(folder + "/index", mode)
        except OSError:
            self._d.close()
            raise
        self._r = bytearray(_REC)
        self._rv = memoryview(self._r)
        self._recover()
        self.rewind()

    def close(self):
        self._d.close()
        self._i.close()

    # --- index records ------------------------------------------------------
    def _parse(self, buf, n):
        # (offset, size, kind, data crc) of record n in buf, or None if damaged.
        off, sk, dcrc, rcrc = struct.unpack_from("<IIII", buf, 0)
        if crc32(memoryview(buf)[:12], n) != rcrc:
            return None
        return off, sk & 0xFFFFFF, sk >> 24, dcrc

    def _get(self, n):
        self._i.seek(n * _REC)
        if self._i.readinto(self._rv) != _REC:  # type: ignore[attr-defined]  # stubs: IO has no readinto
            raise SenseError(MEDIUM_ERROR, 0x11, 0)
        r = self._parse(self._r, n)
        if r is None:
            raise SenseError(MEDIUM_ERROR, 0x11, 0)
        return r

    def _data_ok(self, rec, buf):
        off, size, kind, dcrc = rec
        if off + size > self._dsize:
            return False
        c = 0
        mv = memoryview(buf)
        while size:
            k = min(size, len(buf))
            self._d.seek(off)
            self._d.readinto(mv[:k])  # type: ignore[attr-defined]  # stubs: IO has no readinto
            c = crc32(mv[:k], c)
            off += k
            size -= k
        return c == dcrc

    def _recover(self):
        # Find the last whole record whose data checks, scanning back from the
        # end of the index (a zeroed tail is skipped a chunk at a time).
        self._dsize = self._d.seek(0, 2)
        size = self._i.seek(0, 2)
        buf = bytearray(_CHUNK)
        mv = memoryview(buf)
        tmp = bytearray(_CHUNK)
        dirty = 0  # end of the non-zero bytes past the last good record
        hi = size
        self.count = self.end = 0
        while hi > 0:
            lo = (hi - 1) & ~(_CHUNK - 1)
            k = hi - lo
            self._i.seek(lo)
            self._i.readinto(mv[:k])  # type: ignore[attr-defined]  # stubs: IO has no readinto
            if buf[:k] != store.ZEROS[:k]:
                j = (hi - 1) // _REC
                while j * _REC >= lo:
                    s = j * _REC - lo
                    rec = self._parse(mv[s:s + _REC], j) if j * _REC + _REC <= size else None
                    if rec is not None and self._data_ok(rec, tmp):
                        self.count = j + 1
                        self.end = rec[0] + rec[1]
                        self._dirty = max(dirty, self.count * _REC)
                        return
                    if not dirty and buf[s:s + _REC] != store.ZEROS[:_REC]:
                        dirty = min(j * _REC + _REC, size)
                    j -= 1
            hi = lo
        self._dirty = dirty

    def _cut(self):
        # Writing at the head position drops every block from there on. The
        # index tail is zeroed from its end backwards (see the top).
        lo = self.pos * _REC
        hi = self._dirty
        if hi <= lo:
            return
        while hi > lo:
            s = max(lo, (hi - 1) & ~(_CHUNK - 1))
            self._i.seek(s)
            self._i.write(store.ZEROS[:hi - s])
            hi = s
        self._i.flush()
        self._dirty = lo
        self.count = self.pos
        self.end = self.off

    def _append(self, size, kind, dcrc):
        n = self.count
        _pack(self._r, n, self.off, size, kind, dcrc)
        self._i.seek(n * _REC)
        self._i.write(self._r)
        self.count = self.pos = n + 1
        self.off = self.end = self.off + size
        self._dirty = self.count * _REC

    # --- drive operations -----------------------------------------------------
    def in_ew(self):
        return self.off > self.capacity - self.early_warning

    def rewind(self):
        self.pos = self.file = self.off = 0

    def write(self, data):
        # One block; True when it ended inside the early-warning zone. Past the
        # physical end nothing is written.
        n = len(data)
        if self.off + n > self.capacity:
            raise SenseError(VOLUME_OVERFLOW, 0, 2, EOM)
        self._cut()
        self._d.seek(self.off)
        self._d.write(data)
        self._d.flush()
        self._dsize = max(self._dsize, self.off + n)
        self._append(n, _DATA, crc32(data))
        self._i.flush()
        return self.in_ew()

    def write_filemarks(self, n):
        if n > _FM_MAX:
            raise SenseError(ILLEGAL_REQUEST, 0x24, 0)
        if n:
            self._cut()
            for _ in range(n):
                self._append(0, _FILEMARK, 0)
            self._i.flush()
            self.file += n
        return self.in_ew()

    def read(self, dst):
        # The next block into dst (a memoryview); returns its size. A filemark
        # is passed over and reported; at end of data the head stays put.
        p = self.pos
        if p >= self.count:
            raise SenseError(BLANK_CHECK, 0, 5)
        off, size, kind, dcrc = self._get(p)
        if kind == _FILEMARK:
            self.pos, self.off = p + 1, off
            self.file += 1
            raise SenseError(NO_SENSE, 0, 1, FM)
        if size > len(dst):
            raise SenseError(MEDIUM_ERROR, 0x11, 0)
        self._d.seek(off)
        self._d.readinto(dst[:size])  # type: ignore[attr-defined]  # stubs: IO has no readinto
        if crc32(dst[:size]) != dcrc:
            raise SenseError(MEDIUM_ERROR, 0x11, 0)
        self.pos, self.off = p + 1, off + size
        return size

    def label(self, dst):
        # READ LABEL: rewind and read the VOL1 label; the head stays after it.
        self.rewind()
        try:
            name = store.vol1_name(dst[:self.read(dst)])
        except SenseError as e:
            if not e.filemark:
                raise
            name = None
        if name is None:
            self.rewind()
            raise SenseError(MEDIUM_ERROR, 0x30, 1)
        return name

    def space(self, code, count):
        try:
            if code == SPACE_EOD:
                while self.pos < self.count:
                    self._step(1)
                return
            step = 1 if count > 0 else -1
            left = abs(count)
            while left:
                if step > 0 and self.pos >= self.count:
                    raise SenseError(BLANK_CHECK, 0, 5, 0, left)
                if step < 0 and self.pos == 0:
                    raise SenseError(NO_SENSE, 0, 4, EOM, left)
                if self._step(step) == _FILEMARK:
                    if code == SPACE_BLOCKS:
                        raise SenseError(NO_SENSE, 0, 1, FM, left)
                    left -= 1
                elif code == SPACE_BLOCKS:
                    left -= 1
        finally:
            self.off = self.end if self.pos >= self.count else self._get(self.pos)[0]

    def _step(self, step):
        # Move over one record; backwards the head ends before it, so going
        # back over a filemark leaves the head on its beginning-of-tape side.
        p = self.pos if step > 0 else self.pos - 1
        kind = self._get(p)[2]
        self.pos += step
        if kind == _FILEMARK:
            self.file += step
        return kind

    def position(self):
        flags = (POS_BOP if self.pos == 0 else 0) | (POS_EW if self.in_ew() else 0) | \
                (POS_EOD if self.pos >= self.count else 0)
        return flags, self.pos, self.file, self.end, self.capacity - self.off

    def info(self):
        return {"name": self.name, "slot": self.slot, "capacity": self.capacity,
                "early_warning": self.early_warning, "blocks": self.count, "used": self.end}
