# SD card in SPI mode (SD Physical Layer Simplified Specification, chapter 7),
# the block device VfsFat mounts at /sd. Unlike micropython-lib's sdcard.py it
# checks every answer of the card: CRC on both ways (CMD59), every data
# response token, and every wait bounded by the spec's timeouts, so that a
# rejected write or a pulled card raises OSError with a reason instead of
# passing for success or hanging. The last failure is kept in `error` (VfsFat
# reports what the driver raised, but callers further up may only log EIO).
#
# spi: machine.SPI-like (write, readinto(buf, 0xFF), init(baudrate=)), mode 0;
# cs: output pin, value(0/1).
from time import ticks_ms, ticks_diff
from micropython import const

_BLOCK = const(512)
_ETIMEDOUT = const(110)
_EIO = const(5)
_ENODEV = const(19)
# SD spec 4.6.2: read access 100 ms; write busy 250 ms (SDSC), 500 ms (SDHC/SDXC);
# ACMD41 initialisation 1 s.
_READ_MS = const(100)
_WRITE_MS = const(500)
_INIT_MS = const(1000)
_NCR = const(8)  # bytes before a command's response (NCR <= 8)
_R1_IDLE = const(0x01)
_R1_ILLEGAL = const(0x04)
_R1_CRC = const(0x08)
_START = const(0xFE)  # data token of CMD17/18/24 and of the CSD
_START_MULTI = const(0xFC)  # data token of CMD25
_STOP_TRAN = b"\xfd"
_HCS = const(0x40000000)  # ACMD41: host supports SDHC/SDXC
_PROBE_HZ = const(400000)  # card identification runs at 100-400 kHz


def _tables():
    # CRC7 (x^7+x^3+1) kept left-aligned in a byte so a command's CRC byte is crc | 1;
    # CRC16-CCITT (x^16+x^12+x^5+1) split in high and low byte tables.
    t7 = bytearray(256)
    hi = bytearray(256)
    lo = bytearray(256)
    for i in range(256):
        c = i
        d = i << 8
        for _ in range(8):
            c = (c << 1) ^ (0x12 if c & 0x80 else 0)
            d = (d << 1) ^ (0x1021 if d & 0x8000 else 0)
        t7[i] = c & 0xFF
        hi[i] = (d >> 8) & 0xFF
        lo[i] = d & 0xFF
    return bytes(t7), bytes(hi), bytes(lo)


_T7, _THI, _TLO = _tables()
del _tables


def crc7(buf):
    c = 0
    for b in buf:
        c = _T7[c ^ b]
    return c | 1


def crc16(buf, hi=_THI, lo=_TLO):
    # MicroPython has no CRC16 in C; the native emitters would not run on the
    # virtual boards' armv6m .mpy, so a table per byte (its cost: README).
    h = l = 0
    for b in buf:
        i = h ^ b
        h = l ^ hi[i]
        l = lo[i]
    return h << 8 | l


