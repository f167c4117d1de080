"""Shared set-up for the backup engine tests (hil_tests/test_backup.py): both
board consoles, volumes filled with random data, cartridges and disks on the
backup device board, one configuration table 100 with an entry per scenario,
and helpers to run backups, follow their events and restore them.

Everything is built through the firmware consoles and put back afterwards
(table 100, volumes, cartridges, disks, device addresses, mount settings, and
on virtual boards the DS3231's time), because the board pair is shared with
the rest of the suite. Names are unique per run: a 3-letter tag in each."""
import base64
import contextlib
import datetime
import hashlib
import io
import os
import random
import string
import subprocess
import time

from host_tools import cmd_config, firmware_lib, runs
from host_tools.cmd_config import table_rules
from host_tools.cmd_vol import put
from host_tools.console import ConsoleError
from host_tools.runs import ENDS, Console, iso, parse_iso, prose_fields  # noqa: F401 (imported from here by tests)

HERE = os.path.dirname(os.path.abspath(__file__))
WRITE_OPS = (0x0A, 0x10, 0x2A)  # devcmd WRITE, WRITE FILEMARKS, WRITE BLOCKS


ansilabel = firmware_lib("ansilabel")  # the firmware's own label module


class Rig:
    """The boards, the scenario entries of table 100 and what to undo."""

    def __init__(self, ctl, dev, sim):
        self.ctl = ctl
        self.dev = dev
        self.sim = sim
        self.tag = "".join(random.choice(string.ascii_uppercase) for _ in range(3))
        self.entries = []        # table 100 backup entries, in order
        self.key = {}            # scenario key -> entry number
        self.data = {}           # volume -> bytes put into it
        self.tapes = []
        self.disks = []
        self.volumes = []
        self.undo_dev = []       # console lines that put the device addresses back
        self.tmp = None

    # --- names ---------------------------------------------------------------
    def name(self, letter, n=1):
        # letter + tag + 2 digits: the digits count up at step 703 (SSC001 -> SSC002)
        return "%s%s%02d" % (letter, self.tag, n)

    def entry(self, key):
        return self.key[key]

    def volume(self, key):
        return self.entries[self.key[key]]["volume"]

    def device_volume(self, key):
        return self.entries[self.key[key]]["device_volume"]

    # --- building ------------------------------------------------------------
    def add_volume(self, letter, size):
        name = "V%s%s0" % (letter, self.tag)
        self.ctl.call("vol create %s --size %d" % (name, size), timeout=60)
        self.volumes.append(name)
        data = os.urandom(size)
        path = os.path.join(self.tmp, name + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        put(self.ctl, name, path, timeout=30)
        self.data[name] = data
        return name

    def add_entry(self, key, letter, size, address, device_volume, start):
        vol = self.add_volume(letter, size)
        self.key[key] = len(self.entries)
        self.entries.append({"volume": vol, "channel": "uart0", "address": address,
                             "device_volume": device_volume, "start": start})

    def new_tape(self, name, capacity="128K", early_warning="16K"):
        self.dev.call("tape new %s --capacity %s --early-warning %s" % (name, capacity, early_warning))
        if name not in self.tapes:
            self.tapes.append(name)

    def new_disk(self, name, size):
        self.dev.call("disk new %s --size %s" % (name, size))
        self.disks.append(name)

    def set_dev(self, addr, spec):
        self.dev.call("dev set %d %s" % (addr, spec))

    def table(self):
        names = [e["volume"] for e in self.entries]
        return table_rules.check({"channel_flag": 1, "catch_up": True, "volumes": {"names": names},
                                  "backup": self.entries})

    def load_table(self, table):
        cmd_config.load(self.ctl, table, out=io.StringIO())
        self.ctl.sync()

    # --- the backup device ---------------------------------------------------
    def tapes_state(self):
        # name -> (bytes used, blocks): what a write would change
        return {t["name"]: (t["used"], t["blocks"]) for t in self.dev.call("tape list")["tapes"]}

    def disk_written(self, name):
        return {d["name"]: d["written"] for d in self.dev.call("disk list")["disks"]}[name]

    def empty_drive(self):
        runs.empty_drive(self.dev)

    def blank_label(self, addr, name):
        """Overwrite cartridge `name`'s VOL1 label (its first block) through the
        link, so that READ LABEL fails; the cartridge stays in the drive, ready."""
        self.dev.call("tape load %s" % name)
        self.ctl.call("link rewind %d" % addr)
        self.ctl.call("link write %d %s" % (addr, base64.b64encode(b"NOT A LABEL " * 8).decode()))
        self.ctl.call("link rewind %d" % addr)

    def renew_tape(self, name, **kw):
        """A fresh cartridge under the same name (after a test spoiled it)."""
        self.empty_drive()
        self.dev.call("tape delete %s --yes" % name, check=False)
        self.new_tape(name, **kw)

    # --- running backups -----------------------------------------------------
    def table140(self, addr):
        for t in self.ctl.call("backup table")["tables"]:
            if t["address"] == addr:
                return t
        return None

    def wait_end(self, since, volume, timeout=120, during=None):
        return runs.wait_end(self.ctl, since, volume, timeout, during)

    def run_events(self, since, run):
        return runs.run_events(self.ctl, since, run)

    def run_now(self, key, timeout=120, during=None):
        since = time.monotonic()
        self.ctl.call("backup run %d" % self.entry(key))
        return self.wait_end(since, self.volume(key), timeout, during)

    def rtc(self):
        return runs.rtc_now(self.ctl)

    def trust_clock(self):
        runs.trust_clock(self.ctl)

    def next_start(self, key, after=None):
        """The next time (by the DS3231) that the daily start of entry `key` comes."""
        return runs.next_daily(self.entries[self.entry(key)]["start"], after or self.rtc())

    def fire(self, key, lead=2, timeout=120, during=None):
        """Let the scheduler start entry `key` at its start time: the DS3231 is
        set `lead` seconds before it. Returns (start time, end event, events)."""
        start = self.next_start(key)
        since = time.monotonic()
        self.ctl.call("rtc set " + iso(start - datetime.timedelta(seconds=lead)))
        end, evs = self.wait_end(since, self.volume(key), timeout, during)
        return start, end, evs

    # --- reading back --------------------------------------------------------
    def restore_to_scratch(self, rid, size):
        """restore ID --to a fresh zero-filled volume; returns (reply, SHA-256
        of the restored bytes as the controller reads them)."""
        return runs.restore_to_scratch(self.ctl, rid, size, self.tag)

    def read_label_block(self, addr):
        """One block read through the link: (label id, fields), or the stop
        reason ("filemark", "eod") when there is no block."""
        r = self.ctl.call("link read %d" % addr)
        if not r["blocks"]:
            return r["stop"], None
        return ansilabel.parse(base64.b64decode(r["data"]))

    def cartridge_labels(self, addr, name):
        """Mount `name` through the link and read its label groups: VOL1 (by
        READ LABEL), the header labels, the data file skipped, the trailer
        labels. Returns (volser, header [(id, fields)], trailer [(id, fields)],
        what follows the trailer)."""
        self.ctl.call("link mount %d %s --wait 30" % (addr, name), timeout=40)
        volser = self.ctl.call("link label %d" % addr)["volume"]  # rewinds, reads VOL1
        header = []
        while True:
            lid, f = self.read_label_block(addr)
            if f is None:
                assert lid == "filemark", "header labels of %s end with %r" % (name, lid)
                break
            header.append((lid, f))
        self.ctl.call("link space %d 1" % addr)  # over the data file to its tapemark
        trailer = []
        while True:
            lid, f = self.read_label_block(addr)
            if f is None:
                break
            trailer.append((lid, f))
        after = [lid]  # tapemark, tapemark, end of data
        while after[-1] == "filemark" and len(after) < 3:
            after.append(self.read_label_block(addr)[0])
        self.ctl.call("link unload %d" % addr)
        return volser, header, trailer, after


class Operator:
    """The person at the tape library in `mount policy operator`: answers each
    new mount_request the backup device board shows, by volume name, with a
    console line ("mount ok", "mount cancel", "tape load NAME") or nothing.
    Called repeatedly while a backup runs (Rig.wait_end's `during`)."""

    def __init__(self, dev, answers):
        self.dev = dev
        self.answers = answers  # volume -> console line, or callable(volume) -> line or None
        self.since = time.monotonic()
        self.seen = []  # volumes asked for, in order

    def __call__(self):
        self.dev.pump(0.02)
        reqs = [ev["volume"] for t, ev in self.dev.events if t >= self.since and ev["event"] == "mount_request"]
        for vol in reqs[len(self.seen):]:
            self.seen.append(vol)
            a = self.answers.get(vol)
            line = a(vol) if callable(a) else a
            if line:
                self.dev.call(line)


@contextlib.contextmanager
def rig_session(request, sim, tmp):
    """A Rig on the session's boards for one test module: mount policy auto, an
    empty drive, a tape library at r.lib and a trusted clock; everything the
    module changed (table 100, volumes, devices, cartridges, disks, mount
    settings, faults, power, the DS3231's time) is put back afterwards."""
    from hil_tests.plugin import open_console
    ctl = open_console(request, sim, "controller", Console, timeout=30)
    dev = open_console(request, sim, "backupdev", Console, timeout=30)
    r = Rig(ctl, dev, sim)
    r.tmp = tmp
    table_before = ctl.call("config show")
    dev_before = {d["addr"]: d["device"] for d in dev.call("dev list")["devices"]}
    st = dev.call("status")
    r.trust_clock()
    rtc0, mono0 = r.rtc(), time.monotonic()
    try:
        dev.call("mount policy auto")
        dev.call("mount delay 100")
        r.empty_drive()
        lib = [a for a, spec in dev_before.items() if spec == "library"]
        r.lib = lib[0] if lib else free_addresses(dev, 1)[0]
        if not lib:
            r.set_dev(r.lib, "library")
        yield r
    finally:
        if sim is not None:  # a test that failed half way may have left a fault or a board off
            sim.rtc("clear")
            sim.power("controller", "on")
            sim.power("backupdev", "on")
        ctl.sync()
        dev.sync()
        dev.call("mount cancel", check=False)
        r.empty_drive()
        dev.call("mount policy %s" % st["policy"])
        dev.call("mount delay %d" % st["mount_delay_ms"])
        if ctl.call("config show")["sha256"] != table_before["sha256"]:
            r.load_table(table_rules.check(table_before["table"]))
        for v in r.volumes:
            ctl.call("vol delete %s --yes" % v, check=False)
        now = {d["addr"]: d["device"] for d in dev.call("dev list")["devices"]}
        for a in sorted(set(now) | set(dev_before)):
            if a not in dev_before or now.get(a) != dev_before[a]:
                dev.call("dev remove %d" % a, check=False)
        for a, spec in sorted(dev_before.items()):
            if now.get(a) != spec:
                dev.call("dev set %d %s" % (a, spec))
        for t in r.tapes:
            dev.call("tape delete %s --yes" % t, check=False)
        for d in r.disks:
            dev.call("disk delete %s --yes" % d, check=False)
        if sim is not None:  # the DS3231 as if no test had set it
            ctl.call("rtc set " + iso(rtc0 + datetime.timedelta(seconds=round(time.monotonic() - mono0))))
        ctl.close()
        dev.close()


def free_addresses(dev, n, avoid=()):
    used = {d["addr"] for d in dev.call("dev list")["devices"]} | set(avoid)
    free = [a for a in range(2, 16) if a not in used]
    if len(free) < n:
        raise RuntimeError("the backup device board has too few free link addresses: %r" % free)
    return free[:n]


class OddDevice:
    """hil_tests/odddev.py on the backup device's end of the wire while that
    board is powered off: a device type the emulator cannot present (a
    "processor") and a disk whose label cannot be read."""

    def __init__(self, sim, proc_addr, disk_addr, log):
        from host_tools.sim.board import micropython_exe
        self.sim = sim
        self.log = log
        sim.power("backupdev", "off")
        self.proc = subprocess.Popen(
            [micropython_exe(), os.path.join(HERE, "odddev.py"), os.path.join(sim.dir, "wire-backupdev"), log,
             str(proc_addr), str(disk_addr)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = self.proc.stdout.readline()
        if line.strip() != b"ready":
            self.close()
            raise RuntimeError("odddev.py did not start: %r" % line)

    def requests(self):
        with open(self.log) as f:
            return [(int(a), int(op, 16)) for a, op in (ln.split() for ln in f if ln.strip())]

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc.stdout.close()
        self.sim.power("backupdev", "on")


def wait_link(ctl, addr, timeout=20):
    """INQUIRY `addr` until the link carries it (a new peer first resets the
    link session); returns the reply, or the device's error text."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ctl.call("link inquiry %d" % addr)
        except ConsoleError as e:
            if not str(e).startswith("link:"):
                return str(e)  # the device answered (CHECK CONDITION)
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def sha(data):
    return hashlib.sha256(data).hexdigest()
