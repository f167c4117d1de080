# The service processor's role (SP 22, Fig. 6 steps 200-205 and 211) with timer
# 130 = the DS3231: alarm 1 is programmed for the next start time 124 of table
# 100 and the SP sleeps on the alarm's INT line (a pin interrupt), not a poll.
# A DS3231 that does not answer stops the schedule only until it answers again
# (rtc_error, then retries with back-off); a clock whose oscillator stopped (OSF)
# starts nothing until `rtc set` (rtc_untrusted).
import json
import asyncio
from micropython import const
import atomic
import supervisor
import system
import tablebase
from isotime import days_in_month
from ds3231 import to_seconds, from_seconds
from controller import table100
from controller.engine import BackupError, Interrupted

STATE = "/sd/sched.json"  # start times the SP armed: what a power-off may miss
_DAY = 86400
_RETRY_MS = const(500)  # first retry of a DS3231 that did not answer; doubles ...
_RETRY_MAX_MS = const(8000)  # ... up to this
_CHECK_MS = const(30000)  # an idle scheduler reads the DS3231 this often


def next_start(start, now):
    """First time (seconds since 2000) after `now` matching start time 124."""
    kind, hh, mm, ss, day = tablebase.parse_start(start)
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
        self._queue = []                  # (entry number, due time or None), in order (202)
        self._work = asyncio.Event()
        self._current = None              # entry number the runner is on
        self.due = {}                     # entry number -> next start (seconds since 2000)
        self.results = {}                 # entry number -> last result (205)
        self.problem = None               # why no backup starts on schedule; None: they do

    def kick(self):
        # The clock was set: re-plan now. The plan is saved before `rtc set`
        # answers: a power cut right after it must not leave the plan made for
        # the old time, whose starts would all count as missed at the next boot.
        try:
            self._plan(self.now())
            self._save()
        except OSError:
            self.due = {}  # the timer plans afresh
        self._alarm.set()

    def _plan(self, now):
        self.due = {i: next_start(e["start"], now) for i, e in enumerate(self.entries())}

    def now(self):
        return to_seconds(self.rtc.datetime())

    def entries(self):
        t = table100.current()
        return t.get("backup", []) if t else []

    def state(self):
        """For `status`: whether backups start on schedule, and if not why."""
        return {"scheduler": "running" if self.problem is None else
                "stopped, no backup starts on schedule: " + self.problem}

    def queued(self):
        """Entry numbers waiting for the runner, in order."""
        return [q[0] for q in self._queue]

    def run_now(self, n):
        entries = self.entries()
        if not 0 <= n < len(entries):
            raise ValueError("no backup entry %d: table 100 has %d" % (n, len(entries)))
        if self.rtc.lost_power():  # its times would go into the catalog, which trusts them
            raise ValueError("the DS3231 lost its time (OSF): no backup starts on it; set it with `rtc set`")
        self._queue.append((n, None))
        self._work.set()

    def _report(self, event, problem):
        # once per outage: a DS3231 that stays away is said once, not every retry
        if self.problem != problem:
            if problem is None:
                self.con.event("rtc_ok", was=self.problem)
            else:
                self.con.event(event, reason=problem)
            self.problem = problem

    # --- 201: wait for timer 130 ------------------------------------------------
    async def timer(self):
        await supervisor.wait(system.sd_ready, "scheduler")  # the plan and the catalog are on the card
        self.pin.irq(lambda p: self._alarm.set())
        boot = True
        retry = _RETRY_MS
        while True:
            try:
                if self.rtc.lost_power():
                    # no catch-up and nothing armed on a clock that may be anything
                    self.due = {}
                    boot = False
                    self.rtc.enable_alarm1_int(False)
                    self._report("rtc_untrusted", "the DS3231 lost its time (OSF: its oscillator stopped, "
                                 "a flat or missing cell): set it with `rtc set`")
                    await supervisor.wait(self._alarm, "scheduler")  # `rtc set` kicks
                    continue
                if boot:
                    self._catch_up()
                    boot = False
                self._pass()
                self._report(None, None)
                retry = _RETRY_MS
                await self._sleep()
            except OSError as e:  # the DS3231 did not answer (the driver tried again already)
                self._report("rtc_error", "the DS3231 does not answer: %s" % e)
                try:
                    await asyncio.wait_for_ms(supervisor.wait(self._alarm, "scheduler"), retry)
                except asyncio.TimeoutError:
                    pass
                retry = min(retry * 2, _RETRY_MAX_MS)

    async def _sleep(self):
        # Until alarm 1 (or `rtc set`). A DS3231 that fails while nobody asks it
        # anything pulls no INT line: look at it now and then, so that its loss
        # is reported and the schedule resumes when it is back.
        while True:
            try:
                await asyncio.wait_for_ms(supervisor.wait(self._alarm, "scheduler"), _CHECK_MS)
                return
            except asyncio.TimeoutError:
                if self.rtc.lost_power():
                    return

    def _pass(self):
        # Instruct what has come due (alarm 1 fired, or start times that passed
        # while the DS3231 did not answer), plan the rest and arm alarm 1 for the
        # first. Then read the clock again: a start second that passed while the
        # alarm was being written never fires until its next period, so it is
        # instructed now instead of being skipped.
        if self.rtc.alarm1_fired():
            self.rtc.clear_alarm1()
        entries = self.entries()
        now = self.now()
        while True:
            self._instruct_due(entries, now)
            if not self.due:
                break
            first = min(self.due, key=lambda i: (self.due[i], i))
            kind, hh, mm, ss, day = tablebase.parse_start(entries[first]["start"])
            self.rtc.set_alarm1(kind, hour=hh, minute=mm, second=ss, day=day)
            self.rtc.enable_alarm1_int(True)
            now = self.now()
            if self.due[first] > now:
                break
        self._save()

    def _instruct_due(self, entries, now):
        # 201 yes -> 202 for every entry due by now, in time then table order
        # (several entries on one second all run, the first one first)
        for i in sorted(range(len(entries)), key=lambda i: (self.due.get(i, 0), i)):
            t = self.due.get(i)
            if t is not None and t <= now:
                self._instruct(i, entries[i], t)
                t = None
            if t is None:
                self.due[i] = next_start(entries[i]["start"], now)

    def _instruct(self, i, e, due):
        # 204/205: a start time that comes while the entry's previous run is still
        # going or waiting is not queued a second time
        run = self.engine.busy
        if self._current == i or i in self.queued():
            self.con.event("still_running", entry=i, start=e["start"], due=due,
                           run=run["id"] if run and self._current == i else None)
            return
        self.con.event("alarm", entry=i, start=e["start"])
        self._queue.append((i, due))                                     # 202
        self._work.set()

    def _catch_up(self):
        # A start time that passed while the board was off runs now (if the
        # table says catch_up), and is logged either way.
        t = table100.current() or {}
        now = self.now()
        entries = self.entries()
        try:
            atomic.recover(STATE)
            with open(STATE) as f:
                armed = json.load(f)
            missed = []
            for k, when in armed.get("due", {}).items():
                i = int(k)
                if i >= len(entries) or when > now:
                    continue
                last = self.catalog.last_start(i, entries[i]["volume"])
                if last is None or last < when:
                    missed.append((when, i))
        except (OSError, ValueError):
            return  # no plan on the SD card: nothing known to have been missed
        for when, i in sorted(missed):
            self.con.event("missed_start", entry=i, start=entries[i]["start"], catch_up=bool(t.get("catch_up")))
            if t.get("catch_up"):
                self._queue.append((i, when))
                self._work.set()

    def _save(self):
        try:
            atomic.write(STATE, json.dumps({"due": self.due}))
        except OSError:
            pass  # no SD card: the schedule runs, only a catch-up after a power-off is lost

    # --- 202-205, 211: instruct the channel interface and follow up ---------------
    async def runner(self):
        supervisor.pause("runner")
        await supervisor.wait(system.sd_ready, "runner")
        for rec in self.catalog.unfinished():  # interrupted by a reset: resume
            await self._resume(rec)
        while True:
            while not self._queue:
                self._work.clear()
                await supervisor.wait(self._work, "runner")
            i, due = self._queue.pop(0)
            self._current = i
            supervisor.pause("runner")  # the backup's stager answers for it meanwhile
            try:
                await self._backup(i, due=due)
            finally:
                self._current = None
            supervisor.checkin("runner")

    async def _resume(self, rec):
        # The run continues only for the entry of table 100 it was made for: the
        # table may have changed (config commit reboots) while it was cut off.
        key = (rec["volume"], rec["address"], rec["device_volume"])
        for i, e in enumerate(self.entries()):
            if (e["volume"], e["address"], e["device_volume"]) == key:
                self._current = i
                try:
                    await self._backup(i, rec)
                finally:
                    self._current = None
                return
        reason = "not resumed: table 100 has no entry for volume %s, address %d, device volume %s" % key
        self.engine._end(rec, "failed", "312 " + reason)
        self.con.event("backup_ended_abnormally", run=rec["id"], step=312, reason=reason)

    async def _backup(self, i, resume=None, tries=5, due=None):
        entries = self.entries()
        if i >= len(entries):
            return
        for _ in range(tries):
            try:
                await self.engine.backup(i, entries[i], resume, due=due)
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
