"""Issue 9 items 3-4: the service processor's scheduler (timer 130 = the DS3231)
through the faults of the clock and the edges of its timing.

A DS3231 that does not answer (`sim rtc nack N`) or that lost its time (OSF,
`sim rtc battery off` and a power cut) must never stop the schedule for good
nor start a backup on a clock that may be anything; starts that come while an
entry still runs, several entries on one second, a start second that passes
while alarm 1 is being written, and `config commit` during a run. Every fault
is placed on an event (a reply, an event line, a clock reading), never after a
sleep, and removed after each test."""
import datetime
import json
import os
import subprocess
import sys
import time

import pytest

from host_tools.cmd_config import ConfigError
from host_tools.console import ConsoleError
from hil_tests.backup_rig import Console, free_addresses, iso, parse_iso, rig_session

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KIB = 1024
HOURLY = "*:45:07"  # far from the daily starts below (minutes 10-14), which the tests warp to


@pytest.fixture(scope="module")
def rig(request, sim, tmp_path_factory):
    if sim is None:
        pytest.skip("needs the virtual boards' DS3231 faults and power control")
    with rig_session(request, sim, str(tmp_path_factory.mktemp("sched"))) as r:
        dev, rtc0 = r.dev, r.rtc()
        r.disk1, r.disk2, r.disk3 = free_addresses(dev, 3, avoid=(r.lib,))
        hour0 = (rtc0.hour + 3) % 24

        def start(i):
            return "%02d:%02d:30" % ((hour0 + i) % 24, 10 + i)

        r.add_entry("plain", "A", 16 * KIB, r.disk1, r.name("D"), start(0))
        r.add_entry("same1", "B", 192 * KIB, r.disk3, r.name("F"), start(1))
        r.add_entry("same2", "C", 32 * KIB, r.disk2, r.name("E"), start(1))  # the same second, after same1
        r.add_entry("hourly", "H", 32 * KIB, r.lib, r.name("H"), HOURLY)
        r.new_disk(r.name("D"), "256K")
        r.new_disk(r.name("E"), "256K")
        r.new_disk(r.name("F"), "512K")
        r.new_tape(r.name("H"))
        r.set_dev(r.disk1, "disk " + r.name("D"))
        r.set_dev(r.disk2, "disk " + r.name("E"))
        r.set_dev(r.disk3, "disk " + r.name("F"))
        r.load_table(r.table())
        yield r


@pytest.fixture(autouse=True)
def no_faults_after(request):
    """Whatever a test did to the DS3231 or the power, the next test finds a
    clock that answers and is trusted, and both boards on."""
    yield
    if "rig" not in request.fixturenames:
        return
    rig = request.getfixturevalue("rig")
    rig.sim.rtc("clear")
    for b in ("controller", "backupdev"):
        if not rig.sim.call("status")["boards"][b]["powered"]:
            since = time.monotonic()
            rig.sim.power(b, "on")
            (rig.ctl if b == "controller" else rig.dev).after_boot(since)
    rig.trust_clock()
    rig.dev.call("mount cancel", check=False)
    rig.dev.call("mount policy auto")
    rig.empty_drive()


def scheduler_state(rig):
    return rig.ctl.call("status")["scheduler"]


def clock_past(rig, t, timeout=15):
    """Wait (by reading the DS3231) until its time is past `t`."""
    deadline = time.monotonic() + timeout
    while rig.rtc() <= t:
        assert time.monotonic() < deadline, "the DS3231 did not reach %s" % iso(t)
        rig.ctl.pump(0.2)


# --- a DS3231 that does not answer -------------------------------------------------

