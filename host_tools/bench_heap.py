"""Heap figures of both roles on a calibrated virtual pair (host_tools/sim/heapcal.py):
free heap and largest free block after boot, and the lowest free heap while the
controller backs a volume up to a tape on the device board and restores it,
sampled on each board by `heap watch` (a collection and gc.mem_free() every
SAMPLE_MS), and while it lists a catalog of LIST_RUNS runs. The sampler runs
between other tasks' awaits, so a synchronous command's own peak (`backup
list` builds its reply in one piece) is not in the figure: only what stays
live around it."""
import io
import os
import shutil
import tempfile
import time

from host_tools import cmd_config, runs
from host_tools.cmd_config import table_rules
from host_tools.console import BoardConsole
from host_tools.sim import client

SAMPLE_MS = 20
VOLUME_SIZE = 256 * 1024  # the backup measured on the Picos (issue 11)
LIST_RUNS = 40  # catalog runs before `backup list`: a long catalog
LIST_LAST = 25  # the runs it lists (the reply's rows are built at once, the reply is streamed)
ROLES = ("controller", "backupdev")


def _mins(cons):
    return {role: con.call("heap min")["min_free"] for role, con in cons.items()}


def _watch(cons):
    for con in cons.values():
        con.call("heap watch %d" % SAMPLE_MS)


def _end(ctl, since, names, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t, ev in ctl.events:
            if t >= since and ev.get("event") in names:
                return ev
        ctl.pump(0.1)
    raise TimeoutError("none of %s within %d s" % (names, timeout))


def measure(cons):
    """Heap figures on the boards behind consoles {role: BoardConsole}; leaves
    the volumes, the tape and a table on them."""
    ctl, dev = cons["controller"], cons["backupdev"]
    out = {}
    for role, con in cons.items():
        s = con.call("status")
        out[role] = {"free_after_boot": s["mem_free"], "largest_block": s["largest_block"],
                     "mem_total": s["mem_free"] + s["mem_alloc"]}
    tag = "%03d" % (int(time.time()) % 1000)
    tape, vol, scratch, small = "HPT" + tag, "HPV" + tag, "HPR" + tag, "HPN" + tag
    dev.call("tape new %s --capacity %dK --early-warning 16K" % (tape, VOLUME_SIZE // 1024 * 2 + 64))
    ctl.call("vol create %s --size %d" % (vol, VOLUME_SIZE), timeout=60)
    ctl.call("vol create %s --size %d" % (scratch, VOLUME_SIZE), timeout=60)
    ctl.call("vol create %s --size 4096" % small, timeout=60)
    used = {d["addr"] for d in dev.call("dev list")["devices"]}
    nodev = max(set(range(16)) - used)  # its runs end at once (307): the catalog grows fast
    table = table_rules.check({"channel_flag": 1, "catch_up": False, "volumes": {"names": [vol, small]},
                               "backup": [{"volume": vol, "channel": "uart0", "address": 0,
                                           "device_volume": tape, "start": "03:33:33"},
                                          {"volume": small, "channel": "uart0", "address": nodev,
                                           "device_volume": "HPZ001", "start": "04:44:44"}]})
    ctl.call("rtc set 2026-12-01T00:00:00")  # a fresh board's DS3231 has lost its time (OSF): no backup starts
    cmd_config.load(ctl, table, out=io.StringIO())
    ctl.sync()
    runs.trust_clock(ctl)  # a new board's DS3231 has OSF set: nothing starts on it
    _watch(cons)
    since = time.monotonic()
    ctl.call("backup run 0")
    end = _end(ctl, since, ("backup_ended_normally", "backup_ended_abnormally"), 300)
    backup_s = time.monotonic() - since
    if end["event"] != "backup_ended_normally":
        raise RuntimeError("the backup failed: %r" % end)
    backup = _mins(cons)
    _watch(cons)
    since = time.monotonic()
    ctl.call("restore %d --to %s" % (end["run"], scratch), timeout=300)
    restore_s = time.monotonic() - since
    restore = _mins(cons)
    for _ in range(LIST_RUNS - 1):
        since = time.monotonic()
        ctl.call("backup run 1")
        _end(ctl, since, ("backup_ended_normally", "backup_ended_abnormally"), 120)
    _watch(cons)
    listed = ctl.call("backup list --last %d" % LIST_LAST)
    if listed["count"] < LIST_RUNS or len(listed["backups"]) != LIST_LAST:
        raise RuntimeError("backup list --last %d of %d runs gave %d" % (LIST_LAST, listed["count"], len(listed["backups"])))
    listing = _mins(cons)
    for role, con in cons.items():
        con.call("heap watch off")
        out[role].update(min_free_backup=backup[role], min_free_restore=restore[role],
                         min_free_list=listing[role])
    # with the heap sampled and the tape mounted and labelled: a figure to compare, not the wire's limit
    out["controller"].update(backup_kib_s=round(VOLUME_SIZE / 1024 / backup_s, 1),
                             restore_kib_s=round(VOLUME_SIZE / 1024 / restore_s, 1))
    return out


def heap_figures():
    """Start a calibrated virtual pair of its own, measure, tear it down."""
    state = tempfile.mkdtemp(prefix="bench-heap-")
    try:
        st = client.up(state)
        cons = {role: BoardConsole(os.path.realpath(st["boards"][role]["console"]), timeout=60) for role in ROLES}
        try:
            for con in cons.values():
                con.sync()
            return measure(cons)
        finally:
            for con in cons.values():
                con.close()
    finally:
        client.down(state)
        shutil.rmtree(state, ignore_errors=True)
