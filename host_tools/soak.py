"""The soak: scheduled backups and restores on a virtual board pair under
faults drawn from a seed, every restore checked by SHA-256 against its source.

The runs sweep every fault in every phase it can hit (the backup or the
restore), in an order drawn from the seed: the first sweep on tape (a backup
that spans two cartridges), the next on the disk. Run i of seed S draws the
rest from random.Random("S/i"): the event of its phase after which the fault
comes (the k-th event of the run: a backup_step, backup_progress,
mount_request...), the fault's strength and the data; so a run is replayed by
its seed and number alone (`backupctl soak --seed S --only I`). Each run writes new random data into its
source volume, lets the scheduler start it (the DS3231 is set a few seconds
before the entry's start, as a person would wait for it), follows it to its
end, clears every fault, and checks:

- the source volume is untouched (SHA-256 of what the host wrote);
- a run reported ended normally holds that data (catalog SHA-256) and its
  restore into a scratch volume reads back that data;
- a restore that fails says why, and a clean restore after it still matches;
- a run that ends abnormally reports its step and reason.

Anything reported as success that is not is a silent loss; a run with no
start or no end is a broken rule too. Both name the run's seed.
"""
import collections
import datetime
import hashlib
import io
import os
import random
import shutil
import tempfile
import time

from host_tools import cmd_config, runs
from host_tools.cmd_config import table_rules
from host_tools.cmd_vol import put
from host_tools.console import ConsoleError
from host_tools.sim import client
from host_tools.sim.client import SimError

KIB = 1024
TAPE_CAPACITY = 128 * KIB    # early warning 16 KiB before the end: a run of 160 KiB spans two
EARLY_WARNING = 16 * KIB
SIZE = 160 * KIB
START = {"tape": "03:00:30", "disk": "05:00:30"}  # daily; only the one the DS3231 is set before fires
LEAD_S = 3                   # the DS3231 is set this long before a start
START_TIMEOUT_S = 30         # a start that fires shows backup_started by then
END_TIMEOUT_S = 240          # the scheduler retries an interrupted run 5 times, waiting for the link
QUIET_S = 8                  # a fault that stops a run's events is cleared after this long

# fault kind -> phases it may hit
KINDS = {
    "none": ("backup",),
    "wire_ber": ("backup", "restore"),
    "wire_drop": ("backup", "restore"),
    "wire_stall": ("backup", "restore"),
    "wire_cut": ("backup", "restore"),
    "power_controller": ("backup", "restore"),
    "power_backupdev": ("backup", "restore"),
    "sd_errors": ("backup", "restore"),
    "sd_eject": ("backup", "restore"),
    "rtc_nack": ("backup",),
}
NEEDS = {"sd_errors": "sd", "sd_eject": "sd", "rtc_nack": "rtc"}  # daemon commands built separately


def sha(data):
    return hashlib.sha256(data).hexdigest()


# every fault in every phase it can hit, in an order drawn from the seed
COMBOS = [(k, ph) for k in sorted(KINDS) for ph in KINDS[k]]


def plan(seed, i):
    """The plan of run i of `seed`. The runs sweep COMBOS in an order drawn
    from the seed, first on tape (a backup spanning two cartridges), then on
    the disk, and so on; all else about run i is drawn from "seed/i"."""
    order = list(COMBOS)
    random.Random(str(seed)).shuffle(order)
    sweep, j = divmod(i, len(order))
    kind, phase = order[j]
    target = ("tape", "disk")[sweep % 2]
    rng = random.Random("%s/%d" % (seed, i))
    p = {"run": i, "seed": seed, "target": target, "kind": kind, "phase": phase,
         # the k-th event of the phase: a tape backup shows about 15 (steps,
         # progress, the change of cartridge), a disk backup 5, a restore 3-8
         "at": rng.randint(1, 12 if target == "tape" else 4), "span": rng.randint(2, 8),
         "data": rng.getrandbits(32)}
    if kind == "wire_ber":
        p["ber"] = rng.choice((1e-5, 1e-4, 5e-4))
    elif kind == "wire_drop":
        p["drop"] = rng.choice((1e-3, 1e-2))
    elif kind == "wire_stall":
        p["stall_ms"], p["stall_every_s"] = rng.choice((100, 300, 800)), rng.choice((0.5, 1.0, 2.0))
    elif kind == "wire_cut":
        p["seconds"] = round(rng.uniform(0.5, 6), 1)
    elif kind in ("sd_errors", "sd_eject"):
        p["board"] = rng.choice(("controller", "backupdev"))
        p["rate"] = rng.choice((0.01, 0.05, 0.2))
    elif kind == "rtc_nack":
        p["n"] = rng.randint(1, 8)
        p["at"] = 0  # when the scheduler reads the clock for the start
    if phase == "restore":
        p["at"] = rng.randint(1, 6 if target == "tape" else 3)
    return p


