"""Shared set-up for the backup engine tests (hil_tests/test_backup.py): both
board consoles, volumes filled with random data, cartridges and disks on the
backup device board, one configuration table 100 with an entry per scenario,
and helpers to run backups, follow their events and restore them.

Everything is built through the firmware consoles and put back afterwards
(table 100, volumes, cartridges, disks, device addresses, mount settings, and
on virtual boards the DS3231's time), because the board pair is shared with
the rest of the suite. Names are unique per run: a 3-letter tag in each."""
import ast
import base64
import datetime
import hashlib
import io
import os
import random
import re
import string
import subprocess
import time

from host_tools import cmd_config, firmware_lib
from host_tools.cmd_config import table_rules
from host_tools.cmd_vol import put
from host_tools.console import BoardConsole, ConsoleError

HERE = os.path.dirname(os.path.abspath(__file__))
ENDS = ("backup_ended_normally", "backup_ended_abnormally")
WRITE_OPS = (0x0A, 0x10, 0x2A)  # devcmd WRITE, WRITE FILEMARKS, WRITE BLOCKS


ansilabel = firmware_lib("ansilabel")  # the firmware's own label module


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def parse_iso(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S")


_PROSE = re.compile(rb"^\* (\w+)(.*)$")
_KEY = re.compile(r"\s*(\w+)=")
_NEXT_KEY = re.compile(r" \w+=")


def _value(s):
    if s.startswith("{"):
        try:
            return ast.literal_eval(s)  # a dict, e.g. table 140 in backup_step
        except (ValueError, SyntaxError):
            return s
    if s in ("True", "False"):
        return s == "True"
    if s == "None":
        return None
    try:
        return int(s)
    except ValueError:
        return s


def prose_fields(text):
    """ "k=v k2={...} k3=text with spaces" (lib/console.py prints an event in
    text mode as its fields sorted, "%s=%s" each) -> dict. A value runs to the
    next " key=", a {...} value to its closing brace."""
    out = {}
    i = 0
    while True:
        m = _KEY.match(text, i)
        if not m:
            return out
        j = m.end()
        if text.startswith("{", j):  # up to the matching brace
            depth = 0
            for k in range(j, len(text)):
                depth += {"{": 1, "}": -1}.get(text[k], 0)
                if depth == 0:
                    break
            end = k + 1
        else:
            nxt = _NEXT_KEY.search(text, j)
            end = nxt.start() if nxt else len(text)
        out[m.group(1)] = _value(text[j:end])
        i = end


class Console(BoardConsole):
    """BoardConsole that also records the events a board prints as prose
    (`* name k=v ...`) before a host has switched it to JSON: what the
    controller reports at boot (missed_start, a resumed backup_started)."""

    def _take(self, line):
        r = super()._take(line)
        m = _PROSE.match(line.lstrip(b"> "))
        if r is None and m and m.group(1) != b"boot":
            ev = prose_fields(m.group(2).decode(errors="replace"))
            ev["event"] = m.group(1).decode()
            self.events.append((time.monotonic(), ev))
        return r

    def after_boot(self, since, timeout=30):
        """After a power-on or reset: wait for the boot line, then switch to
        JSON without throwing away what the board printed meanwhile (sync()
        would)."""
        self.wait_event("boot", since=since, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call("mode json", timeout=2)
                return
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise

    def after(self, event, name, match=None, timeout=10):
        """The first event `name` that came after `event` (one of self.events)."""
        deadline = time.monotonic() + timeout
        while True:
            i = next(k for k, (_, ev) in enumerate(self.events) if ev is event)
            for _, ev in self.events[i + 1:]:
                if ev["event"] == name and (match is None or match(ev)):
                    return ev
            if time.monotonic() > deadline:
                raise TimeoutError("no %s after %r" % (name, event))
            self.pump(0.05)

    def since(self, t, *names):
        return [ev for tt, ev in self.events if tt >= t and (not names or ev["event"] in names)]


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
        self.dev.call("mount cancel", check=False)
        if self.dev.call("status")["drive"]:
            self.dev.call("tape unload")

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
        """The end event of the next run of `volume` started after `since`,
        and every event of that run (backup_started .. end)."""
        deadline = time.monotonic() + timeout
        run = None
        while time.monotonic() < deadline:
            for ev in self.ctl.since(since):
                if run is None and ev["event"] == "backup_started" and ev.get("volume") == volume:
                    run = ev["run"]
                if run is not None and ev["event"] in ENDS and ev.get("run") == run:
                    return ev, self.run_events(since, run)
            if during:
                during()
            self.ctl.pump(0.05)
        raise TimeoutError("no end of a backup of %s within %d s; events: %r" % (
            volume, timeout, self.ctl.since(since)[-8:]))

    def run_events(self, since, run):
        out = []
        inside = False
        for ev in self.ctl.since(since):
            if ev["event"] == "backup_started":
                inside = ev["run"] == run
            if inside or ev.get("run") == run:
                out.append(ev)
        return out

    def run_now(self, key, timeout=120, during=None):
        since = time.monotonic()
        self.ctl.call("backup run %d" % self.entry(key))
        return self.wait_end(since, self.volume(key), timeout, during)

    def rtc(self):
        return parse_iso(self.ctl.call("rtc get")["time"])

    def trust_clock(self):
        """A DS3231 never set since its power-on (a new virtual board) has OSF
        set, and no backup starts on it: set it to the host's time then."""
        if self.ctl.call("rtc get")["lost_power"]:
            self.ctl.call("rtc set " + iso(datetime.datetime.now(datetime.timezone.utc)))

    def next_start(self, key, after=None):
        """The next time (by the DS3231) that the daily start of entry `key` comes."""
        now = after or self.rtc()
        hh, mm, ss = (int(x) for x in self.entries[self.entry(key)]["start"].split(":"))
        t = now.replace(hour=hh, minute=mm, second=ss)
        return t if t > now else t + datetime.timedelta(days=1)

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
        scratch = "R%s%s" % (self.tag, "".join(random.choice(string.digits) for _ in range(2)))
        self.ctl.call("vol create %s --size %d" % (scratch, size), timeout=60)
        try:
            r = self.ctl.call("restore %d --to %s" % (rid, scratch), timeout=180)
            sha = self.ctl.call("vol sha %s" % scratch, timeout=60)["sha256"]
        finally:
            self.ctl.call("vol delete %s --yes" % scratch, check=False)
        return r, sha

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
