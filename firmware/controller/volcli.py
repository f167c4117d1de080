# The `vol ...` console commands: vol create/list/info/delete, block I/O as
# base64 (`vol read`, `vol write`, one line each) and `vol sha`, which the host
# compares with its own SHA-256 after a transfer. Loaded on first use
# (volcmd.py installs the stand-in); the VolumeStore itself stays resident.
from binascii import a2b_base64, b2a_base64, hexlify
from micropython import const
import isotime
import system
from console import CmdError, UsageError, opts, parse_size, arg_int
from ds3231 import from_seconds
from controller import table100
from controller.volumes import check_name

_READ_MAX = const(2048)  # bytes per `vol read` reply


def _iso(t):
    return isotime.fmt(from_seconds(t))


def _info(v):
    return {"name": v.name, "size": v.size, "block_size": v.block_size, "blocks": v.blocks,
            "created": _iso(v.created), "updated": _iso(v.updated)}


def install(con, store):
    need_sd = system.need_sd

    def vol(name):
        need_sd()
        return store.open(name)

    def one(args, n, what):
        if len(args) != n:
            raise UsageError(what)
        return args

    @con.command("vol create", "vol create NAME --size 4M [--block 512|1024]",
                 "make a zero-filled volume on the SD card")
    async def _create(args):
        pos, kw = opts(args, values=("size", "block"))
        (name,) = one(pos, 1, "give one volume name")
        if "size" not in kw:
            raise UsageError("--size is required")
        need_sd()
        v = await store.create(name, parse_size(kw["size"]), arg_int(kw.get("block", "512"), "--block"))
        d = _info(v)
        d["text"] = "created %s: %d blocks of %d bytes" % (v.name, v.blocks, v.block_size)
        return d

    @con.command("vol list", "vol list", "the volumes on the SD card (110 = their number)")
    def _list(args):
        one(args, 0, "vol list takes no arguments")
        need_sd()
        vols = [_info(store.open(n)) for n in store.names()]
        rows = ["%-6s %10d bytes  %4d-byte blocks  updated %s" % (d["name"], d["size"], d["block_size"],
                                                                   d["updated"]) for d in vols]
        return {"count": len(vols), "volumes": vols,
                "text": "\n".join(rows + ["%d volumes (110)" % len(vols)])}

    @con.command("vol info", "vol info NAME", "size, block size, created and last-update times")
    def _vinfo(args):
        return _info(vol(one(args, 1, "give one volume name")[0]))

    @con.command("vol delete", "vol delete NAME --yes", "delete a volume and its data")
    def _delete(args):
        pos, kw = opts(args, flags=("yes",))
        (name,) = one(pos, 1, "give one volume name")
        check_name(name)
        if name in table100.current()["volumes"]["names"]:
            raise CmdError("%s is in table 100 in force (volumes.names): load a table without it first" % name)
        if not kw.get("yes"):
            raise CmdError("refused: this deletes %s and all its data; add --yes to confirm" % name)
        need_sd()
        store.delete(name)
        return {"deleted": name, "text": "deleted " + name}

    @con.command("vol read", "vol read NAME LBA [COUNT]", "read blocks, as base64 (at most 2 KiB)")
    def _read(args):
        if not 2 <= len(args) <= 3:
            raise UsageError("give NAME LBA [COUNT]")
        v = vol(args[0])
        lba = arg_int(args[1], "LBA")
        count = arg_int(args[2], "COUNT") if len(args) == 3 else 1
        if not 0 < count * v.block_size <= _READ_MAX:
            raise UsageError("COUNT must be 1-%d for %d-byte blocks" % (_READ_MAX // v.block_size, v.block_size))
        mv = memoryview(bytearray(count * v.block_size))  # for this reply only: its base64 and JSON are as big
        v.readinto(lba, mv)
        return {"lba": lba, "count": count,
                "data": b2a_base64(mv, newline=False).decode()}  # type: ignore[arg-type]  # any buffer

    @con.command("vol write", "vol write NAME LBA BASE64", "write whole blocks given as base64")
    def _write(args):
        name, lba, data = one(args, 3, "give NAME LBA BASE64")
        v = vol(name)
        lba = arg_int(lba, "LBA")
        try:
            data = a2b_base64(data)
        except ValueError:
            raise UsageError("the data is not base64")
        return {"lba": lba, "count": v.write(lba, data)}

    @con.command("vol sha", "vol sha NAME [LBA COUNT]", "SHA-256 of a volume or of a block range")
    async def _sha(args):
        if len(args) not in (1, 3):
            raise UsageError("give NAME, or NAME LBA COUNT")
        v = vol(args[0])
        lba, count = (arg_int(args[1], "LBA"), arg_int(args[2], "COUNT")) if len(args) == 3 else (0, v.blocks)
        digest = hexlify(await v.sha256(lba, count)).decode()
        return {"name": v.name, "lba": lba, "count": count, "sha256": digest, "text": digest}