class SDCard:
    def __init__(self, spi, cs, baudrate=10000000, crc=True):
        self.spi = spi
        self.cs = cs
        self.crc = crc
        self.error = None  # reason of the last failure, for `sd info` / status
        self._cmdb = bytearray(6)
        self._r = bytearray(5)  # R1 and the 4 bytes of R3/R7
        self._tok = bytearray(1)
        self._crcb = bytearray(2)
        self._tokb = bytearray(2)  # 0xFF gap, data token
        self._init(baudrate)

    def _fail(self, errno, why):
        self.error = why
        raise OSError(errno, why)

    def _init(self, baudrate):
        spi = self.spi
        self.cs.value(1)
        spi.init(baudrate=_PROBE_HZ)
        spi.write(b"\xff" * 10)  # 74+ clocks with CS high: the card enters SPI mode
        for _ in range(5):
            try:
                if self._cmd(0, 0, ok=_R1_IDLE) == _R1_IDLE:
                    break
            except OSError:
                pass
        else:
            self._fail(_ENODEV, "no SD card (no answer to CMD0)")
        r = self._r
        v2 = not self._cmd(8, 0x1AA, 4, ok=-1) & _R1_ILLEGAL  # SD v1 cards do not know CMD8
        if v2 and (r[3] & 0x0F, r[4]) != (1, 0xAA):
            self._fail(_EIO, "SD card does not accept 2.7-3.6 V (CMD8 echo %02x%02x)" % (r[3], r[4]))
        if self.crc:
            self._cmd(59, 1, ok=_R1_IDLE)
        t0 = ticks_ms()
        while True:
            self._cmd(55, 0, ok=-1)
            if self._cmd(41, _HCS if v2 else 0, ok=-1) == 0:
                break
            if ticks_diff(ticks_ms(), t0) > _INIT_MS:
                self._fail(_ETIMEDOUT, "SD card still initialising after 1 s (ACMD41)")
        self._cmd(58, 0, 4)
        self.hc = v2 and bool(r[1] & 0x40)  # CCS: block (not byte) addresses
        if not self.hc:
            self._cmd(16, _BLOCK)
        csd = bytearray(16)
        self._cmd(9, 0, keep=True)
        try:
            self._rx(csd)
        finally:
            self._end()
        if csd[0] >> 6 == 1:  # CSD 2.0: (C_SIZE + 1) * 512 KiB
            self.sectors = (((csd[7] & 0x3F) << 16 | csd[8] << 8 | csd[9]) + 1) * 1024
        else:  # CSD 1.0: (C_SIZE + 1) * 2^(C_SIZE_MULT + 2) blocks of 2^READ_BL_LEN bytes
            c_size = (csd[6] & 3) << 10 | csd[7] << 2 | csd[8] >> 6
            mult = (csd[9] & 3) << 1 | csd[10] >> 7
            self.sectors = (c_size + 1) << (mult + 2 + (csd[5] & 0x0F) - 9)
        spi.init(baudrate=baudrate)
        self.error = None

    def _cmd(self, cmd, arg, extra=0, ok=0, keep=False):
        # Send one command and return its R1 (plus `extra` bytes in self._r[1:]).
        # ok: the R1 expected (-1 = any); keep: leave CS low for a data phase.
        b = self._cmdb
        b[0] = 0x40 | cmd
        b[1] = arg >> 24
        b[2] = (arg >> 16) & 0xFF
        b[3] = (arg >> 8) & 0xFF
        b[4] = arg & 0xFF
        b[5] = crc7(memoryview(b)[:5])
        spi = self.spi
        tok = self._tok
        self.cs.value(0)
        spi.readinto(tok, 0xFF)
        if not tok[0]:  # still busy after a write that timed out: it does not listen yet
            try:
                self._wait(_WRITE_MS, "a write")
            except OSError:
                self._end()
                raise
        spi.write(b)
        for _ in range(_NCR):
            spi.readinto(tok, 0xFF)
            if not tok[0] & 0x80:
                break
        else:
            self._end()
            self._fail(_ETIMEDOUT, "no SD card (no answer to CMD%d)" % cmd)
        r = self._r
        r[0] = tok[0]
        if extra:
            spi.readinto(memoryview(r)[1:1 + extra], 0xFF)
        if not keep or tok[0] != ok:
            self._end()
        if ok >= 0 and tok[0] != ok:
            why = "CRC error" if tok[0] & _R1_CRC else "R1 0x%02x" % tok[0]
            self._fail(_EIO, "SD card refused CMD%d (%s)" % (cmd, why))
        return tok[0]

    def _end(self):
        self.cs.value(1)
        self.spi.write(b"\xff")  # the card releases MISO after one more byte

    def _wait(self, ms, what):
        # wait while MISO reads 0x00 (busy) after a write or a stop command
        tok = self._tok
        spi = self.spi
        t0 = ticks_ms()
        while True:
            spi.readinto(tok, 0xFF)
            if tok[0]:
                return
            if ticks_diff(ticks_ms(), t0) > ms:
                self._fail(_ETIMEDOUT, "SD card busy for over %d ms after %s" % (ms, what))

    def _rx(self, buf):
        # one data block: wait for its token (100 ms), data, CRC16
        spi = self.spi
        tok = self._tok
        t0 = ticks_ms()
        while True:
            spi.readinto(tok, 0xFF)
            if tok[0] != 0xFF:
                break
            if ticks_diff(ticks_ms(), t0) > _READ_MS:
                self._fail(_ETIMEDOUT, "SD card sent no data within 100 ms (card removed?)")
        if tok[0] != _START:
            self._fail(_EIO, "SD card read error (token 0x%02x%s)" % (
                tok[0], ", out of range" if tok[0] & 8 else ", ECC failed" if tok[0] & 4 else ""))
        spi.readinto(buf, 0xFF)
        c = self._crcb
        spi.readinto(c, 0xFF)
        if self.crc and crc16(buf) != (c[0] << 8 | c[1]):
            self._fail(_EIO, "SD card read: CRC error in the data")

    def _tx(self, token, buf):
        # one data block, then its data response token and the busy time
        spi = self.spi
        t = self._tokb
        t[0] = 0xFF
        t[1] = token
        spi.write(t)
        spi.write(buf)
        c = self._crcb
        v = crc16(buf) if self.crc else 0xFFFF
        c[0] = v >> 8
        c[1] = v & 0xFF
        spi.write(c)
        tok = self._tok
        spi.readinto(tok, 0xFF)
        r = tok[0] & 0x1F
        if r != 0x05:
            self._wait(_WRITE_MS, "a rejected write")
            self._fail(_EIO, "SD card rejected a write (%s)" % (
                "CRC error" if r == 0x0B else "write error" if r == 0x0D else
                "no data response: card removed?" if r == 0x1F else "data response 0x%02x" % r))
        self._wait(_WRITE_MS, "a write")

    def _addr(self, n):
        return n if self.hc else n * _BLOCK

    def readblocks(self, n, buf):
        mv = memoryview(buf)
        nb = len(buf) // _BLOCK
        if nb == 1:
            self._cmd(17, self._addr(n), keep=True)
            try:
                self._rx(mv)
            finally:
                self._end()
            return
        self._cmd(18, self._addr(n), keep=True)
        try:
            for i in range(nb):
                self._rx(mv[i * _BLOCK:(i + 1) * _BLOCK])
        finally:
            # CMD12: a stuff byte, R1, then busy
            self.spi.write(b"\x4c\x00\x00\x00\x00\x61\xff")
            self._cmd12()

    def _cmd12(self):
        tok = self._tok
        for _ in range(_NCR):
            self.spi.readinto(tok, 0xFF)
            if not tok[0] & 0x80:
                break
        try:
            self._wait(_READ_MS, "stopping a read")
        finally:
            self._end()

    def writeblocks(self, n, buf):
        mv = memoryview(buf)
        nb = len(buf) // _BLOCK
        if nb == 1:
            self._cmd(24, self._addr(n), keep=True)
            try:
                self._tx(_START, mv)
            finally:
                self._end()
            return
        self._cmd(25, self._addr(n), keep=True)
        try:
            for i in range(nb):
                self._tx(_START_MULTI, mv[i * _BLOCK:(i + 1) * _BLOCK])
        finally:
            # stop tran token, a byte, then busy while the card programs
            self.spi.write(_STOP_TRAN)
            self.spi.write(b"\xff")
            try:
                self._wait(_WRITE_MS, "ending a multi-block write")
            finally:
                self._end()

    def status(self):
        """CMD13 (SEND_STATUS): raises OSError if the card does not answer, as
        a pulled card, or one put back (in SD mode again), does not."""
        self._cmd(13, 0, 1)

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.sectors
        if op == 5:  # block size
            return _BLOCK
        return 0  # init, deinit, sync: every write has finished when writeblocks returns
