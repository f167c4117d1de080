# CPU cost of lib/sdspi.py per 512-byte block, CRC on and off, without a card:
# a bus that answers at once (R1 0, data token, data, its CRC16; data response
# 0x05 and no busy). What remains is the driver's own Python, the part a Pico
# pays 40-60x for. Run: micropython sd_cost.py FIRMWARE_LIB_DIR; prints JSON.
import sys
import json
import time

sys.path.insert(0, sys.argv[1])
import sdspi  # noqa: E402

_N = 1000
_DATA = bytearray(range(256)) + bytearray(range(256))
_CRC = sdspi.crc16(_DATA)


class _Bus:
    def __init__(self):
        self.q = b"\xff"
        self.i = 0

    def write(self, buf):
        pass

    def readinto(self, buf, write=0xFF):
        n = len(buf)
        if n == 512:
            buf[:] = _DATA
        elif n == 2:
            buf[0] = _CRC >> 8
            buf[1] = _CRC & 0xFF
        else:
            buf[0] = self.q[self.i % len(self.q)]
            self.i += 1


class _Pin:
    def value(self, v=None):
        pass


class _Card(sdspi.SDCard):
    def __init__(self, crc):  # as after _init on an SDHC card
        self.spi = _Bus()
        self.cs = _Pin()
        self.crc = crc
        self.error = None
        self.hc = True
        self.sectors = 1 << 20
        self._cmdb = bytearray(6)
        self._r = bytearray(5)
        self._tok = bytearray(1)
        self._crcb = bytearray(2)
        self._tokb = bytearray(2)


def _us(card, q, op):
    buf = bytearray(512)
    card.spi.q = q
    card.spi.i = 0
    t0 = time.ticks_us()
    for i in range(_N):
        op(i, buf)
    return time.ticks_diff(time.ticks_us(), t0) / _N


out = {}
for crc in (True, False):
    c = _Card(crc)
    # byte answers in order: not busy, R1, then data token / data response, not busy
    out["crc_on" if crc else "crc_off"] = {"read_us": _us(c, b"\xff\x00\xfe", c.readblocks),
                                           "write_us": _us(c, b"\xff\x00\xe5\xff", c.writeblocks)}
print(json.dumps(out))
