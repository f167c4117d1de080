"""Issue 9: no task of either board dies for good, the watchdog resets a board
that stops feeding it, the reset cause is reported, and the REPL (people and
mpremote) works although the RP2040 watchdog cannot be stopped, while a
forgotten REPL ends in a reset that runs the firmware (and its schedule) again."""
import json
import os
import subprocess
import sys
import time

import pytest

from host_tools.cmd_config import table_rules
from hil_tests.plugin import open_console
from hil_tests.backup_rig import Console, Rig, sha

MPREMOTE = [sys.executable, "-m", "mpremote"]
TASKS = [("controller", "scheduler"), ("controller", "runner"), ("controller", "link"),
         ("controller", "console"), ("backupdev", "link"), ("backupdev", "console")]


def _errors(con, task):
    return con.call("status")["task_errors"].get(task, {"count": 0})


@pytest.mark.parametrize("role,task", TASKS, ids=["%s-%s" % t for t in TASKS])
def test_failed_task_is_reported_restarted_and_shown_in_status(request, role, task):
    con = request.getfixturevalue(role)
    before = _errors(con, task)["count"]
    up = con.call("status")["uptime_s"]
    since = time.monotonic()
    con.call("selftest task " + task)
    ev = con.wait_event("task_error", since=since, timeout=15, match=lambda e: e["task"] == task)
    assert ev["count"] == before + 1 and "selftest" in ev["exception"]
    assert ev["restart_in_ms"] >= 1000
    st = con.call("status")
    assert st["task_errors"][task]["count"] == before + 1 and "selftest" in st["task_errors"][task]["last"]
    assert st["uptime_s"] >= up  # restarted the task, not the board
    if task in ("scheduler", "runner", "link"):  # back again: it checks in and can fail again
        time.sleep(ev["restart_in_ms"] / 1000)
        since = time.monotonic()
        con.call("selftest task " + task)
        ev2 = con.wait_event("task_error", since=since, timeout=15, match=lambda e: e["task"] == task)
        assert ev2["count"] == before + 2
        assert ev2["restart_in_ms"] == 2 * ev["restart_in_ms"]  # back-off doubles


def test_unknown_selftest_task_is_refused(controller):
    r = controller.call("selftest task frobnicate", check=False)
    assert not r["ok"] and "scheduler" in r["error"] and "console" in r["error"]


def _boot_line(con, since, timeout):
    """The firmware's boot line after `since` (host time) and when it came."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = con._readline(deadline)
        if line is not None:
            con._take(line)  # recorded as the console's events are
            if b"* boot " in line:
                return line, time.monotonic()
    raise TimeoutError("no boot line within %s s; last output %r" % (timeout, con.lines[-3:]))


@pytest.mark.virtual_only("power-cycles the board")
def test_reset_cause_of_reboot_and_power_cycle(sim, controller):
    controller.call("reboot")
    line, _ = _boot_line(controller, 0, 30)
    assert b"reset_cause=reboot" in line
    controller.sync()
    assert controller.call("status")["reset_cause"] == "reboot"
    sim.power("controller", "cycle")
    controller.sync()
    assert controller.call("status")["reset_cause"] == "power-on"


@pytest.mark.virtual_only("powers the board off")
def test_a_board_powered_off_stays_off_although_its_watchdog_was_armed(sim, controller):
    sim.power("controller", "off")
    try:
        time.sleep(10)  # longer than a watchdog period: nothing may switch it back on
        assert sim.call("status")["boards"]["controller"]["powered"] is False
        assert sim.call("status")["boards"]["controller"]["pid"] is None
    finally:
        sim.power("controller", "on")
    controller.sync()
    assert controller.call("status")["reset_cause"] == "power-on"


@pytest.fixture
def small_rig(request, sim, tmp_path):
    """One tape entry on the backup device's library, removed afterwards."""
    ctl = open_console(request, sim, "controller", Console, timeout=30)
    dev = open_console(request, sim, "backupdev", Console, timeout=30)
    r = Rig(ctl, dev, sim)
    r.tmp = str(tmp_path)
    table_before = ctl.call("config show")
    lib = [d["addr"] for d in dev.call("dev list")["devices"] if d["device"] == "library"]
    assert lib, "the backup device board has no tape library"
    now = r.rtc()
    r.add_entry("wd", "W", 16 * 1024, lib[0], r.name("W"), "%02d:%02d:40" % ((now.hour + 5) % 24, now.minute))
    r.new_tape(r.name("W"))
    r.load_table(r.table())
    try:
        yield r
    finally:
        ctl.sync()
        r.empty_drive()
        r.load_table(table_rules.check(table_before["table"]))
        for v in r.volumes:
            ctl.call("vol delete %s --yes" % v, check=False)
        for t in r.tapes:
            dev.call("tape delete %s --yes" % t, check=False)
        ctl.close()
        dev.close()


