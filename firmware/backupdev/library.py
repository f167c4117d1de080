# The tape library: cartridges in numbered slots, one drive, and a mount
# policy. `auto`: the robot fetches the requested cartridge itself, which
# takes the configured mount delay. `operator`: the request is shown as a
# `mount_request` event and waits for `mount ok`, as an operator answers
# Bareos' "please mount" message. Meanwhile TEST UNIT READY answers NOT READY,
# becoming ready (02/04/01). The drive is empty after a reboot.
import os
import asyncio
from micropython import const
from console import CmdError
from devcmd import SenseError, NOT_READY, ILLEGAL_REQUEST
from backupdev import store, tape

SLOTS = const(64)


class Library:
    def __init__(self, cfg, event):
        self.cfg = cfg
        self.event = event
        self.carts = {}  # name -> meta (capacity, early_warning, slot)
        self.tape = None  # the Tape in the drive
        self.loaded = False  # False after UNLOAD until LOAD
        self.pending = None  # volume being mounted
        self._robot = None
        self.scan()

    def scan(self):
        # the cartridges on the card (again after the card came back: empty drive)
        self.carts = {}
        self.tape = None
        self.loaded = False
        try:
            store.ensure_dir(store.TAPES)
            names = os.listdir(store.TAPES)
        except OSError:
            return  # no SD card: an empty library (`tape new` says why)
        for name in names:
            if store.name_error(name):
                continue
            meta = tape.read_meta(name)
            if meta is None:
                store.remove_tree(store.TAPES + "/" + name)  # unfinished new/delete
            else:
                self.carts[name] = meta

    # --- the drive, as the link sees it ------------------------------------
    def drive(self):
        # The tape ready for I/O, else the NOT READY sense that says why.
        if self.pending:
            raise SenseError(NOT_READY, 4, 1)
        if self.tape is None:
            raise SenseError(NOT_READY, 0x3A, 0)
        if not self.loaded:
            raise SenseError(NOT_READY, 4, 2)
        return self.tape

    def mount(self, name):
        if store.name_error(name):
            raise SenseError(ILLEGAL_REQUEST, 0x24, 0)
        if name == self.pending:
            return
        if self.tape and self.tape.name == name and not self.pending:
            if not self.loaded:
                self.tape.rewind()
                self.loaded = True
            return
        auto = self.cfg["policy"] == "auto"
        if auto and name not in self.carts:
            raise SenseError(NOT_READY, 0x3A, 0)
        self._stop_robot()
        self._eject()
        self.pending = name
        if auto:
            self._robot = asyncio.create_task(self._fetch(name))
        else:
            self.event("mount_request", volume=name)

    def load(self, on):
        # LOAD / UNLOAD: the cartridge stays in the drive, at the beginning.
        if self.pending:
            raise SenseError(NOT_READY, 4, 1)
        if self.tape is None:
            raise SenseError(NOT_READY, 0x3A, 0)
        self.tape.rewind()
        self.loaded = on

    async def _fetch(self, name):
        await asyncio.sleep_ms(self.cfg["mount_delay_ms"])
        self._robot = None
        self._insert(name)

    def _insert(self, name):
        self.pending = None
        try:
            self.tape = tape.Tape(name, self.carts[name])
        except (KeyError, OSError) as e:
            self.event("mount_failed", volume=name, error=str(e))
            return
        self.loaded = True
        self.event("mounted", volume=name)

    def _eject(self):
        if self.tape:
            self.tape.close()
            self.tape = None
        self.loaded = False

    def _stop_robot(self):
        if self._robot:
            self._robot.cancel()
            self._robot = None

    # --- the operator, at the console ----------------------------------------
    def new(self, name, capacity, early_warning):
        if name in self.carts:
            raise CmdError("cartridge %s already exists" % name)
        used = set(m["slot"] for m in self.carts.values())
        free = [s for s in range(1, SLOTS + 1) if s not in used]
        if not free:
            raise CmdError("the library is full (%d slots)" % SLOTS)
        room = store.free_bytes()
        if capacity > room:
            raise CmdError("capacity %d is more than the SD card has free (%d bytes)" % (capacity, room))
        tape.create(name, capacity, early_warning, free[0])
        self.carts[name] = tape.read_meta(name)
        return self.carts[name]["slot"]

    def _known(self, name):
        err = store.name_error(name)
        if err:
            raise CmdError(err)
        if name not in self.carts:
            raise CmdError("no cartridge %s in the library (see tape list)" % name)

    def delete(self, name):
        self._known(name)
        if self.tape and self.tape.name == name:
            raise CmdError("%s is in the drive: tape unload first" % name)
        if self.pending == name:
            raise CmdError("a mount of %s is under way: mount cancel first" % name)
        tape.delete(name)
        del self.carts[name]

    def load_by_hand(self, name):
        # `tape load`: the operator puts a cartridge into the drive, whatever was asked for.
        self._known(name)
        if self.pending and self.pending != name:
            self.event("mount_cancelled", volume=self.pending)
        self._stop_robot()
        self.pending = None
        if self.tape and self.tape.name == name:
            self.load(True)
            return
        self._eject()
        self._insert(name)

    def unload_by_hand(self):
        if self.tape is None:
            raise CmdError("the drive is empty")
        name = self.tape.name
        self._eject()
        return name

    def mount_ok(self):
        name = self.pending
        if name is None or self._robot:
            raise CmdError("no mount request is waiting for an operator")
        if name not in self.carts:
            raise CmdError("no cartridge %s in the library: tape new %s --capacity SIZE first, or mount cancel"
                           % (name, name))
        self._insert(name)
        return name

    def mount_cancel(self):
        name = self.pending
        if name is None:
            raise CmdError("no mount is under way")
        self._stop_robot()
        self.pending = None
        self.event("mount_cancelled", volume=name)
        return name

    def list(self):
        out = []
        for name in sorted(self.carts):
            if self.tape and self.tape.name == name:
                d = self.tape.info()
                d["location"] = "drive"
            else:
                t = tape.Tape(name, self.carts[name], writable=False)
                d = t.info()
                t.close()
                d["location"] = "slot"
            out.append(d)
        return out

    def status(self):
        return {"drive": self.tape.name if self.tape else None,
                "ready": bool(self.tape and self.loaded and not self.pending),
                "mount_pending": self.pending, "policy": self.cfg["policy"],
                "mount_delay_ms": self.cfg["mount_delay_ms"]}