def find(seed, kind, phase, target, limit=1000):
    """The first run of `seed` whose plan has this fault, phase and target."""
    return next(i for i in range(limit) if (lambda p: (p["kind"], p["phase"], p["target"]))(plan(seed, i))
                == (kind, phase, target))


def _describe(ev):
    """ " (backup_step 704 SSC002)": which event a fault came after."""
    if ev is None:
        return ""
    return " (%s)" % " ".join(str(ev[f]) for f in ("event", "step", "volume", "tape", "bytes") if f in ev)


class _PowerCut(Exception):
    """The controller lost power while a console command waited for its reply."""


class Fault:
    """One planned fault: injected after the `at`-th event of its phase,
    cleared `span` events later, when the run goes quiet, or at its end."""

    def __init__(self, soak, p):
        self.soak = soak
        self.p = p
        self.injected = False
        self.cleared = False
        self.skipped = None  # why a fault could not be injected
        self.seen_at = None  # events seen when injected
        self.seen = 0        # events seen so far
        self.last_event = time.monotonic()

    def step(self, events, during_call=False):
        """Called while the phase runs with its events so far."""
        n_events = len(events)
        now = time.monotonic()
        if n_events != self.seen:
            self.seen = n_events
            self.last_event = now
        if not self.injected and n_events >= self.p["at"] and self.skipped is None:
            self.seen_at = n_events
            self.last_event = now
            self.inject(events[-1] if events else None, during_call)
        elif self.injected and not self.cleared and (
                n_events >= self.seen_at + self.p["span"] or now - self.last_event > QUIET_S):
            self.clear()

    def inject(self, last, during_call):
        s, p, k = self.soak, self.p, self.p["kind"]
        if k == "none":
            return
        need = NEEDS.get(k)
        if need and need not in s.supported:
            self.skipped = "the simulator has no `%s` command" % need
            return
        self.injected = True
        s.note("  inject %s after event %d of the %s%s" % (k, self.seen_at, p["phase"], _describe(last)))
        if k == "wire_ber":
            s.sim("faults", ber=p["ber"])
        elif k == "wire_drop":
            s.sim("faults", drop=p["drop"])
        elif k == "wire_stall":
            s.sim("faults", stall_ms=p["stall_ms"], stall_every_s=p["stall_every_s"])
        elif k == "wire_cut":
            s.sim("cut", seconds=p["seconds"])
        elif k == "power_backupdev":
            s.sim("power", board="backupdev", action="cycle")
        elif k == "power_controller":
            s.sim("power", board="controller", action="off")
            boot = time.monotonic()
            s.sim("power", board="controller", action="on")
            s.ctl.after_boot(boot)
            if during_call:
                raise _PowerCut()
        elif k == "sd_errors":
            s.sim("sd", board=p["board"], action="errors", read_rate=p["rate"], write_rate=p["rate"])
        elif k == "sd_eject":
            s.sim("sd", board=p["board"], action="eject")
        elif k == "rtc_nack":
            s.sim("rtc", board="controller", action="nack", n=p["n"])

    def clear(self):
        """Undo a lasting fault (a card is inserted again, rates go back to 0)."""
        if self.cleared or not self.injected:
            return
        self.cleared = True
        k, s = self.p["kind"], self.soak
        if k.startswith("wire_"):
            s.sim("clear")
        elif k == "sd_errors":
            s.sim("sd", board=self.p["board"], action="clear")
        elif k == "sd_eject":
            s.sim("sd", board=self.p["board"], action="insert")
        elif k == "rtc_nack":
            s.sim("rtc", board="controller", action="clear")


