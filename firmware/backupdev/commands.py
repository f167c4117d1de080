# Console commands of the backup device board: cartridges (`tape`), disks
# (`disk`), the address table (`dev`) and how mounts are served (`mount`).
import system
from console import CmdError, UsageError, opts, parse_size, arg_int
from backupdev import store

_ADDR_MAX = 15  # the link carries 4-bit device addresses
_CAP_MAX = 0xFFFFFFFF  # the index stores 32-bit offsets
_DELAY_MAX = 600000


def _one_name(args, flags=(), values=()):
    pos, kw = opts(args, flags, values)
    if len(pos) != 1:
        raise UsageError("give one volume name")
    err = store.name_error(pos[0])
    if err:
        raise UsageError(err)
    return pos[0], kw


def _confirmed(args):
    # Destroying a cartridge or a disk takes --yes, as `vol delete` does.
    name, kw = _one_name(args, flags=("yes",))
    if not kw.get("yes"):
        raise UsageError("this destroys %s: add --yes" % name)
    return name


def _no_args(args):
    if args:
        raise UsageError("no arguments expected, got %r" % " ".join(args))


_need_sd = system.need_sd


def _addr(s):
    a = arg_int(s, "address")
    if not 0 <= a <= _ADDR_MAX:
        raise UsageError("address must be 0-%d" % _ADDR_MAX)
    return str(a)


def install(con, srv):
    lib, disks, cfg = srv.lib, srv.disks, srv.cfg

    @con.command("tape new", "tape new NAME --capacity 2M [--early-warning 64K]",
                 "new cartridge in a free slot, VOL1 label as its first block")
    def _tape_new(args):
        name, kw = _one_name(args, values=("capacity", "early-warning"))
        if "capacity" not in kw:
            raise UsageError("--capacity is required")
        cap = parse_size(kw["capacity"])
        ew = parse_size(kw["early-warning"]) if "early-warning" in kw else cap // 32
        if not 4096 <= cap <= _CAP_MAX:
            raise UsageError("capacity must be 4K to 4G")
        if ew >= cap // 2:
            raise UsageError("the early-warning zone must be less than half the capacity")
        _need_sd()
        slot = lib.new(name, cap, ew)
        return {"name": name, "slot": slot, "capacity": cap, "early_warning": ew,
                "text": "%s in slot %d: %d bytes, early warning %d bytes before the end" % (name, slot, cap, ew)}

    @con.command("tape list", "tape list", "cartridges: slot, capacity, bytes used, where")
    def _tape_list(args):
        _no_args(args)
        tapes = lib.list()
        rows = ["%-6s slot %2d %-5s %10d of %10d bytes, %d blocks" % (t["name"], t["slot"], t["location"],
                                                                      t["used"], t["capacity"], t["blocks"])
                for t in tapes]
        return {"tapes": tapes, "text": "\n".join(rows) or "no cartridges"}

    @con.command("tape load", "tape load NAME", "put a cartridge into the drive by hand (ready at once)")
    def _tape_load(args):
        name, _ = _one_name(args)
        lib.load_by_hand(name)
        return {"drive": name, "text": "%s is in the drive" % name}

    @con.command("tape unload", "tape unload", "take the cartridge out of the drive, back to its slot")
    def _tape_unload(args):
        _no_args(args)
        name = lib.unload_by_hand()
        return {"unloaded": name, "text": "%s is back in its slot" % name}

    @con.command("tape delete", "tape delete NAME --yes", "destroy a cartridge and its data")
    def _tape_delete(args):
        name = _confirmed(args)
        lib.delete(name)
        return {"deleted": name}

    @con.command("disk new", "disk new NAME --size 8M", "new disk, its volume name in the header")
    def _disk_new(args):
        name, kw = _one_name(args, values=("size",))
        if "size" not in kw:
            raise UsageError("--size is required")
        size = parse_size(kw["size"])
        if not 4096 <= size <= _CAP_MAX:
            raise UsageError("size must be 4K to 4G")
        _need_sd()
        disks.new(name, size)
        return {"name": name, "size": size}

    @con.command("disk list", "disk list", "disks: size and bytes written")
    def _disk_list(args):
        _no_args(args)
        ds = disks.list()
        rows = ["%-6s %10d bytes, %d written" % (d["name"], d["size"], d["written"]) for d in ds]
        return {"disks": ds, "text": "\n".join(rows) or "no disks"}

    @con.command("disk delete", "disk delete NAME --yes", "destroy a disk and its data")
    def _disk_delete(args):
        name = _confirmed(args)
        disks.delete(name)
        return {"deleted": name}

    @con.command("dev list", "dev list", "device addresses on the link")
    def _dev_list(args):
        _no_args(args)
        out = []
        for a, spec in sorted(cfg["devices"].items(), key=lambda kv: int(kv[0])):
            present = spec == "library" or spec[5:] in disks.names
            out.append({"addr": int(a), "device": spec, "present": present})
        rows = ["%2d  %-12s%s" % (d["addr"], d["device"], "" if d["present"] else "  (missing)") for d in out]
        return {"devices": out, "text": "\n".join(rows) or "no devices"}

    @con.command("dev set", "dev set ADDR library | dev set ADDR disk NAME", "put a device at a link address")
    def _dev_set(args):
        if len(args) < 2:
            raise UsageError("give an address and a device")
        a = _addr(args[0])
        if args[1:] == ["library"]:
            spec = "library"
        elif len(args) == 3 and args[1] == "disk":
            err = store.name_error(args[2])
            if err:
                raise UsageError(err)
            spec = "disk " + args[2]
        else:
            raise UsageError("the device is `library` or `disk NAME`")
        for other, s in cfg["devices"].items():
            if s == spec and other != a:
                raise CmdError("%s is already at address %s" % (spec, other))
        devs = dict(cfg["devices"])
        devs[a] = spec
        cfg.set("devices", devs)
        return {"addr": int(a), "device": spec}

    @con.command("dev remove", "dev remove ADDR", "no device at this address any more")
    def _dev_remove(args):
        if len(args) != 1:
            raise UsageError("give one address")
        a = _addr(args[0])
        if a not in cfg["devices"]:
            raise CmdError("no device at address %s" % a)
        devs = dict(cfg["devices"])
        del devs[a]
        cfg.set("devices", devs)
        return {"removed": int(a)}

    @con.command("mount policy", "mount policy auto|operator",
                 "auto: the library loads requested cartridges; operator: mount ok / mount cancel")
    def _policy(args):
        if len(args) != 1 or args[0] not in ("auto", "operator"):
            raise UsageError("the policy is auto or operator")
        cfg.set("policy", args[0])
        return {"policy": args[0]}

    @con.command("mount delay", "mount delay MS", "how long the robot takes to load a cartridge")
    def _delay(args):
        if len(args) != 1:
            raise UsageError("give the delay in milliseconds")
        ms = arg_int(args[0], "delay")
        if not 0 <= ms <= _DELAY_MAX:
            raise UsageError("delay must be 0-%d ms" % _DELAY_MAX)
        cfg.set("mount_delay_ms", ms)
        return {"mount_delay_ms": ms}

    @con.command("mount ok", "mount ok", "operator: the requested cartridge is in the drive")
    def _mount_ok(args):
        _no_args(args)
        return {"mounted": lib.mount_ok()}

    @con.command("mount cancel", "mount cancel", "refuse the mount under way; the drive stays empty")
    def _mount_cancel(args):
        _no_args(args)
        return {"cancelled": lib.mount_cancel()}
