# The backup device's end of the link (cable 14): which device answers at
# which address (device address 122), and every op code decoded and turned
# into a call on the library's drive or on a disk. Any other address answers
# "no such device" (05/25/00), which the controller reads as "device type
# unreadable" (Fig. 7 step 307).
import struct
import hal
import system
from link import Link
from version import VERSION
from devcmd import (SenseError, GOOD, CHECK, SENSE_FMT, SENSE_LEN, NO_SENSE, ILLEGAL_REQUEST, EOM, ILI,
                    TUR, REWIND, READ, WRITE, WRITE_FILEMARKS, SPACE, INQUIRY, LOAD_UNLOAD, READ_CAPACITY,
                    READ_BLOCKS, WRITE_BLOCKS, READ_POSITION, MOUNT, READ_LABEL, SPACE_BLOCKS, SPACE_FILEMARKS,
                    SPACE_EOD, TYPE_DISK, TYPE_LIBRARY, INQUIRY_FMT, INQ_REMOVABLE, POSITION_FMT, DISK_BLOCK,
                    PAYLOAD_MAX, BLOCK_MAX, bad_field, failure, unpack)
from backupdev import store
from backupdev.library import Library
from backupdev.disk import Disks


def _ew():
    return SenseError(NO_SENSE, 0, 2, EOM)  # the write went through, inside the early-warning zone


def _none(p):
    if len(p):
        raise bad_field()


class Server:
    def __init__(self, cfg, library, disks, link):
        self.cfg = cfg
        self.lib = library
        self.disks = disks
        self.link = link
        self._mv = memoryview(bytearray(SENSE_LEN + BLOCK_MAX))  # every reply is built here
        self._data = self._mv[SENSE_LEN:]
        self._tape_ops = {TUR: self._tur, INQUIRY: self._inquiry, MOUNT: self._mount, LOAD_UNLOAD: self._load,
                          REWIND: self._rewind, READ_LABEL: self._tape_label, WRITE: self._write,
                          WRITE_FILEMARKS: self._weof, READ: self._read, SPACE: self._space,
                          READ_POSITION: self._position}
        self._disk_ops = {TUR: self._disk_tur, INQUIRY: self._inquiry, READ_LABEL: self._disk_label,
                          READ_CAPACITY: self._capacity, READ_BLOCKS: self._bread, WRITE_BLOCKS: self._bwrite}

    def device(self, addr):
        # The library or the Disk at addr; SenseError "no such device" otherwise.
        spec = self.cfg["devices"].get(str(addr))
        if spec == "library":
            return self.lib
        d = self.disks.get(spec[5:]) if spec else None
        if d is None:
            raise SenseError(ILLEGAL_REQUEST, 0x25, 0)
        return d

    async def handle(self, addr, op, payload):
        try:
            dev = self.device(addr)
            fn = (self._tape_ops if dev is self.lib else self._disk_ops).get(op)
            if fn is None:
                raise SenseError(ILLEGAL_REQUEST, 0x20, 0)
            out = fn(dev, payload)
            if hasattr(out, "send"):
                out = await out
            return GOOD, out
        except SenseError as e:
            err = e
        except OSError:  # the SD card failed
            err = failure()
        struct.pack_into(SENSE_FMT, self._mv, 0, err.key, err.asc, err.ascq, err.flags, err.info)
        n = len(err.data)
        self._data[:n] = err.data
        return CHECK, self._mv[:SENSE_LEN + n]

    def status(self):
        d = self.lib.status()
        d["link_up"] = self.link.up
        return d

    # --- both kinds ------------------------------------------------------------
    def _inquiry(self, dev, p):
        _none(p)
        if dev is self.lib:
            t = dev.tape
            return struct.pack(INQUIRY_FMT, TYPE_LIBRARY, INQ_REMOVABLE, BLOCK_MAX, t.capacity if t else 0,
                               b"RP2040", b"VTL LIBRARY", VERSION.encode())
        return struct.pack(INQUIRY_FMT, TYPE_DISK, 0, DISK_BLOCK, dev.blocks * DISK_BLOCK, b"RP2040",
                           ("DISK " + dev.name).encode(), VERSION.encode())

    # --- the tape drive in the library ----------------------------------------------
    def _tur(self, lib, p):
        _none(p)
        lib.drive()
        return b""

    def _mount(self, lib, p):
        try:
            name = bytes(p).decode()
        except UnicodeError:
            raise bad_field()
        lib.mount(name)
        return b""

    def _load(self, lib, p):
        (on,) = unpack("<B", p)
        if on > 1:
            raise bad_field()
        lib.load(on == 1)
        return b""

    def _rewind(self, lib, p):
        _none(p)
        lib.drive().rewind()
        return b""

    def _tape_label(self, lib, p):
        _none(p)
        return lib.drive().label(self._data).encode()

    def _write(self, lib, p):
        if not 0 < len(p) <= BLOCK_MAX:
            raise bad_field()
        if lib.drive().write(p):
            raise _ew()
        return b""

    def _weof(self, lib, p):
        (n,) = unpack("<I", p)
        if lib.drive().write_filemarks(n):
            raise _ew()
        return b""

    def _read(self, lib, p):
        (maxlen,) = unpack("<I", p)
        if not maxlen:
            raise bad_field()
        n = lib.drive().read(self._data)
        if n > maxlen:  # the block is longer: its head, and ILI with what was left out
            e = SenseError(NO_SENSE, 0, 0, ILI, n - maxlen)
            e.data = self._data[:maxlen]
            raise e
        return self._data[:n]

    def _space(self, lib, p):
        code, count = unpack("<Bi", p)
        if code not in (SPACE_BLOCKS, SPACE_FILEMARKS, SPACE_EOD):
            raise bad_field()
        lib.drive().space(code, count)
        return b""

    def _position(self, lib, p):
        _none(p)
        return struct.pack(POSITION_FMT, *lib.drive().position())

    # --- disks ---------------------------------------------------------------------------
    def _disk_tur(self, disk, p):
        _none(p)
        return b""

    def _disk_label(self, disk, p):
        _none(p)
        return disk.name.encode()

    def _capacity(self, disk, p):
        _none(p)
        return struct.pack("<II", disk.blocks, DISK_BLOCK)

    def _blocks(self, disk, lba, count):
        if not count or count * DISK_BLOCK > BLOCK_MAX:
            raise bad_field()
        if lba + count > disk.blocks:
            raise SenseError(ILLEGAL_REQUEST, 0x21, 0)

    def _bread(self, disk, p):
        lba, count = unpack("<IH", p)
        self._blocks(disk, lba, count)
        return self._data[:disk.read(lba, count, self._data)]

    def _bwrite(self, disk, p):
        n = len(p) - 4
        if n <= 0 or n % DISK_BLOCK:
            raise bad_field()
        lba = struct.unpack_from("<I", p)[0]
        self._blocks(disk, lba, n // DISK_BLOCK)
        return self._bwrite_async(disk, lba, p[4:])

    async def _bwrite_async(self, disk, lba, data):
        await disk.write(lba, data)
        return b""


def start(con):
    # The library, the disks and the link to the controller, serving requests.
    cfg = store.Config()
    lnk = Link(hal.uart(0), payload_max=PAYLOAD_MAX, baud=hal.board()["uart0"]["baud"])
    srv = Server(cfg, Library(cfg, con.event), Disks(), lnk)
    system.on_sd_mount(srv.lib.scan)  # a card inserted later: its cartridges and disks
    system.on_sd_mount(srv.disks.scan)
    lnk.start()
    lnk.serve(srv.handle)
    return srv
