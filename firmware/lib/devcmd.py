# Device commands on the link (cable 14), shared by both boards. Modelled on
# SCSI: stream commands for tape (SSC), block commands for disk, one vendor op
# for the library's MOUNT and one for READ LABEL. A request is (addr, op,
# payload); a reply is (status, payload): GOOD with the op's data, or CHECK
# CONDITION with an 8-byte sense (key, ASC, ASCQ, flags, info) and, for a
# short READ, the data after it. `Device` is the initiator's client (the
# controller's `link ...` commands and its backup engine); the backup device
# board raises `SenseError` and `server` turns it into CHECK CONDITION.
import struct
import asyncio
from micropython import const

# Link payload on both boards: a 2 KiB block plus the 8-byte sense (or a
# disk write's LBA), small enough for 4 KiB link buffers on a 192 KiB heap.
PAYLOAD_MAX = const(2056)
BLOCK_MAX = const(2048)

# Status byte of a reply.
GOOD = const(0x00)
CHECK = const(0x02)  # CHECK CONDITION: sense data in the payload

# Op codes (SCSI numbers where SCSI has the command).
TUR = const(0x00)
REWIND = const(0x01)
READ = const(0x08)  # payload <I maxlen; reply: one block
WRITE = const(0x0A)  # payload: one block
WRITE_FILEMARKS = const(0x10)  # <I count
SPACE = const(0x11)  # <Bi code, count
INQUIRY = const(0x12)
LOAD_UNLOAD = const(0x1B)  # <B 1 load, 0 unload
READ_CAPACITY = const(0x25)  # reply <II blocks, block size
READ_BLOCKS = const(0x28)  # <IH lba, count
WRITE_BLOCKS = const(0x2A)  # <I lba + whole blocks
READ_POSITION = const(0x34)
MOUNT = const(0xC0)  # vendor: library moves the named cartridge into the drive
READ_LABEL = const(0xC1)  # vendor: volume name from the VOL1 label / disk header

SPACE_BLOCKS = const(0)
SPACE_FILEMARKS = const(1)
SPACE_EOD = const(3)

# Peripheral device types (INQUIRY byte 0).
TYPE_DISK = const(0x00)
TYPE_TAPE = const(0x01)
TYPE_LIBRARY = const(0x08)  # a tape drive in a library: MOUNT by volume name
TYPE_NAMES = {TYPE_DISK: "disk", TYPE_TAPE: "tape", TYPE_LIBRARY: "library"}

# Sense keys.
NO_SENSE = const(0x0)
NOT_READY = const(0x2)
MEDIUM_ERROR = const(0x3)
HARDWARE_ERROR = const(0x4)
ILLEGAL_REQUEST = const(0x5)
BLANK_CHECK = const(0x8)
VOLUME_OVERFLOW = const(0xD)

# Sense flags (byte 2 of SCSI fixed-format sense).
FM = const(0x80)
EOM = const(0x40)
ILI = const(0x20)

INQUIRY_FMT = "<BBHI8s16s4s"  # type, flags, block max, capacity bytes, vendor, product, revision
INQ_REMOVABLE = const(0x80)
POSITION_FMT = "<BIIII"  # flags, block, file, used bytes, bytes left before the physical end
POS_BOP = const(0x80)
POS_EW = const(0x40)  # inside the early-warning zone
POS_EOD = const(0x01)
SENSE_FMT = "<BBBBi"
SENSE_LEN = const(8)
DISK_BLOCK = const(512)

_KEYS = ("NO SENSE", "RECOVERED ERROR", "NOT READY", "MEDIUM ERROR", "HARDWARE ERROR", "ILLEGAL REQUEST",
         "UNIT ATTENTION", "DATA PROTECT", "BLANK CHECK", "VENDOR SPECIFIC", "COPY ABORTED",
         "ABORTED COMMAND", "EQUAL", "VOLUME OVERFLOW", "MISCOMPARE", "RESERVED")
_ASC = {
    0x0001: "filemark detected",
    0x0002: "end of medium",
    0x0004: "beginning of medium",
    0x0005: "end of data",
    0x0401: "becoming ready",
    0x0402: "LOAD required",
    0x1100: "unrecovered read error",
    0x2000: "invalid command operation code",
    0x2100: "logical block address out of range",
    0x2400: "invalid field in command",
    0x2500: "no such device at this address",
    0x3001: "unknown format (no label)",
    0x3A00: "medium not present",
    0x4400: "internal target failure",
}


class SenseError(Exception):
    # CHECK CONDITION. Raised by the device's code; raised again by `Device`
    # on the initiator with the sense the device sent.
    def __init__(self, key, asc, ascq, flags=0, info=0):
        super().__init__(key, asc, ascq)
        self.key, self.asc, self.ascq, self.flags, self.info = key, asc, ascq, flags, info
        self.data = b""  # type: bytes | memoryview  # a READ's data that came with the sense (ILI)

    @property
    def sense(self):
        return (self.key, self.asc, self.ascq)

    def __str__(self):
        what = _ASC.get(self.asc << 8 | self.ascq, "")
        return "%s%s (%02X/%02X/%02X)" % (_KEYS[self.key & 15], ": " + what if what else "",
                                          self.key, self.asc, self.ascq)

    # What the backup engine branches on.
    no_device = property(lambda s: s.sense == (ILLEGAL_REQUEST, 0x25, 0))
    no_medium = property(lambda s: s.key == NOT_READY and s.asc == 0x3A)
    becoming_ready = property(lambda s: s.sense == (NOT_READY, 4, 1))
    filemark = property(lambda s: bool(s.flags & FM))
    eod = property(lambda s: s.sense == (BLANK_CHECK, 0, 5))
    overflow = property(lambda s: s.key == VOLUME_OVERFLOW)


