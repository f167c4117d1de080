# A backup device the device emulator (firmware/backupdev) cannot present, run
# by the real `micropython` interpreter on the backup device's end of the
# virtual wire while that board is powered off (hil_tests/test_backup.py).
#
#   micropython odddev.py UART_PATH LOG_FILE PROC_ADDR DISK_ADDR
#
# It speaks the link protocol (firmware/lib/link.py) and devcmd's op codes:
#   PROC_ADDR: INQUIRY says peripheral device type 0x03 (a "processor"),
#              neither disk-like nor a tape drive (Fig. 7 step 310 "no");
#   DISK_ADDR: INQUIRY says disk, but READ LABEL fails with MEDIUM ERROR,
#              unknown format (Fig. 9 step 503 "no");
#   any other: "no such device" (05/25/00), as the emulator answers.
# Every request is appended to LOG_FILE as one line "addr op" (hex op), so the
# test can check that nothing was written to these devices.
import sys
import struct
import asyncio

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/../firmware/lib")
import link  # noqa: E402
import devcmd  # noqa: E402
from linkpeer import uart  # noqa: E402

TYPE_PROCESSOR = 0x03


def sense(key, asc, ascq):
    return devcmd.CHECK, struct.pack(devcmd.SENSE_FMT, key, asc, ascq, 0, 0)


async def main(path, log, proc_addr, disk_addr):
    lk = link.Link(uart(path), payload_max=devcmd.PAYLOAD_MAX)
    out = open(log, "a")

    async def handler(addr, op, p):
        out.write("%d %02x\n" % (addr, op))
        out.flush()
        if addr not in (proc_addr, disk_addr):
            return sense(devcmd.ILLEGAL_REQUEST, 0x25, 0)
        if op == devcmd.INQUIRY:
            t = TYPE_PROCESSOR if addr == proc_addr else devcmd.TYPE_DISK
            return devcmd.GOOD, struct.pack(devcmd.INQUIRY_FMT, t, 0, devcmd.DISK_BLOCK, 1 << 20, b"ODDDEV",
                                            b"TEST PEER", b"1")
        if op == devcmd.TUR:
            return devcmd.GOOD, b""
        if op == devcmd.READ_LABEL:
            return sense(devcmd.MEDIUM_ERROR, 0x30, 1)
        if op == devcmd.READ_CAPACITY:
            return devcmd.GOOD, struct.pack("<II", 2048, devcmd.DISK_BLOCK)
        return sense(devcmd.ILLEGAL_REQUEST, 0x20, 0)  # nothing else is served: no writes

    lk.start()
    lk.serve(handler)
    print("ready")
    while True:
        await asyncio.sleep(3600)


asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
