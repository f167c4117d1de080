# `sd bench`: throughput of the SD card through VfsFat and lib/sdspi.py, and
# what the driver's CRC16 costs. Imported only when the command runs. It yields
# after every chunk: on a Pico a run takes seconds, and the other tasks must
# keep checking in with the watchdog meanwhile (their time counts in the figures).
import os
import asyncio
from time import ticks_ms, ticks_us, ticks_diff

_PATH = "/sd/bench.tmp"
_CHUNK = 4096  # one cluster: FatFs hands whole sectors to the driver (multi-block)


def _kib_s(nbytes, ms):
    return nbytes * 1000 // 1024 // max(ms, 1)


async def run(sd, kib):
    buf = bytearray(_CHUNK)
    n = kib * 1024 // _CHUNK
    try:
        t0 = ticks_ms()
        with open(_PATH, "wb") as f:
            for _ in range(n):
                f.write(buf)
                await asyncio.sleep_ms(0)
        w = ticks_diff(ticks_ms(), t0)
        t0 = ticks_ms()
        with open(_PATH, "rb") as f:
            while f.readinto(buf):
                await asyncio.sleep_ms(0)
        r = ticks_diff(ticks_ms(), t0)
    finally:
        os.remove(_PATH)
    # the driver alone, on the first sectors of the card (reads only), with and
    # without checking the CRC16 the card sends
    raw = {}
    crc = sd.crc
    try:
        for check in (True, False):
            sd.crc = check
            t0 = ticks_ms()
            for i in range(n):
                sd.readblocks(i * 8 % sd.sectors, buf)
                await asyncio.sleep_ms(0)
            raw[check] = ticks_diff(ticks_ms(), t0)
    finally:
        sd.crc = crc
    from sdspi import crc16
    mv = memoryview(buf)[:512]
    u0 = ticks_us()
    for _ in range(16):
        crc16(mv)
    per = ticks_diff(ticks_us(), u0) // 16
    total = n * _CHUNK
    return {"kib": kib, "write_kib_s": _kib_s(total, w), "read_kib_s": _kib_s(total, r),
            "driver_read_kib_s": _kib_s(total, raw[True]), "driver_read_nocrc_kib_s": _kib_s(total, raw[False]),
            "crc16_us_per_block": per}
