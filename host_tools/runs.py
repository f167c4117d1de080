"""Following the controller's backups on its console from the host: its
events (JSON, or prose before a host switched it to JSON), the run that a
scheduled start makes, its end, and restoring a run into a scratch volume.
Shared by the HIL backup tests (hil_tests/backup_rig.py) and the soak
(host_tools/soak.py)."""
import ast
import datetime
import random
import re
import string
import time

from host_tools.console import BoardConsole

ENDS = ("backup_ended_normally", "backup_ended_abnormally")


def iso(t):
    return t.strftime("%Y-%m-%dT%H:%M:%S")


def trust_clock(ctl):
    """A DS3231 never set since its power-on (a new virtual board) has OSF set,
    and no backup starts on it: set it to the host's time then."""
    if ctl.call("rtc get")["lost_power"]:
        ctl.call("rtc set " + iso(datetime.datetime.now(datetime.timezone.utc)))


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


def next_daily(start, now):
    """The first time after `now` that the daily start "HH:MM:SS" comes."""
    hh, mm, ss = (int(x) for x in start.split(":"))
    t = now.replace(hour=hh, minute=mm, second=ss)
    return t if t > now else t + datetime.timedelta(days=1)


def rtc_now(ctl):
    return parse_iso(ctl.call("rtc get")["time"])


def run_events(ctl, since, run):
    """Every event of run `run` seen after `since` (backup_started .. end)."""
    out = []
    inside = False
    for ev in ctl.since(since):
        if ev["event"] == "backup_started":
            inside = ev["run"] == run
        if inside or ev.get("run") == run:
            out.append(ev)
    return out


def wait_end(ctl, since, volume, timeout=120, during=None):
    """The end event of the next run of `volume` started after `since`, and
    every event of that run (backup_started .. end). during() is called
    between reads."""
    deadline = time.monotonic() + timeout
    run = None
    while time.monotonic() < deadline:
        for ev in ctl.since(since):
            if run is None and ev["event"] == "backup_started" and ev.get("volume") == volume:
                run = ev["run"]
            if run is not None and ev["event"] in ENDS and ev.get("run") == run:
                return ev, run_events(ctl, since, run)
        if during:
            during()
        ctl.pump(0.05)
    raise TimeoutError("no end of a backup of %s within %d s; events: %r" % (
        volume, timeout, ctl.since(since)[-8:]))


def empty_drive(dev):
    """No mount pending and no cartridge in the backup device's drive."""
    dev.call("mount cancel", check=False)
    if dev.call("status")["drive"]:
        dev.call("tape unload")


def restore_to_scratch(ctl, rid, size, tag, during=None):
    """restore ID --to a fresh zero-filled volume; returns (reply, SHA-256
    of the restored bytes as the controller reads them)."""
    scratch = "R%s%s" % (tag, "".join(random.choice(string.digits) for _ in range(2)))
    ctl.call("vol create %s --size %d" % (scratch, size), timeout=60)
    try:
        r = ctl.call("restore %d --to %s" % (rid, scratch), timeout=180, during=during)
        sha = ctl.call("vol sha %s" % scratch, timeout=60)["sha256"]
    finally:
        ctl.call("vol delete %s --yes" % scratch, check=False)
    return r, sha
