# The service processor's role (SP 22, Fig. 6 steps 200-205 and 211) with timer
# 130 = the DS3231: alarm 1 is programmed for the next start time 124 of table
# 100 and the SP sleeps on the alarm's INT line (a pin interrupt), not a poll.
import json
import asyncio
import atomic
import supervisor
import system
import table_rules
from isotime import days_in_month
from ds3231 import to_seconds, from_seconds
from controller import table100
from controller.engine import BackupError, Interrupted

STATE = "/sd/sched.json"  # start times the SP armed: what a power-off may miss
_DAY = 86400


def next_start(start, now):
    """First time (seconds since 2000) after `now` matching start time 124."""
    kind, hh, mm, ss, day = table_rules.parse_start(start)
    tod = hh * 3600 + mm * 60 + ss
    if kind == "hourly":
        t = now - now % 3600 + mm * 60 + ss
        return t if t > now else t + 3600
    midnight = now - now % _DAY
    if kind == "daily":
        t = midnight + tod
        return t if t > now else t + _DAY
    if kind == "weekly":
        wd = from_seconds(now)[6]
        t = midnight + ((day - wd) % 7) * _DAY + tod
        return t if t > now else t + 7 * _DAY
    y, m = from_seconds(now)[:2]
    for _ in range(13):  # monthly: skip months that lack the date
        if day <= days_in_month(y, m):
            t = to_seconds((y, m, day, hh, mm, ss, 0))
            if t > now:
                return t
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    raise ValueError("no date %d in a year" % day)


class Scheduler:
    def __init__(self, con, rtc, int_pin, engine, catalog):
        self.con = con
        self.rtc = rtc
        self.pin = int_pin
        self.engine = engine
        self.catalog = catalog
        self._alarm = asyncio.ThreadSafeFlag()
        self._queue = []                  # entry numbers instructed, in order (202)
        self._work = asyncio.Event()
        self.due = {}                     # entry number -> next start (seconds since 2000)
        self.results = {}                 # entry number -> last result (205)

    def kick(self):
        # The clock was set: re-plan now. The plan is saved before `rtc set`
        # answers: a power cut right after it must not leave the plan made for
        # the old time, whose starts would all count as missed at the next boot.
        try:
            self._plan()
        except OSError:
            pass  # no SD card for the plan: the clock is set all the same
        self._alarm.set()

    def _plan(self):
        now = self.now()
        self.due = {i: next_start(e["start"], now) for i, e in enumerate(self.entries())}
        self._save()

    def now(self):
        return to_seconds(self.rtc.datetime())

    def entries(self):
        t = table100.current()
        return t.get("backup", []) if t else []

    def run_now(self, n):
        entries = self.entries()
        if not 0 <= n < len(entries):
            raise ValueError("no backup entry %d: table 100 has %d" % (n, len(entries)))
        self._queue.append(n)
        self._work.set()

    # --- 201: wait for timer 130 ------------------------------------------------
    async def timer(self):
        await supervisor.wait(system.sd_ready, "scheduler")  # the plan and the catalog are on the card
        self.pin.irq(lambda p: self._alarm.set())
        self._catch_up()
        while True:
            self._plan()
            if self.due:
                first = min(self.due, key=lambda i: self.due[i])
                kind, hh, mm, ss, day = table_rules.parse_start(self.entries()[first]["start"])
                self.rtc.set_alarm1(kind, hour=hh, minute=mm, second=ss, day=day)
                self.rtc.enable_alarm1_int(True)
            await self._alarm.wait()
            if not self.rtc.alarm1_fired():
                continue  # woken by `rtc set`: plan again against the new time
            self.rtc.clear_alarm1()
            now = self.now()
            for i in sorted(self.due, key=lambda i: self.due[i]):
                if self.due[i] <= now:                                   # 201 yes
                    self.con.event("alarm", entry=i, start=self.entries()[i]["start"])
                    self._queue.append(i)                                # 202
                    self._work.set()

    def _catch_up(self):
        # A start time that passed while the board was off runs now (if the
        # table says catch_up), and is logged either way.
        t = table100.current() or {}
        atomic.recover(STATE)
        try:
            with open(STATE) as f:
                armed = json.load(f)
        except (OSError, ValueError):
            return
        now = self.now()
        entries = self.entries()
        for k, when in armed.get("due", {}).items():
            i = int(k)
            if i >= len(entries) or when > now:
                continue
            last = self.catalog.last_start(i, entries[i]["volume"])
            if last is not None and last >= when:
                continue
            self.con.event("missed_start", entry=i, start=entries[i]["start"], catch_up=bool(t.get("catch_up")))
            if t.get("catch_up"):
                self._queue.append(i)
                self._work.set()

    def _save(self):
        atomic.write(STATE, json.dumps({"due": self.due}))

    # --- 202-205, 211: instruct the channel interface and follow up ---------------
    async def runner(self):
        await supervisor.wait(system.sd_ready, "runner")
        for rec in self.catalog.unfinished():  # interrupted by a reset: resume
            await self._backup(rec["entry"], rec)
        while True:
            while not self._queue:
                self._work.clear()
                await self._work.wait()
            await self._backup(self._queue.pop(0))

    async def _backup(self, i, resume=None, tries=5):
        entries = self.entries()
        if i >= len(entries):
            return
        for _ in range(tries):
            try:
                await self.engine.backup(i, entries[i], resume)
                self.results[i] = "ok"                                    # 203/205 normal end
                return
            except Interrupted as e:
                # link down: wait for it and resume from the checkpoint
                self.results[i] = "interrupted: %s" % e.reason
                resume = e.rec
                await self.engine.wait_link(60000)
            except BackupError as e:
                self.results[i] = "failed: %s %s" % (e.step, e.reason)
                self.con.event("sp_error", entry=i, step=e.step, reason=e.reason)   # 211
                return
        self.con.event("sp_error", entry=i, step=312, reason="gave up after %d tries" % tries)
