# SD card (SDHC, SPI mode) as the bus sees it, for the virtual board: the SD
# Physical Layer spec's SPI protocol over the board's sd.img (512-byte sectors).
# Runs inside the board's `micropython` process (loaded by vboot.py), so it uses
# only time, os-free file I/O and random. It is never kinder than a card: it
# answers only after CMD0, CMD8 and a repeated ACMD41 with HCS, checks command
# and data CRCs once CMD59 turned them on, sends an R1 after NCR fill bytes, a
# data token after an access gap, and holds MISO low (busy) after every write.
#
# Faults, read from the board's fault file (part "sd", `backupctl sim sd`) at
# every command and every data block, so they also strike mid-transfer:
#   ejected: true        no card: MISO floats high, commands get no answer; a
#                        card inserted again is in its power-on state
#   full: true           the file system has no free cluster left: reads of the
#                        FAT show every free entry as a bad cluster (and writes of
#                        the FAT put those entries back as free), so the firmware's
#                        VFS raises ENOSPC as on a card that filled up; the card
#                        itself and all data stay intact. FAT16/FAT32 images only.
#   read_rate/write_rate R, blocks [A, B]
#                        a read of a sector in A..B fails with an error token,
#                        a write with the write-error token, each with chance R
#   busy_ms: N           every write keeps the card busy N ms (real time)
#   cut_after: N, torn: "old"|"half", cut_id
#                        power cut when the Nth block of multi-block writes has
#                        arrived: that sector keeps its old data ("old") or gets
#                        its first half new and second half old ("half"); cut_id
#                        makes the cut happen once, not again after the restart
import random
import time

_BLOCK = 512
_NCR = 2  # fill bytes before each R1 (the spec allows 1-8)
_NAC = 3  # fill bytes before a read data token
_BUSY = 8  # bytes a write keeps MISO low at least
_INIT_POLLS = 3  # ACMD41 calls before the card leaves the idle state
_FF = b"\xff" * _BLOCK
_ZERO = bytes(_BLOCK)

# states of the input side
_CMD = 0  # between commands: collecting a 6-byte command frame
_WTOKEN = 1  # after CMD24/25: waiting for a data token
_WDATA = 2  # collecting a data block and its CRC


def _tables():
    # the card's own CRC tables, on purpose not the driver's code: a shared bug
    # would cancel out
    t7 = bytearray(256)
    t16 = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x12) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t7[i] = c
        d = i << 8
        for _ in range(8):
            d = ((d << 1) ^ 0x1021) & 0xFFFF if d & 0x8000 else (d << 1) & 0xFFFF
        t16.append(d)
    return bytes(t7), t16


_T7, _T16 = _tables()


def _crc16(buf):
    c = 0
    t = _T16
    for b in buf:
        c = ((c << 8) & 0xFFFF) ^ t[(c >> 8) ^ b]
    return c