class Soak:
    def __init__(self, state_dir, ctl, dev, seed, size=SIZE, out=None):
        self.dir = state_dir
        self.ctl = ctl
        self.dev = dev
        self.seed = seed
        self.size = size
        self.out = out
        self.tag = "SOK"  # scratch volumes RSOKnn
        self.results = []
        self.supported = set()
        self.tmp = tempfile.mkdtemp(prefix="soak-")

    # --- plumbing ------------------------------------------------------------
    def note(self, text):
        if self.out:
            print(text, file=self.out, flush=True)

    def sim(self, cmd, **kw):
        return client.call(self.dir, cmd, **kw)

    def probe(self):
        """Which fault commands this simulator has (sd, rtc: built separately)."""
        for cmd, kw in (("sd", {"board": "controller"}), ("rtc", {"board": "controller"})):
            try:
                self.sim(cmd, action="clear", **kw)
                self.supported.add(cmd)
            except SimError as e:
                if "unknown command" not in str(e):
                    raise

    # --- the pair --------------------------------------------------------------
    def setup(self):
        """Cartridges, a disk, the source volumes and table 100 on a fresh pair."""
        self.probe()
        dev, ctl = self.dev, self.ctl
        dev.call("mount policy auto")
        dev.call("mount delay 100")
        runs.empty_drive(dev)
        self.tapes = ["SSC%03d" % n for n in (1, 2, 3)]
        for t in self.tapes:
            dev.call("tape delete %s --yes" % t, check=False)
            dev.call("tape new %s --capacity %dK --early-warning %dK" % (t, TAPE_CAPACITY // KIB, EARLY_WARNING // KIB))
        dev.call("disk delete BKD001 --yes", check=False)
        dev.call("disk new BKD001 --size %dK" % (2 * self.size // KIB))
        dev.call("dev set 0 library")
        dev.call("dev set 1 disk BKD001")
        self.src = {"tape": "VSKT01", "disk": "VSKD01"}
        for v in self.src.values():
            ctl.call("vol delete %s --yes" % v, check=False)
            ctl.call("vol create %s --size %d" % (v, self.size), timeout=60)
        self.entry = {"tape": 0, "disk": 1}
        table = table_rules.check({
            "channel_flag": 1, "catch_up": False, "volumes": {"names": [self.src["tape"], self.src["disk"]]},
            "backup": [{"volume": self.src["tape"], "channel": "uart0", "address": 0,
                        "device_volume": self.tapes[0], "start": START["tape"]},
                       {"volume": self.src["disk"], "channel": "uart0", "address": 1,
                        "device_volume": "BKD001", "start": START["disk"]}]})
        cmd_config.load(ctl, table, out=io.StringIO())
        ctl.sync()
        ctl.call("rtc set 2026-12-01T00:00:00")

    def recover(self):
        """After a fault: none left, both boards on and answering."""
        self.sim("clear")
        if "sd" in self.supported:
            for b in ("controller", "backupdev"):
                self.sim("sd", board=b, action="clear")
                try:
                    self.sim("sd", board=b, action="insert")  # whether or not `clear` puts a card back
                except SimError:
                    pass  # the card was in
        if "rtc" in self.supported:
            self.sim("rtc", board="controller", action="clear")
        for b, con in (("controller", self.ctl), ("backupdev", self.dev)):
            self.sim("power", board=b, action="on")
            try:
                con.call("version", timeout=5)
            except (TimeoutError, ConsoleError):
                try:
                    con.sync(timeout=30)  # e.g. left in the REPL: back to the firmware
                except TimeoutError:
                    self.note("  %s does not answer: power-cycled" % b)
                    self.sim("power", board=b, action="cycle")
                    con.sync(timeout=60)
        if "sd" in self.supported:  # a card put back is mounted again by the firmware, not at once
            for con, probe in ((self.ctl, "vol list"), (self.dev, "tape list")):
                deadline = time.monotonic() + 30
                while not con.call(probe, check=False)["ok"] and time.monotonic() < deadline:
                    con.pump(0.5)
        runs.empty_drive(self.dev)

    # --- one run ---------------------------------------------------------------
    def run(self, i):
        p = plan(self.seed, i)
        r = {"plan": p, "fault": None, "outcome": None, "resumed": False, "restore": None,
             "loss": None, "broken": None}
        fault = Fault(self, p)
        target = p["target"]
        vol = self.src[target]
        data = random.Random(p["data"]).randbytes(self.size)
        path = os.path.join(self.tmp, vol + ".bin")
        with open(path, "wb") as f:
            f.write(data)
        put(self.ctl, vol, path, timeout=30, out=io.StringIO())
        try:
            self._backup(p, r, fault, vol)
        finally:
            fault.clear()
            self.recover()
        if self.ctl.call("vol sha %s" % vol, timeout=60)["sha256"] != sha(data):
            r["loss"] = "the source volume changed"
        elif r["outcome"] == "normal":
            self._check_restore(p, r, fault, vol, data)
        r["fault"] = "skipped: " + fault.skipped if fault.skipped else (p["kind"] if fault.injected else None)
        if r["loss"]:
            r["broken"] = "silent loss: " + r["loss"]
        self.results.append(r)
        self.note(self._line(r))
        return r

    def _backup(self, p, r, fault, vol):
        start = runs.next_daily(START[p["target"]], runs.rtc_now(self.ctl))
        since = time.monotonic()
        self.ctl.call("rtc set " + runs.iso(start - datetime.timedelta(seconds=LEAD_S)))
        fired = time.monotonic()
        state = {"run": None}

        def during():
            if state["run"] is None:
                for ev in self.ctl.since(since, "backup_started"):
                    if ev.get("volume") == vol:
                        state["run"] = ev["run"]
                if state["run"] is None and time.monotonic() - fired > LEAD_S + START_TIMEOUT_S:
                    raise TimeoutError("no backup_started")
            if p["phase"] == "backup":
                fault.step(runs.run_events(self.ctl, since, state["run"]) if state["run"] is not None else [])

        if p["phase"] == "backup" and p["at"] == 0:
            fault.step([])  # before the scheduler reads the clock at the start
        try:
            end, evs = runs.wait_end(self.ctl, since, vol, END_TIMEOUT_S, during)
        except TimeoutError as e:
            r["outcome"] = "no start" if state["run"] is None else "no end"
            r["broken"] = "%s (%s)" % (r["outcome"], e)
            return
        r["resumed"] = any(ev["event"] == "backup_started" and ev.get("resume") for ev in evs)
        r["run_id"] = end["run"]
        if end["event"] == "backup_ended_normally":
            r["outcome"] = "normal"
        else:
            r["outcome"] = "abnormal"
            r["step"], r["reason"] = end.get("step"), end.get("reason")
            if not r["step"] or not r["reason"]:
                r["broken"] = "ended abnormally without a step and reason: %r" % end

    def _check_restore(self, p, r, fault, vol, data):
        rec = self.ctl.call("backup show %d" % r["run_id"])
        if rec.get("sha256") != sha(data):
            r["loss"] = "run %d ended normally but its SHA-256 is not the source's" % r["run_id"]
            return
        events = []
        mark = len(self.ctl.events)

        def during():
            events[:] = [ev for _, ev in self.ctl.events[mark:]]
            if p["phase"] == "restore":
                fault.step(events, during_call=True)

        try:
            rep, got = runs.restore_to_scratch(self.ctl, r["run_id"], self.size, self.tag, during)
            r["restore"] = "ok"
            if not rep.get("match") or got != sha(data):
                r["loss"] = "restore of run %d reported ok but read back other data" % r["run_id"]
            return
        except ConsoleError as e:
            r["restore"] = "error: %s" % e
        except _PowerCut:
            r["restore"] = "cut by the power cut"
        except TimeoutError as e:
            r["restore"] = "no reply"
            r["broken"] = "restore gave no reply: %s" % e
        finally:
            if fault.injected:
                fault.clear()
                self.recover()
        try:
            rep, got = runs.restore_to_scratch(self.ctl, r["run_id"], self.size, self.tag)
        except (ConsoleError, TimeoutError) as e:
            r["loss"] = "run %d ended normally but cannot be restored: %s" % (r["run_id"], e)
            return
        if not rep.get("match") or got != sha(data):
            r["loss"] = "restore of run %d reported ok but read back other data" % r["run_id"]
        else:
            r["restore"] += "; then restored identically"

    def _line(self, r):
        p = r["plan"]
        what = r["outcome"] if r["outcome"] != "abnormal" else "abnormal at %s: %s" % (r["step"], r["reason"])
        when = "after %d" % p["at"] if p["kind"] != "none" else ""
        if p["kind"] != "none" and not r["fault"]:
            when += " (not reached)"
        elif r["fault"] and r["fault"].startswith("skipped"):
            when += " (skipped)"
        return "run %2d %-4s %-16s %-7s %-9s -> %s%s%s%s" % (
            p["run"], p["target"], p["kind"], p["phase"], when,
            what, ", resumed" if r["resumed"] else "", "; restore " + r["restore"] if r["restore"] else "",
            "; BROKEN: " + r["broken"] if r["broken"] else "")

    # --- the report ------------------------------------------------------------
    def table(self, elapsed):
        rs = self.results
        kinds = collections.Counter(r["fault"] for r in rs if r["fault"] and not r["fault"].startswith("skipped"))
        skipped = collections.Counter(r["plan"]["kind"] for r in rs if r["fault"] and r["fault"].startswith("skipped"))
        abnormal = collections.Counter("%s %s" % (r["step"], r["reason"]) for r in rs if r["outcome"] == "abnormal")
        restores = collections.Counter(r["restore"].split(":")[0].split(";")[0] for r in rs if r["restore"])
        broken = [r for r in rs if r["broken"]]
        rows = [
            ("runs", "%d (seed %s, %d KiB volumes, %.0f s)" % (len(rs), self.seed, self.size // KIB, elapsed)),
            ("faults injected", ", ".join("%s %d" % kv for kv in sorted(kinds.items())) or "none"),
        ]
        missed = collections.Counter(r["plan"]["kind"] for r in rs if r["plan"]["kind"] != "none" and not r["fault"])
        if missed:
            rows.append(("faults not reached", ", ".join("%s %d" % kv for kv in sorted(missed.items()))
                         + " (the phase ended before that event, or had no restore)"))
        if skipped:
            rows.append(("faults skipped", ", ".join("%s %d" % kv for kv in sorted(skipped.items()))
                         + " (this simulator has no `%s` command)" % "`/`".join(
                             sorted({NEEDS[k] for k in skipped}))))
        rows += [
            ("completed", "%d" % sum(r["outcome"] == "normal" for r in rs)),
            ("resumed", "%d" % sum(r["resumed"] for r in rs)),
            ("ended abnormally", "%d" % sum(abnormal.values())),
        ]
        rows += [("  step, reason", "%s (%d)" % kv) for kv in sorted(abnormal.items())]
        rows += [
            ("no start / no end", "%d / %d" % (sum(r["outcome"] == "no start" for r in rs),
                                               sum(r["outcome"] == "no end" for r in rs))),
            ("restores", ", ".join("%s %d" % kv for kv in sorted(restores.items())) or "none"),
            ("silent losses", "%d" % sum(bool(r["loss"]) for r in rs)),
            ("runs that broke the rule", ", ".join("%d" % r["plan"]["run"] for r in broken) or "none"),
        ]
        rows += [("  run %d" % r["plan"]["run"], "%s; replay: backupctl soak --seed %s --only %d"
                  % (r["broken"], self.seed, r["plan"]["run"])) for r in broken]
        w = max(len(k) for k, _ in rows)
        return "\n".join("%-*s  %s" % (w, k, v) for k, v in rows)

    def silent_losses(self):
        return sum(bool(r["loss"]) for r in self.results)


def soak(state_dir, seed, runs_n=20, only=None, size=SIZE, out=None):
    """Run the soak on the pair of `state_dir` (started already); returns the Soak."""
    st = client.call(state_dir, "status")
    ctl = runs.Console(os.path.realpath(st["boards"]["controller"]["console"]), timeout=30)
    dev = runs.Console(os.path.realpath(st["boards"]["backupdev"]["console"]), timeout=30)
    try:
        ctl.sync(timeout=60)
        dev.sync(timeout=60)
        s = Soak(state_dir, ctl, dev, seed, size, out)
        s.setup()
        for i in (only or range(runs_n)):
            try:
                s.run(i)
            except Exception as e:  # the soak's own trouble is a broken run too, and the next one goes on
                s.results.append({"plan": plan(seed, i), "fault": None, "outcome": "soak error", "resumed": False,
                                  "restore": None, "loss": None,
                                  "broken": "soak error %s: %s" % (type(e).__name__, e)})
                s.note("run %2d -> BROKEN: %s" % (i, s.results[-1]["broken"]))
                s.recover()
        shutil.rmtree(s.tmp, ignore_errors=True)
        return s
    finally:
        ctl.close()
        dev.close()