def decode_sense(payload):
    if len(payload) < SENSE_LEN:
        raise failure()
    e = SenseError(*struct.unpack_from(SENSE_FMT, payload))
    e.data = bytes(payload[SENSE_LEN:])
    return e


def bad_field():
    return SenseError(ILLEGAL_REQUEST, 0x24, 0)


def failure():
    # The device itself failed (its SD card, or a reply it should not have sent).
    return SenseError(HARDWARE_ERROR, 0x44, 0)


def unpack(fmt, payload, err=bad_field):
    # Fixed fields of a request (or reply), or err() for a payload of the wrong size.
    if len(payload) != struct.calcsize(fmt):
        raise err()
    return struct.unpack(fmt, payload)


def _text(b):
    return bytes(b).rstrip(b"\0 ").decode()


class Device:
    """One device behind the link at address `addr`. Every method raises
    SenseError for CHECK CONDITION (see its properties) and lets the link's own
    errors (dead link, timeout, a side restarted) through. timeout_ms is per
    command: on a noisy wire a 5 s cut has held one command up for 20 s."""

    def __init__(self, link, addr, timeout_ms=60000):
        self.link = link
        self.addr = addr
        self.timeout_ms = timeout_ms

    async def _cmd(self, op, payload=b"", head=b"", into=None):
        # into: a buffer for the reply (a memoryview of it is returned), for bulk reads
        status, reply = await self.link.request(self.addr, op, payload, timeout_ms=self.timeout_ms, head=head,
                                                into=into)
        if status == GOOD:
            return reply
        if status == CHECK:
            raise decode_sense(reply)
        raise failure()  # the device's handler crashed (link status ST_ERR)

    async def _cmd_flag(self, op, payload):
        # Commands that succeed with an EOM warning: True inside the early-warning zone.
        try:
            await self._cmd(op, payload)
            return False
        except SenseError as e:
            if e.key == NO_SENSE and e.flags & EOM:
                return True
            raise

    async def inquiry(self):
        r = await self._cmd(INQUIRY)
        t, flags, bmax, cap, vendor, product, rev = unpack(INQUIRY_FMT, r, failure)
        return {"type": TYPE_NAMES.get(t, "unknown"), "type_code": t, "removable": bool(flags & INQ_REMOVABLE),
                "block_max": bmax, "capacity": cap, "vendor": _text(vendor), "product": _text(product),
                "revision": _text(rev)}

    async def tur(self):
        await self._cmd(TUR)

    async def wait_ready(self, timeout_ms, poll_ms=100):
        # Fig. 10 step 604: TEST UNIT READY until the drive is ready; any
        # answer other than "becoming ready" ends the wait with that error.
        t = 0
        while True:
            try:
                return await self.tur()
            except SenseError as e:
                if not e.becoming_ready or t >= timeout_ms:
                    raise
            await asyncio.sleep_ms(poll_ms)
            t += poll_ms

    async def mount(self, name):
        await self._cmd(MOUNT, name.encode())

    async def load(self):
        await self._cmd(LOAD_UNLOAD, b"\x01")

    async def unload(self):
        await self._cmd(LOAD_UNLOAD, b"\x00")

    async def rewind(self):
        await self._cmd(REWIND)

    async def read_label(self):
        return _text(await self._cmd(READ_LABEL))

    async def write(self, data):
        return await self._cmd_flag(WRITE, data)

    async def write_filemarks(self, n=1):
        return await self._cmd_flag(WRITE_FILEMARKS, struct.pack("<I", n))

    async def read(self, maxlen, into=None):
        # One block. A filemark, end of data or a block longer than maxlen
        # raise SenseError (.filemark, .eod; .data holds a truncated block;
        # with `into` shorter than maxlen + SENSE_LEN that block is a LinkError).
        return await self._cmd(READ, struct.pack("<I", maxlen), into=into)

    async def space(self, count, filemarks=True):
        await self._cmd(SPACE, struct.pack("<Bi", SPACE_FILEMARKS if filemarks else SPACE_BLOCKS, count))

    async def space_eod(self):
        await self._cmd(SPACE, struct.pack("<Bi", SPACE_EOD, 0))

    async def read_position(self):
        flags, block, fileno, used, left = unpack(POSITION_FMT, await self._cmd(READ_POSITION), failure)
        return {"block": block, "file": fileno, "bop": bool(flags & POS_BOP), "ew": bool(flags & POS_EW),
                "eod": bool(flags & POS_EOD), "used": used, "left": left}

    async def capacity(self):
        return unpack("<II", await self._cmd(READ_CAPACITY), failure)  # (blocks, block size)

    async def read_blocks(self, lba, count=1, into=None):
        return await self._cmd(READ_BLOCKS, struct.pack("<IH", lba, count), into=into)

    async def write_blocks(self, lba, data):
        # the LBA goes in front of the data in the link's ring: no 2 KiB copy per write
        await self._cmd(WRITE_BLOCKS, data, struct.pack("<I", lba))