class SDModel:
    def __init__(self, img, faults, power_cut, state_path):
        self._img = img  # readblocks/writeblocks of whole sectors (vboot's FileBlockDev)
        self.sectors = img.count
        self._faults = faults  # FaultFile
        self._power_cut = power_cut  # () -> never returns: the board loses power
        # the cut_id of the last power cut this card took (survives the restart)
        try:
            self._statef = open(state_path, "r+b")
        except OSError:
            self._statef = open(state_path, "w+b")
        self._cut_done = self._statef.read().decode().strip()
        self._f = {}
        self._cmdb = bytearray(6)
        self._blk = bytearray(_BLOCK + 2)
        self._sec = bytearray(_BLOCK)
        self._out = bytearray()
        self._op = 0
        self.selected = False
        self._power_on()

    def _power_on(self):
        self._spi = False  # SD mode until CMD0 with CS low
        self._ready = False
        self._cmd8 = False
        self._app = False
        self._polls = 0
        self._crc_on = False
        self._state = _CMD
        self._ci = 0
        self._reading = None  # next sector of a CMD18 stream
        self._multi = False
        self._addr = 0
        self._bi = 0
        self._busy = 0
        self._busy_until = 0
        self._cut_count = 0
        self._fat = None
        self._out = bytearray()
        self._op = 0

    # ---- the bus (called by hal/unix.py's SPI and CS pin) ----

    def select(self, low):
        self.selected = low

    def _now(self):
        # the current faults; a new fault state restarts the power-cut count
        f = self._faults.get("sd")
        if f != self._f:
            self._f = f
            self._cut_count = 0
            self._fat = None
        return f

    def clock(self, inp, out, n):
        """n bytes both ways: inp (None = all 0xFF) goes to the card, out (None =
        discarded) gets MISO."""
        f = self._now()
        if f.get("ejected") or not self.selected:
            if f.get("ejected"):
                self._power_on()  # pulled: the next insertion starts from power-on
            # MISO floats (pulled high); a busy card keeps programming
            self._busy = max(0, self._busy - n)
            if out is not None:
                self._fill(out, 0, n, _FF)
            return
        i = 0
        while i < n:
            k = n - i
            q = len(self._out) - self._op
            if q > 0:
                k = min(k, q)
                if out is not None:
                    out[i:i + k] = memoryview(self._out)[self._op:self._op + k]
                self._op += k
            elif self._reading is not None:
                self._next_read()
                continue
            else:
                busy = self._busy > 0 or (self._busy_until and time.time_ns() // 1000000 < self._busy_until)
                if self._busy > 0:
                    k = min(k, self._busy)
                    self._busy -= k
                elif not busy:
                    self._busy_until = 0
                if out is not None:
                    self._fill(out, i, k, _ZERO if busy else _FF)
            self._feed(inp, i, i + k)
            i += k

    @staticmethod
    def _fill(out, i, k, pat):
        while k > 0:
            m = min(k, _BLOCK)
            out[i:i + m] = pat[:m]
            i += m
            k -= m

    # ---- input side ----

    def _feed(self, inp, a, b):
        while a < b:
            st = self._state
            if st == _WDATA:
                m = min(b - a, _BLOCK + 2 - self._bi)
                self._blk[self._bi:self._bi + m] = _FF[:m] if inp is None else inp[a:a + m]
                self._bi += m
                a += m
                if self._bi == _BLOCK + 2:
                    self._commit()
                continue
            if inp is None:
                return  # 0xFF: no command starts, no token
            v = inp[a]
            a += 1
            if st == _WTOKEN:
                if v == (0xFC if self._multi else 0xFE):
                    self._state = _WDATA
                    self._bi = 0
                elif v == 0xFD and self._multi:  # stop tran: one byte, then busy
                    self._state = _CMD
                    self._out = bytearray(b"\xff")
                    self._op = 0
                    self._busy = _BUSY
            elif self._ci == 0:
                if v & 0xC0 == 0x40:
                    self._cmdb[0] = v
                    self._ci = 1
            else:
                self._cmdb[self._ci] = v
                self._ci += 1
                if self._ci == 6:
                    self._ci = 0
                    self._command()

    def _reply(self, r1, extra=b""):
        self._out = bytearray(b"\xff" * _NCR) + bytes((r1,)) + extra
        self._op = 0

    def _command(self):
        c = self._cmdb
        cmd = c[0] & 0x3F
        arg = c[1] << 24 | c[2] << 16 | c[3] << 8 | c[4]
        if not self._spi:
            # SD mode: only a CMD0 with CS low and its valid CRC switches to SPI mode
            if cmd != 0 or c[5] != 0x95:
                return
            self._spi = True
        crc_ok = self._crc7(c) == c[5]
        if (self._crc_on or cmd in (0, 8)) and not crc_ok:
            self._reply(0x08 | (0 if self._ready else 1))  # com CRC error
            return
        if self._busy > 0 or self._busy_until:
            return  # busy: the card does not listen
        idle = 0 if self._ready else 1
        app, self._app = self._app, False
        if cmd == 0:
            self._power_on()
            self._spi = True
            self._reply(0x01)
        elif cmd == 8:
            self._cmd8 = True
            self._reply(idle, bytes((0, 0, arg >> 8 & 0x0F, arg & 0xFF)) if arg >> 8 & 0x0F == 1 else
                        bytes((0, 0, 0, arg & 0xFF)))
        elif cmd == 59:
            self._crc_on = bool(arg & 1)
            self._reply(idle)
        elif cmd == 55:
            self._app = True
            self._reply(idle)
        elif cmd == 41 and app:
            # an SDHC card stays busy for a host that skipped CMD8 or did not set HCS
            if self._cmd8 and arg & 0x40000000:
                self._polls += 1
                self._ready = self._ready or self._polls >= _INIT_POLLS
            self._reply(0 if self._ready else 1)
        elif cmd == 58:
            self._reply(idle, b"\xc0\xff\x80\x00" if self._ready else b"\x00\xff\x80\x00")
        elif not self._ready:
            self._reply(0x05)  # illegal in the idle state
        elif cmd == 9:
            self._reply(0)
            self._out += self._data(self._csd(), True)
        elif cmd == 13:
            self._reply(0, b"\x00")
        elif cmd == 16:
            self._reply(0 if arg == _BLOCK else 0x40)
        elif cmd in (17, 18, 24, 25):
            if arg >= self.sectors:
                self._reply(0x20)  # address error
                return
            self._reply(0)
            if cmd == 17:
                self._out += self._read(arg)
            elif cmd == 18:
                self._reading = arg
            else:
                self._multi = cmd == 25
                self._addr = arg
                self._state = _WTOKEN
        elif cmd == 12:
            self._reading = None
            self._out = bytearray(b"\xff\xff\x00")  # stuff byte, NCR, R1
            self._op = 0
            self._busy = _BUSY
        else:
            self._reply(0x04)

    @staticmethod
    def _crc7(c):
        v = 0
        for i in range(5):
            v = _T7[v ^ c[i]]
        return v | 1

    def _csd(self):
        # CSD 2.0: C_SIZE = capacity / 512 KiB - 1; READ_BL_LEN 9
        cs = self.sectors // 1024 - 1
        return bytes((0x40, 0x0E, 0x00, 0x32, 0x5B, 0x59, 0x00, cs >> 16 & 0x3F, cs >> 8 & 0xFF, cs & 0xFF,
                      0x7F, 0x80, 0x0A, 0x40, 0x00, 0x01))

    def _data(self, payload, crc):
        v = _crc16(payload) if crc else 0xFFFF
        return b"\xff" * _NAC + b"\xfe" + payload + bytes((v >> 8, v & 0xFF))

    def _hit(self, sector, rate_key):
        f = self._f
        rate = f.get(rate_key)
        if not rate:
            return False
        blocks = f.get("blocks")
        if blocks and not blocks[0] <= sector <= blocks[1]:
            return False
        return random.random() < rate

    def _read(self, sector):
        if sector >= self.sectors:
            return b"\xff" * _NAC + b"\x08"  # error token: out of range
        if self._hit(sector, "read_rate"):
            return b"\xff" * _NAC + b"\x04"  # error token: card ECC failed
        self._img.readblocks(sector, self._sec)
        if self._f.get("full") and self._in_fat(sector):
            self._hide_free(self._sec)
        return self._data(self._sec, self._crc_on)

    def _next_read(self):
        # the next block of a CMD18 stream; the fault file is read per block so
        # a card pulled mid-transfer stops answering
        if self._now().get("ejected"):
            self._power_on()
            self._out = bytearray(_FF)
            self._op = 0
            return
        self._out = bytearray(self._read(self._reading))
        self._op = 0
        self._reading += 1

    def _commit(self):
        # a whole data block and its CRC arrived: program it or refuse it
        self._state = _WTOKEN if self._multi else _CMD
        f = self._now()
        if f.get("ejected"):
            self._power_on()
            return
        data = memoryview(self._blk)[:_BLOCK]
        sector = self._addr
        self._addr += 1
        if self._multi and f.get("cut_after") and str(f.get("cut_id")) != self._cut_done:
            self._cut_count += 1
            if self._cut_count >= f["cut_after"]:
                self._cut(sector, data, f.get("torn", "old"))
        if self._crc_on and _crc16(data) != (self._blk[_BLOCK] << 8 | self._blk[_BLOCK + 1]):
            r = 0x0B
        elif sector >= self.sectors or self._hit(sector, "write_rate"):
            r = 0x0D
        else:
            if f.get("full") and self._in_fat(sector):
                self._unhide_free(sector, data)
            self._img.writeblocks(sector, data)
            r = 0x05
        self._out = bytearray((r | 0xE0,))
        self._op = 0
        self._busy = _BUSY
        ms = f.get("busy_ms")
        if ms:
            self._busy_until = time.time_ns() // 1000000 + ms

    # ---- "full": a FAT with no free cluster ----

    def _in_fat(self, sector):
        if self._fat is None:
            self._fat = self._fat_region()
        return self._fat[0] <= sector < self._fat[1]

    def _fat_region(self):
        # (first sector, end sector, entry size) of the FATs, from the boot sector
        b = bytearray(_BLOCK)
        self._img.readblocks(0, b)

        def u(o, n):
            return int.from_bytes(b[o:o + n], "little")

        rsv, nfats, fatsz = u(14, 2), b[16], u(22, 2) or u(36, 4)
        tot = u(19, 2) or u(32, 4)
        data = tot - rsv - nfats * fatsz - (u(17, 2) * 32 + _BLOCK - 1) // _BLOCK
        clusters = data // max(b[13], 1)
        if b[510:512] != b"\x55\xaa" or clusters < 4085:
            return (0, 0, 0)  # not FAT16/FAT32: "full" changes nothing
        return (rsv, rsv + nfats * fatsz, 2 if clusters < 65525 else 4)

    def _hide_free(self, sec):
        es = self._fat[2]
        bad = b"\xf7\xff" if es == 2 else b"\xf7\xff\xff\x0f"
        free = bytes(es)
        for j in range(0, _BLOCK, es):
            if sec[j:j + es] == free:
                sec[j:j + es] = bad

    def _unhide_free(self, sector, data):
        # the firmware writes back a FAT sector it read while "full": entries that
        # are free on the card and shown as bad stay free
        es = self._fat[2]
        bad = b"\xf7\xff" if es == 2 else b"\xf7\xff\xff\x0f"
        free = bytes(es)
        old = bytearray(_BLOCK)
        self._img.readblocks(sector, old)
        for j in range(0, _BLOCK, es):
            if data[j:j + es] == bad and old[j:j + es] == free:
                data[j:j + es] = free

    def _cut(self, sector, data, torn):
        # power fails while the card programs this sector
        if torn == "half":
            self._img.readblocks(sector, self._sec)
            self._sec[:_BLOCK // 2] = data[:_BLOCK // 2]
            self._img.writeblocks(sector, self._sec)
        self._statef.seek(0)
        self._statef.write(("%-40s" % self._f.get("cut_id")).encode())
        self._statef.flush()
        self._power_cut()