def test_rtc_not_answering_at_boot_console_answers_and_the_schedule_comes_back(rig):
    """Every I2C transfer to the DS3231 fails from before a boot: the controller
    still boots to its console, says once that the clock does not answer, and
    status says that backups will not start; once the chip answers the
    scheduler resumes by itself and the next start fires at its time."""
    rig.sim.rtc("nack", n=10 ** 6)
    since = time.monotonic()
    rig.sim.power("controller", "off")
    rig.sim.power("controller", "on")
    rig.ctl.after_boot(since)
    err = rig.ctl.wait_event("rtc_error", since=since, timeout=20)
    assert "DS3231 at 0x68 not answering" in err["reason"]
    assert rig.ctl.call("version")["role"] == "controller"  # the console answers
    with pytest.raises(ConsoleError) as e:
        rig.ctl.call("rtc get")
    assert "not answering" in str(e.value)
    state = scheduler_state(rig)
    assert state.startswith("stopped, no backup starts on schedule") and "does not answer" in state
    rig.ctl.pump(2)  # retries meanwhile: the outage is reported once, not per retry
    assert len(rig.ctl.since(since, "rtc_error")) == 1

    back = time.monotonic()
    rig.sim.rtc("clear")
    rig.ctl.wait_event("rtc_ok", since=back, timeout=20)  # retried with back-off, <= 8 s apart
    assert scheduler_state(rig) == "running"
    start, end, evs = rig.fire("plain")
    assert end["event"] == "backup_ended_normally"
    rec = rig.ctl.call("backup show %d" % end["run"])
    assert start <= parse_iso(rec["start"]) <= start + datetime.timedelta(seconds=1)


def test_start_that_comes_while_the_rtc_does_not_answer_runs_when_it_answers(rig):
    """The DS3231 stops answering just before a start time: the alarm line
    falls at the start, the scheduler cannot read the chip and says so; once
    the chip answers again the start that came meanwhile runs (late, and its
    backup_started says by how much), and the scheduler has re-planned."""
    key = "plain"
    start = rig.next_start(key)
    since = time.monotonic()
    rig.ctl.call("rtc set " + iso(start - datetime.timedelta(seconds=2)))
    set_at = time.monotonic()
    rig.sim.rtc("nack", n=10 ** 6)
    rig.ctl.wait_event("rtc_error", since=since, timeout=20)
    # The model's chip counts from the host clock: 3 s after the reply its
    # time is past the start (which it cannot be asked for now).
    rig.ctl.pump(max(0.0, set_at + 3 - time.monotonic()))
    assert not rig.ctl.since(since, "backup_started")
    back = time.monotonic()
    rig.sim.rtc("clear")
    end, evs = rig.wait_end(back, rig.volume(key), timeout=60)
    assert end["event"] == "backup_ended_normally"
    started = evs[0]
    assert started["event"] == "backup_started" and started["late_s"] >= 1
    rec = rig.ctl.call("backup show %d" % end["run"])
    assert (parse_iso(rec["start"]) - start).total_seconds() == started["late_s"]
    nxt = parse_iso(rig.ctl.call("backup status")["next"][str(rig.entry(key))])
    assert nxt == start + datetime.timedelta(days=1)