@pytest.mark.virtual_only("sets the DS3231 to a start time")
def test_selftest_watchdog_resets_the_board_and_the_next_backup_runs(small_rig):
    """`selftest watchdog`: the board resets within 9 s (plus the time a boot
    takes, measured with `reboot`), the boot line says watchdog, the firmware
    answers, and the next scheduled start still runs the backup."""
    r = small_rig
    ctl = r.ctl
    since = time.monotonic()
    ctl.call("reboot")
    _, t = _boot_line(ctl, since, 30)
    boot_s = t - since
    ctl.after_boot(since)
    since = time.monotonic()
    ctl.call("selftest watchdog")
    line, t = _boot_line(ctl, since, 30)
    print("\nwatchdog reset: boot line %.1f s after `selftest watchdog` (a reboot's boot line: %.1f s)"
          % (t - since, boot_s))
    assert b"reset_cause=watchdog" in line
    assert t - since < 9 + boot_s
    ctl.after_boot(since)
    assert ctl.call("status")["reset_cause"] == "watchdog"
    start, end, evs = r.fire("wd")
    assert end["event"] == "backup_ended_normally", end
    assert end["sha256"] == sha(r.data[r.volume("wd")])


# --- the REPL and the watchdog -------------------------------------------------------

def _mpremote(port, *args):
    r = subprocess.run(MPREMOTE + ["connect", port] + list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "mpremote %s failed: %s%s" % (args, r.stdout, r.stderr)
    return r.stdout


@pytest.mark.virtual_only("rewrites the board file and waits for the watchdog")
def test_repl_works_past_the_watchdog_and_a_forgotten_repl_resets(sim, controller):
    port = sim.port("controller")
    controller.close()
    original = _mpremote(port, "exec", "print(open('/board.json').read())").strip()
    cfg = json.loads(original)
    cfg["watchdog"]["repl_grace_s"] = 20
    short = json.dumps(cfg)
    try:
        _mpremote(port, "exec", "with open('/board.json', 'w') as f: f.write(%r)" % short)
        # mpremote's soft reset runs boot.py (not main.py): the REPL gets the grace
        # period of the board file
        _mpremote(port, "soft-reset")
        t0 = time.monotonic()
        # mpremote (raw REPL) works longer than a watchdog period...
        out = _mpremote(port, "exec", "import time; time.sleep(10); print('still here')")
        assert "still here" in out
        # ...and so does the REPL it leaves behind, forgotten
        con = Console(port, timeout=30)
        try:
            con.ser.write(b"\r\nprint(6 * 7)\r\n")
            con.pump(1.0)
            assert any(b"42" == ln.strip() for ln in con.lines), con.lines[-5:]
            assert time.monotonic() - t0 > 9
            line, t = _boot_line(con, t0, 60)
            print("\nforgotten REPL: watchdog reset %.1f s after the last soft reset (grace 20 s)" % (t - t0))
            assert b"reset_cause=watchdog" in line
            assert t - t0 >= 20  # not before the grace period ended
        finally:
            con.close()
    finally:
        _mpremote(port, "exec", "with open('/board.json', 'w') as f: f.write(%r)" % original)
        with Console(port, timeout=30) as con:
            con.sync()  # leaves the REPL: main.py runs with the board file as it was
            assert con.call("version")["ok"]


def _fixture_script(name):
    """Run hil_tests/fixtures/NAME on the unix MicroPython over firmware/; its JSON result."""
    here = os.path.dirname(__file__)
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "micropython"),
                          os.path.join(here, "fixtures", name), os.path.join(here, "..", "firmware")],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


def test_rp2_hal_tells_reset_causes_apart_and_feeds_only_during_the_grace_period():
    """hal/rp2.py on the unix MicroPython with a stand-in `machine`: what a Pico
    would report after a power-on, `reboot`, a watchdog bite and a soft reset,
    and the REPL grace timer that feeds until its deadline and no longer."""
    r = _fixture_script("rp2_watchdog_probe.py")
    assert (r["power_on"], r["after_reset"], r["watchdog"], r["late"]) == ("power-on", "reboot", "watchdog", "soft")
    assert r["wdt_timeout"] == 8388  # asked for 30 s: the RP2040 counts 8.388 s at most
    assert r["timer"] == [-1, 1000]
    assert r["fed_in_grace"] == 1 and r["fed_after_grace"] == 1  # not fed once the grace period is over
    assert r["timer_live_after_grace"] is False and r["timer_live_after_stop"] is False


def test_engine_start_errors_end_the_run_and_clear_busy():
    """An SD error in catalog.new() or a DS3231 that does not answer when the run
    is stamped: the run ends abnormally (312, with the error) instead of killing
    the scheduler's runner, `busy` is clear and the channel's lock is free."""
    r = _fixture_script("engine_start_errors.py")
    for case, err in (("catalog", "EIO"), ("clock", "ETIMEDOUT")):
        assert r[case]["step"] == 312 and r[case]["busy"] is None and r[case]["locked"] is False, (case, r[case])
        [(name, step, reason)] = r[case]["events"]
        assert (name, step) == ("backup_ended_abnormally", 312) and err in reason, (case, r[case])