def test_a_few_nacks_are_retried_and_more_give_one_clear_error(rig):
    """`backupctl sim rtc nack N` (the CLI): the driver tries each transfer
    three times, so two lost ones go unnoticed; three make one `rtc get` fail
    with an error that names the chip, and the next one answers."""
    cli = [sys.executable, "-m", "host_tools.cli", "sim", "--sim", rig.sim.dir, "rtc"]
    for n, fails in ((2, False), (3, True)):
        out = subprocess.run(cli + ["nack", str(n)], capture_output=True, text=True, timeout=30, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["nack"] == n
        r = rig.ctl.call("rtc get", check=False)
        assert r["ok"] is not fails, r
        if fails:
            assert "DS3231 at 0x68 not answering (3 tries)" in r["error"]
        assert rig.ctl.call("rtc get")["ok"]
    out = subprocess.run(cli + ["clear"], capture_output=True, text=True, timeout=30, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "nack" not in json.loads(out.stdout)


# --- a clock that lost its time (OSF) ----------------------------------------------

def test_osf_after_a_power_cut_with_the_battery_off_starts_nothing_until_rtc_set(rig):
    """With the coin cell off, a power cut stops the DS3231's oscillator: at
    power-on its time resumes from the cut with OSF set. The scheduler reports
    rtc_untrusted and starts nothing, not even when the clock runs over a start
    time; after `rtc set` the next start fires at its time."""
    key = "plain"
    start = rig.next_start(key)
    rig.ctl.call("rtc set " + iso(start - datetime.timedelta(seconds=3)))
    rig.sim.rtc("battery", on=False)
    rig.sim.power("controller", "off")
    since = time.monotonic()
    rig.sim.power("controller", "on")
    rig.ctl.after_boot(since)
    ev = rig.ctl.wait_event("rtc_untrusted", since=since, timeout=20)
    assert "OSF" in ev["reason"] and "rtc set" in ev["reason"]
    t = rig.ctl.call("rtc get")
    assert t["lost_power"] is True
    assert parse_iso(t["time"]) < start  # stopped at the cut, not counting on while off
    assert "rtc set" in scheduler_state(rig)
    with pytest.raises(ConsoleError) as e:  # nor by hand
        rig.ctl.call("backup run %d" % rig.entry(key))
    assert "OSF" in str(e.value) and "rtc set" in str(e.value)
    clock_past(rig, start + datetime.timedelta(seconds=1))  # the start time passes on the untrusted clock
    rig.ctl.call("status")  # everything the board said up to now has arrived
    assert not rig.ctl.since(since, "alarm", "backup_started", "missed_start")

    rig.sim.rtc("battery", on=True)
    start, end, evs = rig.fire(key)
    assert rig.ctl.since(since, "rtc_ok")
    assert scheduler_state(rig) == "running"
    assert end["event"] == "backup_ended_normally"
    rec = rig.ctl.call("backup show %d" % end["run"])
    assert start <= parse_iso(rec["start"]) <= start + datetime.timedelta(seconds=1)


def test_impossible_date_and_year_2100_are_refused_as_such(rig):
    before = rig.rtc()
    with pytest.raises(ConsoleError) as e:
        rig.ctl.call("rtc set 2027-02-29T00:00:00")
    assert "impossible date" in str(e.value) and "28 days" in str(e.value)
    with pytest.raises(ConsoleError) as e:
        rig.ctl.call("rtc set 2100-01-01T00:00:00")
    assert "2100 out of range" in str(e.value) and "2000-2099" in str(e.value)
    after = rig.rtc()
    assert before <= after <= before + datetime.timedelta(seconds=5)  # the clock was not touched


# --- scheduler edges (steps 201-205) ------------------------------------------------

def test_two_entries_on_the_same_second_both_run_in_table_order(rig):
    """Entries same1 and same2 start on the same second: both run, same1 first
    (table order); same2, queued behind it, says in backup_started how late it
    started."""
    start = rig.next_start("same1")
    since = time.monotonic()
    rig.ctl.call("rtc set " + iso(start - datetime.timedelta(seconds=2)))
    end1, evs1 = rig.wait_end(since, rig.volume("same1"), timeout=60)
    end2, evs2 = rig.wait_end(since, rig.volume("same2"), timeout=60)
    assert end1["event"] == end2["event"] == "backup_ended_normally"
    assert [a["entry"] for a in rig.ctl.since(since, "alarm")] == [rig.entry("same1"), rig.entry("same2")]
    first, second = evs1[0], evs2[0]
    assert first["run"] < second["run"]
    assert first["late_s"] in (0, 1)
    rec1 = rig.ctl.call("backup show %d" % first["run"])
    rec2 = rig.ctl.call("backup show %d" % second["run"])
    assert second["late_s"] == (parse_iso(rec2["start"]) - start).total_seconds()
    assert parse_iso(rec2["start"]) >= parse_iso(rec1["end"]) and second["late_s"] >= 1


def _blocked_run(rig, fire):
    """A run of the hourly entry that waits for its cartridge: the backup
    device asks an operator, who does not answer yet. Returns (run id, since)."""
    rig.dev.call("mount policy operator")
    since = time.monotonic()
    fire()
    started = rig.ctl.wait_event("backup_started", since=since, timeout=20,
                                 match=lambda e: e["volume"] == rig.volume("hourly"))
    rig.dev.wait_event("mount_request", since=since, timeout=20)
    return started, since


def _finish(rig, run, since):
    rig.dev.call("mount ok")
    end, evs = rig.wait_end(since, rig.volume("hourly"), timeout=60)
    assert end["run"] == run and end["event"] == "backup_ended_normally"
    return end


def test_hourly_start_while_its_run_still_goes_is_not_queued_twice(rig):
    """204/205: the next hourly start comes while the previous run still waits
    for its cartridge: still_running names the run, nothing is queued, and
    once the run ends no second one starts."""
    key = "hourly"
    now = rig.rtc()
    t0 = now.replace(minute=45, second=7)
    t0 = t0 if t0 > now else t0 + datetime.timedelta(hours=1)
    started, since = _blocked_run(rig, lambda: rig.ctl.call("rtc set " + iso(t0 - datetime.timedelta(seconds=2))))
    run = started["run"]
    t1 = t0 + datetime.timedelta(hours=1)
    mark = time.monotonic()
    rig.ctl.call("rtc set " + iso(t1 - datetime.timedelta(seconds=2)))  # the next hour, the run still waiting
    still = rig.ctl.wait_event("still_running", since=mark, timeout=15)
    assert (still["entry"], still["run"], still["start"]) == (rig.entry(key), run, HOURLY)
    assert rig.ctl.call("backup status")["queued"] == []
    _finish(rig, run, since)
    st = rig.ctl.call("backup status")
    assert st["queued"] == [] and st["running"] is None
    assert [e["run"] for e in rig.ctl.since(since, "backup_started")] == [run]


def test_config_commit_during_a_backup_is_refused_and_the_table_stays(rig):
    before = rig.ctl.call("config show")["sha256"]
    started, since = _blocked_run(rig, lambda: rig.ctl.call("backup run %d" % rig.entry("hourly")))
    t = rig.table()
    t["catch_up"] = False  # any change
    with pytest.raises(ConfigError) as e:
        rig.load_table(t)
    assert "backup or restore is running" in str(e.value) and "unchanged" in str(e.value)
    assert rig.ctl.call("config show")["sha256"] == before
    assert rig.ctl.call("backup status")["running"]["id"] == started["run"]  # no reboot under it
    _finish(rig, started["run"], since)


# --- a start second that passes while alarm 1 is being armed -----------------------

ARM_SCRIPT = r"""
import sys, json
sys.path[:0] = [ROOT + "/firmware", ROOT + "/firmware/lib", ROOT + "/host_tools/vboard"]
import asyncio
class _System:  # what the scheduler takes from lib/system.py, which needs a board: the card is in
    sd_ready = asyncio.Event()
_System.sd_ready.set()
sys.modules["system"] = _System
from ds3231 import DS3231
from ds3231_model import DS3231Model
from ds3231 import to_seconds
from controller import scheduler

NOW = [1000000.0]

class SlowI2C:
    # machine.I2C's memory API on the model; writing alarm 1 takes 1.2 s, as
    # if the task had been held up right there
    def __init__(self, dev):
        self.dev = dev
    def readfrom_mem_into(self, addr, mem, buf):
        self.dev.writeto(addr, bytes((mem,)))
        self.dev.readfrom_into(addr, buf)
    def writeto_mem(self, addr, mem, buf):
        if mem == 0x07:
            NOW[0] += 1.2
        self.dev.writeto(addr, bytes((mem,)) + bytes(buf))

class Con:
    def __init__(self):
        self.events = []
    def event(self, name, **kw):
        self.events.append([name, kw.get("entry")])

class Engine:
    busy = None

TABLE = {"backup": [{"volume": "V", "start": "12:00:00"}, {"volume": "W", "start": "13:00:00"}]}
scheduler.table100.current = lambda: TABLE
rtc = DS3231(SlowI2C(DS3231Model(None, lambda: NOW[0])))
rtc.set_datetime((2026, 11, 26, 11, 59, 59))
con = Con()
sp = scheduler.Scheduler(con, rtc, None, Engine(), None)
sp.kick()  # plans 12:00:00 for entry 0 at 11:59:59
sp._pass()  # arms alarm 1; 12:00:00 passes while it is written
print(json.dumps({"events": con.events, "queued": sp.queued(), "time": rtc.datetime(),
                  "tomorrow": sp.due[0] == to_seconds((2026, 11, 27, 12, 0, 0)),
                  "alarm_regs": list(rtc._read(0x07, bytearray(4)))}))
"""


def test_start_second_passing_while_alarm_1_is_armed_still_runs():
    """The real scheduler, driver and DS3231 model in the real micropython: the
    start second 12:00:00 passes while the alarm registers are written, so the
    chip will not fire until tomorrow. The scheduler reads the clock again
    after arming and instructs the start at once."""
    from host_tools.sim.board import micropython_exe
    p = subprocess.run([micropython_exe(), "-c", "ROOT = %r\n" % ROOT + ARM_SCRIPT],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["time"][3:5] == [12, 0]
    assert r["events"] == [["alarm", 0]]
    assert r["queued"] == [0]
    assert r["tomorrow"]  # and planned again for tomorrow
    assert r["alarm_regs"] == [0x00, 0x00, 0x13, 0x80]  # armed for the other entry, 13:00:00 daily


RESUME_SCRIPT = r"""
import sys, json
sys.path[:0] = [ROOT + "/firmware", ROOT + "/firmware/lib"]
import asyncio
class _System:  # what the scheduler takes from lib/system.py, which needs a board: the card is in
    sd_ready = asyncio.Event()
_System.sd_ready.set()
sys.modules["system"] = _System
from controller import scheduler

class Con:
    def __init__(self):
        self.events = []
    def event(self, name, **kw):
        self.events.append([name, kw])

class Engine:
    busy = None
    def __init__(self):
        self.ran = []
        self.ended = []
    async def backup(self, i, entry, resume=None, due=None):
        self.ran.append([i, entry["volume"], resume["id"]])
    def _end(self, rec, result, reason=None):
        self.ended.append([rec["id"], result, reason])

def entry(vol, addr, dv):
    return {"volume": vol, "address": addr, "device_volume": dv, "start": "02:00:00"}

# the run was made for entry 0 (V1 -> address 0, SSC001); table 100 changed since
TABLE = {"backup": [entry("V2", 0, "SSC001"), entry("V1", 0, "SSC001")]}
scheduler.table100.current = lambda: TABLE
con, eng = Con(), Engine()
sp = scheduler.Scheduler(con, None, None, eng, None)
moved = {"id": 7, "entry": 0, "volume": "V1", "address": 0, "device_volume": "SSC001"}
gone = {"id": 8, "entry": 1, "volume": "V2", "address": 3, "device_volume": "BKD001"}
asyncio.run(sp._resume(moved))
asyncio.run(sp._resume(gone))
print(json.dumps({"ran": eng.ran, "ended": eng.ended, "events": con.events}))
"""


def test_resume_at_boot_follows_the_entry_by_volume_address_and_device_volume():
    """A run cut off by a reset resumes for the entry of table 100 with its
    volume, address and device volume, wherever that entry now is; with no such
    entry it ends abnormally, saying why, instead of running another entry's
    backup under its number."""
    from host_tools.sim.board import micropython_exe
    p = subprocess.run([micropython_exe(), "-c", "ROOT = %r\n" % ROOT + RESUME_SCRIPT],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr + p.stdout
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["ran"] == [[1, "V1", 7]]  # now entry 1
    reason = "not resumed: table 100 has no entry for volume V2, address 3, device volume BKD001"
    assert r["ended"] == [[8, "failed", "312 " + reason]]
    assert r["events"] == [["backup_ended_abnormally", {"run": 8, "step": 312, "reason": reason}]]
