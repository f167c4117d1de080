"""Issue 5: the backup engine (channel interface, Fig. 7-13, table 140) and the
service processor's scheduler (Fig. 6, timer 130 = the DS3231), board to board.

Every decision of Fig. 7-13 is driven down both of its branches where the
device emulator can present the case; the backup device type that is neither
disk nor tape, and a disk whose label cannot be read, come from a test peer
(hil_tests/odddev.py) on the backup device's end of the virtual wire. Each
test asserts what a user sees: the events the controller reports (step
numbers with their table 140 snapshot), `backup table`, the catalog, what is
on the cartridges and disks, and restored data compared by SHA-256.

One table 100 serves the whole module (backup_rig.py builds and removes it);
each test uses its own entry, volumes are small and cartridges 128 KiB with a
16 KiB early-warning zone, so that a 160-256 KiB volume spans 2-3 cartridges."""
import base64
import datetime
import json
import os
import random
import string
import time

import pytest

from host_tools.console import ConsoleError
from hil_tests.backup_rig import (Console, Operator, OddDevice, free_addresses, iso, parse_iso, rig_session, sha,
                                  wait_link, WRITE_OPS)

KIB = 1024
CHUNK = 2048  # one tape block / link WRITE (devcmd.BLOCK_MAX)


@pytest.fixture(scope="module")
def rig(request, sim, tmp_path_factory):
    with rig_session(request, sim, str(tmp_path_factory.mktemp("backup"))) as r:
        if r.ctl.call("vol list")["count"] > 3:
            pytest.fail("the controller holds %d volumes: this module needs 13 of the 16" % r.ctl.call("vol list")["count"])
        dev, rtc0 = r.dev, r.rtc()
        r.disk_addr, r.mismatch_addr, r.cut_addr, r.nodev_addr, r.odd_proc, r.odd_disk = \
            free_addresses(dev, 6, avoid=(r.lib,))
        # start times: daily, an hour apart, hours away from now, so that only
        # the tests that set the DS3231 to a start time make one come
        hour0 = (rtc0.hour + 3) % 24

        def start(i):
            return "%02d:%02d:30" % ((hour0 + i) % 24, 10 + i)

        plan = [  # key, volume letter, size, address, device volume (letter), start
            ("disk", "D", 192 * KIB, r.disk_addr, "D"),
            ("span", "S", 256 * KIB, r.lib, "S"),
            ("ready", "W", 32 * KIB, r.lib, "W"),
            ("spanfail", "F", 160 * KIB, r.lib, "F"),
            ("mismatch", "M", 32 * KIB, r.mismatch_addr, "M"),
            ("nodev", "N", 16 * KIB, r.nodev_addr, "Z"),
            ("stale", "L", 64 * KIB, r.lib, "L"),
            ("timing", "T", 16 * KIB, r.lib, "T"),
            ("cut", "C", 192 * KIB, r.cut_addr, "C"),
            ("kill", "K", 192 * KIB, r.lib, "K"),
            ("odd_proc", "P", 16 * KIB, r.odd_proc, "P"),
            ("odd_disk", "Q", 16 * KIB, r.odd_disk, "Q"),
        ]
        for i, (key, letter, size, addr, dv) in enumerate(plan):
            r.add_entry(key, letter, size, addr, r.name(dv), start(i))
        for letter in ("S", "S2", "S3", "W", "X", "F", "L", "T", "K", "K2"):
            r.new_tape(r.name(letter[0], int(letter[1:] or 1)))
        r.new_disk(r.name("D"), "1M")
        r.new_disk(r.name("N"), "256K")  # at the mismatch address: not the disk table 100 names
        r.new_disk(r.name("C"), "1M")
        r.set_dev(r.disk_addr, "disk " + r.name("D"))
        r.set_dev(r.mismatch_addr, "disk " + r.name("N"))
        r.set_dev(r.cut_addr, "disk " + r.name("C"))
        r.load_table(r.table())
        yield r


# --- what every run must show -------------------------------------------------------

CLEAR = {"141": {"151_disk": 0, "152_mt": 0}, "142_checked": 0, "143_current": "", "144_mount_wait": 0}


def t140(snapshot):
    return {k: v for k, v in snapshot.items() if k != "address"}


def steps(evs):
    return [ev["step"] for ev in evs if ev["event"] == "backup_step"]


def step_table(evs, step):
    """Table 140 as reported with the (last) event of `step`."""
    found = [ev["t140"] for ev in evs if ev["event"] == "backup_step" and ev["step"] == step]
    assert found, "no step %s among %s" % (step, steps(evs))
    return t140(found[-1])


def assert_abnormal(rig, key, end, evs, step, reason):
    """Abnormal end at `step`: the event names the step, the service processor
    reports it (211), table 140 is cleared (710) and the catalog says failed."""
    assert end["event"] == "backup_ended_abnormally", end
    assert end["step"] == step, end
    assert reason in end["reason"], end
    entry = rig.entry(key)
    sp = rig.ctl.after(end, "sp_error")  # 211: the service processor reports it
    assert (sp["entry"], sp["step"], sp["reason"]) == (entry, step, end["reason"])
    addr = rig.entries[entry]["address"]
    assert t140(rig.table140(addr)) == CLEAR
    rec = rig.ctl.call("backup show %d" % end["run"])
    assert rec["run"] == end["run"]
    assert rec["result"] == "failed" and rec["reason"].startswith("%d " % step) and rec["state"] == "failed"


def assert_normal(rig, key, end, evs):
    vol = rig.volume(key)
    assert end["event"] == "backup_ended_normally", end
    assert end["bytes"] == len(rig.data[vol]) and end["sha256"] == sha(rig.data[vol])
    assert steps(evs)[-1] == 801 and step_table(evs, 801) == CLEAR   # 801, 802
    rec = rig.ctl.call("backup show %d" % end["run"])
    assert (rec["run"], rec["result"], rec["state"], rec["sha256"]) == (end["run"], "ok", "current", end["sha256"])
    return rec


def tape_flow(evs):
    # the steps of a tape run that went well, with what 140 said at each
    return [(ev["step"], ev["t140"]["143_current"], ev["t140"]["144_mount_wait"], ev["t140"]["142_checked"])
            for ev in evs if ev["event"] == "backup_step"]


# --- Fig. 9 and 12: a disk ----------------------------------------------------------

def test_disk_backup_restores_identically(rig):
    """308 disk -> 309, 501/502 label read, 504 equal -> 505/506, 507-510 until
    509 finished -> 801/802; then restore into an empty volume: same SHA-256."""
    vol, disk = rig.volume("disk"), rig.device_volume("disk")
    end, evs = rig.run_now("disk")
    rec = assert_normal(rig, "disk", end, evs)
    assert steps(evs) == [309, 506, 801]
    assert step_table(evs, 309) == dict(CLEAR, **{"141": {"151_disk": 1, "152_mt": 0}})
    assert step_table(evs, 506) == {"141": {"151_disk": 1, "152_mt": 0}, "142_checked": 1, "143_current": disk,
                                    "144_mount_wait": 0}
    assert not [ev for ev in evs if ev["event"] in ("mount_request", "volume_full")]
    assert rec["tapes"] == [disk] and rec["volume"] == vol
    # on the disk: our header block says which run and volume, complete, with the SHA-256
    hdr = base64.b64decode(rig.ctl.call("link bread %d 1" % rig.disk_addr)["data"])
    assert hdr[:4] == b"RBKP"
    meta = json.loads(hdr[4:].rstrip(b" "))
    assert (meta["state"], meta["run"], meta["volume"], meta["size"], meta["sha256"]) == \
        ("complete", end["run"], vol, len(rig.data[vol]), end["sha256"])
    r, restored = rig.restore_to_scratch(end["run"], len(rig.data[vol]))
    assert r["match"] and restored == sha(rig.data[vol])


def test_restore_refuses_a_run_whose_disk_a_later_run_reused(rig):
    """The disk's backup header names the run it holds: restoring an older run
    from a disk a later run overwrote is refused before the target is touched."""
    vol = rig.volume("disk")
    first, _ = rig.run_now("disk")
    second, _ = rig.run_now("disk")
    assert first["event"] == second["event"] == "backup_ended_normally"
    size = len(rig.data[vol])
    scratch = "Q%s%s" % (rig.tag, "".join(random.choice(string.digits) for _ in range(2)))
    rig.ctl.call("vol create %s --size %d" % (scratch, size), timeout=60)
    try:
        empty = rig.ctl.call("vol sha %s" % scratch, timeout=60)["sha256"]
        r = rig.ctl.call("restore %d --to %s" % (first["run"], scratch), timeout=180, check=False)
        assert not r["ok"] and "not run %d: nothing restored" % first["run"] in r["error"], r
        assert rig.ctl.call("vol sha %s" % scratch, timeout=60)["sha256"] == empty
    finally:
        rig.ctl.call("vol delete %s --yes" % scratch, check=False)
    r, restored = rig.restore_to_scratch(second["run"], size)
    assert r["match"] and restored == sha(rig.data[vol])


# --- Fig. 10, 11, 13: tapes -----------------------------------------------------------

def test_tape_backup_spans_cartridges_with_ansi_labels_and_restores(rig):
    """602 not ready -> 603/604 mount -> 605-609; 610-613 until 613 early
    warning -> 614/615 rewind -> 701 unload, 702 144=1, 703 next name, 704/705
    mount, 706-708 label, 709 144=0 -> 610 (twice: 3 cartridges); 612 finished
    -> 901-903 -> 801. Each cartridge carries HDR1/HDR2/UHL1/UHL2 and EOV1/EOV2
    (the last EOF1/EOF2/UTL1 with the SHA-256); the restore is identical."""
    vol = rig.volume("span")
    carts = [rig.name("S", i) for i in (1, 2, 3)]
    rig.empty_drive()
    live = []

    def look():  # table 140 while the backup runs (142 = 1: 601/610 go straight to the data)
        if not live and rig.ctl.since(since, "backup_progress"):
            live.append(rig.table140(rig.lib))

    since = time.monotonic()
    end, evs = rig.run_now("span", during=look)
    rec = assert_normal(rig, "span", end, evs)
    assert live and t140(live[0]) == {"141": {"151_disk": 0, "152_mt": 1}, "142_checked": 1,
                                      "143_current": carts[0], "144_mount_wait": 0}
    assert tape_flow(evs) == [
        (311, "", 0, 0), (603, "", 0, 0), (609, carts[0], 0, 1),
        (614, carts[0], 0, 1), (703, carts[1], 1, 1), (704, carts[1], 1, 1), (709, carts[1], 0, 1),
        (614, carts[1], 0, 1), (703, carts[2], 1, 1), (704, carts[2], 1, 1), (709, carts[2], 0, 1),
        (901, carts[2], 0, 1), (801, "", 0, 0)]
    assert step_table(evs, 311)["141"] == {"151_disk": 0, "152_mt": 1}
    assert [ev["volume"] for ev in evs if ev["event"] == "mount_request"] == carts
    assert [ev["tape"] for ev in evs if ev["event"] == "volume_full"] == carts[:2]
    assert rec["tapes"] == carts
    # 903: the last cartridge is unloaded (not ready) at the end
    st = rig.dev.call("status")
    assert (st["drive"], st["ready"]) == (carts[2], False)

    size = len(rig.data[vol])
    blocks = []
    for i, name in enumerate(carts):
        volser, header, trailer, after = rig.cartridge_labels(rig.lib, name)
        assert volser == name
        ids = [lid for lid, _ in header]
        assert ids == ["HDR1", "HDR2", "UHL1", "UHL2"], ids
        h = dict(header)
        assert (h["HDR1"]["file_id"], h["HDR1"]["set_id"], h["HDR1"]["section"]) == ("RVOL." + vol, carts[0], i + 1)
        assert h["HDR2"]["block_len"] == CHUNK
        assert (h["UHL1"]["VOLUME"], int(h["UHL1"]["SIZE"]), int(h["UHL1"]["RUN"])) == (vol, size, end["run"])
        last = i == len(carts) - 1
        kind = "EOF" if last else "EOV"
        assert [lid for lid, _ in trailer] == ([kind + "1", kind + "2", "UTL1"] if last else [kind + "1", kind + "2"])
        tr = dict(trailer)
        assert (tr[kind + "1"]["file_id"], tr[kind + "1"]["section"]) == ("RVOL." + vol, i + 1)
        blocks.append(tr[kind + "1"]["blocks"])
        if last:
            assert tr["UTL1"]["SHA256"] == end["sha256"]
        assert after == ["filemark", "filemark", "eod"]  # the trailer ends with two tapemarks
    assert blocks == [s["blocks"] for s in rec["sections"]]
    assert sum(blocks) == -(-size // CHUNK)
    rig.empty_drive()
    r, restored = rig.restore_to_scratch(end["run"], size)
    assert r["match"] and restored == sha(rig.data[vol])
    assert [ev["tape"] for ev in rig.ctl.since(since, "restore_volume_done")] == carts


def test_ready_cartridge_is_used_without_a_mount(rig):
    """602 READY -> 605 (no 603 mount request): the cartridge in the drive is
    the one table 100 names."""
    name = rig.device_volume("ready")
    rig.empty_drive()
    rig.dev.call("tape load %s" % name)
    end, evs = rig.run_now("ready")
    assert_normal(rig, "ready", end, evs)
    assert tape_flow(evs) == [(311, "", 0, 0), (609, name, 0, 1), (901, name, 0, 1), (801, "", 0, 0)]
    assert not [ev for ev in evs if ev["event"] == "mount_request"]


FIRST_MOUNT = [
    # case, how the cartridge is spoiled, step, reason
    ("603-mount-refused", "missing", 603, "medium not present"),
    ("604-operator-cancels", "cancel", 604, "medium not present"),
    ("606-label-unreadable", "nolabel", 606, "label unreadable"),
]


@pytest.mark.parametrize("case,how,step,reason", FIRST_MOUNT, ids=[c[0] for c in FIRST_MOUNT])
def test_first_cartridge_failures_end_abnormally(rig, case, how, step, reason):
    """603/604: the mount of volume 123 fails (no such cartridge; the operator
    cancels it); 606: the cartridge's label cannot be read. Abnormal end with
    the step, 710 table 140 cleared, nothing written."""
    name = rig.device_volume("ready")
    rig.empty_drive()
    op = None
    try:
        if how == "missing":
            rig.dev.call("tape delete %s --yes" % name)
        elif how == "cancel":
            rig.dev.call("mount policy operator")
            op = Operator(rig.dev, {name: "mount cancel"})
        else:
            rig.blank_label(rig.lib, name)
        before = rig.tapes_state()
        end, evs = rig.run_now("ready", during=op)
        assert_abnormal(rig, "ready", end, evs, step, reason)
        assert rig.tapes_state() == before
        if how == "nolabel":  # 602 ready -> 605 -> 606
            assert tape_flow(evs) == [(311, "", 0, 0)]
        else:  # 602 not ready -> 603
            assert tape_flow(evs) == [(311, "", 0, 0), (603, "", 0, 0)]
            assert [ev["volume"] for ev in evs if ev["event"] == "mount_request"] == [name]
    finally:
        rig.dev.call("mount policy auto")
        rig.renew_tape(name)


SPAN_FAILS = [
    ("705-operator-cancels", 705, "medium not present"),
    ("707-label-unreadable", 707, "label unreadable"),
    ("708-wrong-cartridge-answers", 708, "label is %(X)s, expected %(F2)s"),
]


@pytest.mark.parametrize("case,step,reason", SPAN_FAILS, ids=[c[0] for c in SPAN_FAILS])
def test_next_cartridge_failures_end_abnormally(rig, case, step, reason):
    """When the first cartridge fills, 704 asks for SSC002's counterpart: the
    operator cancels the mount (705), its label is unreadable (707), or the
    operator puts another cartridge in (708). Abnormal end with the step; the
    wrong cartridge is not written."""
    f1, f2, x = rig.device_volume("spanfail"), rig.name("F", 2), rig.name("X")
    rig.empty_drive()
    op = None
    try:
        if step == 705:
            rig.dev.call("mount policy operator")
            op = Operator(rig.dev, {f1: "mount ok", f2: "mount cancel"})
        elif step == 707:
            rig.new_tape(f2)
            rig.blank_label(rig.lib, f2)
            rig.empty_drive()
        else:
            rig.dev.call("mount policy operator")
            op = Operator(rig.dev, {f1: "mount ok", f2: "tape load " + x})
        before = rig.tapes_state()
        end, evs = rig.run_now("spanfail", during=op)
        assert_abnormal(rig, "spanfail", end, evs, step, reason % {"X": x, "F2": f2})
        assert tape_flow(evs) == [(311, "", 0, 0), (603, "", 0, 0), (609, f1, 0, 1), (614, f1, 0, 1),
                                  (703, f2, 1, 1), (704, f2, 1, 1)]
        after = rig.tapes_state()
        assert after[x] == before[x]
        if f2 in before:
            assert after[f2] == before[f2]
    finally:
        rig.dev.call("mount policy auto")
        rig.empty_drive()
        if f2 in rig.tapes_state():
            rig.dev.call("tape delete %s --yes" % f2)


# --- Fig. 7: the device type -----------------------------------------------------------

def test_no_device_at_the_address_ends_abnormally_at_307(rig):
    """306/307: INQUIRY at an address where the backup device board has no
    device fails -> 312 abnormal end; nothing in table 140 was set."""
    end, evs = rig.run_now("nodev")
    assert_abnormal(rig, "nodev", end, evs, 307, "unreadable")
    assert "no such device" in end["reason"]
    assert steps(evs) == []


@pytest.mark.virtual_only("puts a test peer on the backup device's end of the wire")
def test_device_neither_disk_nor_tape_310_and_unreadable_disk_label_503(rig, sim, tmp_path):
    """310 no: a device that is neither disk-like nor a tape (the emulator
    cannot present one: odddev.py answers INQUIRY as a "processor") -> 312.
    503 no: a disk whose label cannot be read -> 710 -> 312. Neither device
    receives a write."""
    log = str(tmp_path / "odddev.log")
    since = time.monotonic()
    odd = OddDevice(sim, rig.odd_proc, rig.odd_disk, log)
    try:
        inq = wait_link(rig.ctl, rig.odd_proc)
        assert inq["type"] == "unknown" and inq["type_code"] == 3
        end, evs = rig.run_now("odd_proc")
        assert_abnormal(rig, "odd_proc", end, evs, 310, "neither disk nor tape")
        assert steps(evs) == []  # neither 309 nor 311
        end, evs = rig.run_now("odd_disk")
        assert_abnormal(rig, "odd_disk", end, evs, 503, "label unreadable")
        assert steps(evs) == [309]
        assert step_table(evs, 309)["141"] == {"151_disk": 1, "152_mt": 0}
        reqs = odd.requests()
    finally:
        odd.close()
        rig.dev.after_boot(since)
    assert {a for a, _ in reqs} == {rig.odd_proc, rig.odd_disk}
    assert not [r for r in reqs if r[1] in WRITE_OPS]


# --- wrong or missing volume: abnormal end, nothing written, the schedule goes on -------------

def _wrong_tape(rig):
    x = rig.name("X")
    rig.empty_drive()
    rig.dev.call("tape load %s" % x)  # READY, with another label
    return "ready", 607, "label is %s, expected %s" % (x, rig.device_volume("ready")), [x], \
        lambda: rig.dev.call("tape unload")


def _missing_tape(rig):
    rig.empty_drive()
    f2 = rig.name("F", 2)
    if f2 in rig.tapes_state():
        rig.dev.call("tape delete %s --yes" % f2)
    return "spanfail", 704, "mount %s failed" % f2, [], lambda: rig.new_tape(f2)


def _disk_mismatch(rig):
    n, m = rig.name("N"), rig.device_volume("mismatch")
    rig.set_dev(rig.mismatch_addr, "disk " + n)

    def fix():
        if m not in rig.disks:
            rig.new_disk(m, "256K")
        rig.set_dev(rig.mismatch_addr, "disk " + m)
    return "mismatch", 504, "disk label is %s, table 100 says %s" % (n, m), [n], fix


WRONG = [("wrong-tape-607", _wrong_tape), ("missing-tape-704", _missing_tape),
         ("disk-label-mismatch-504", _disk_mismatch)]


@pytest.mark.parametrize("case,make", WRONG, ids=[c[0] for c in WRONG])
def test_wrong_or_missing_volume_then_next_scheduled_run(rig, case, make):
    """Wrong tape in the drive (607), the next tape missing when the first
    fills (704), the disk at the address has another label (504): the run the
    scheduler starts ends abnormally naming the step, the wrong volume is not
    written, and once the operator has put things right the next scheduled
    start runs the backup to a normal end. On real boards the two runs are
    started with `backup run` instead of the DS3231 alarm."""
    key, step, reason, wrong, fix = make(rig)
    wrong_tapes = {t: s for t, s in rig.tapes_state().items() if t in wrong}
    wrong_disks = {d: rig.disk_written(d) for d in wrong if d in rig.disks}
    first = rig.fire(key) if rig.sim else (None,) + rig.run_now(key)
    end, evs = first[1], first[2]
    assert_abnormal(rig, key, end, evs, step, reason)
    if rig.sim:
        assert [ev["entry"] for ev in rig.ctl.since(0, "alarm")][-1] == rig.entry(key)
    if step == 607:
        assert tape_flow(evs) == [(311, "", 0, 0)]  # 602 ready -> 605 -> 607
    elif step == 504:
        assert steps(evs) == [309] and step_table(evs, 309)["142_checked"] == 0
    else:
        assert step_table(evs, 704) == {"141": {"151_disk": 0, "152_mt": 1}, "142_checked": 1,
                                        "143_current": rig.name("F", 2), "144_mount_wait": 1}
    now = rig.tapes_state()
    assert {t: now[t] for t in wrong_tapes} == wrong_tapes
    assert {d: rig.disk_written(d) for d in wrong_disks} == wrong_disks
    fix()
    second = rig.fire(key) if rig.sim else (None,) + rig.run_now(key)
    assert_normal(rig, key, second[1], second[2])
    if rig.sim:
        assert second[0] - first[0] == datetime.timedelta(days=1)  # the next start of that entry
    now = rig.tapes_state()
    assert {t: now[t] for t in wrong_tapes} == wrong_tapes
    assert {d: rig.disk_written(d) for d in wrong_disks} == wrong_disks
    rig.empty_drive()


# --- timer 130: start times -------------------------------------------------------------

@pytest.mark.virtual_only("sets the DS3231 just before a start time")
def test_backup_starts_within_one_second_of_its_start_time(rig):
    """201/202: timer 130 (DS3231 alarm 1) equals start time 124 -> the backup
    starts. Measured on the board's own clock: `rtc get` the moment
    backup_started arrives, and the run's start time in the catalog."""
    rig.empty_drive()
    key = "timing"
    start = rig.next_start(key)
    since = time.monotonic()
    rig.ctl.call("rtc set " + iso(start - datetime.timedelta(seconds=3)))
    started = rig.ctl.wait_event("backup_started", since=since, timeout=15,
                                 match=lambda e: e["volume"] == rig.volume(key))
    at = rig.rtc()
    lag = time.monotonic() - since - 3
    end, evs = rig.wait_end(since, rig.volume(key))
    print("\nbackup_started read back at DS3231 %s for start %s (host clock: %.3f s after the start)"
          % (iso(at), iso(start), lag))
    assert start <= at <= start + datetime.timedelta(seconds=1)
    rec = rig.ctl.call("backup show %d" % started["run"])
    assert start <= parse_iso(rec["start"]) <= start + datetime.timedelta(seconds=1)
    alarm = rig.ctl.since(since, "alarm")
    assert [(a["entry"], a["start"]) for a in alarm] == [(rig.entry(key), rig.entries[rig.entry(key)]["start"])]
    assert_normal(rig, key, end, evs)
    rig.empty_drive()


@pytest.mark.virtual_only("powers the controller off across a start time")
def test_start_missed_while_off_is_caught_up_at_boot(rig, sim):
    """A start time that passes while the controller is off: at boot the
    controller reports missed_start and (catch_up = true) runs the backup."""
    rig.empty_drive()
    # a day on: every start the scheduler had planned before lies in the past then
    start = rig.next_start("timing") + datetime.timedelta(days=1)
    rig.ctl.call("rtc set " + iso(start - datetime.timedelta(seconds=3)))
    sim.power("controller", "off")  # at once: the plan for the new time is saved before `rtc set` answers
    time.sleep(6)
    since = time.monotonic()
    sim.power("controller", "on")
    rig.ctl.after_boot(since)
    end, evs = rig.wait_end(since, rig.volume("timing"), timeout=60)
    missed = rig.ctl.since(since, "missed_start")
    assert [(m["entry"], m["start"], m["catch_up"]) for m in missed] == \
        [(rig.entry("timing"), rig.entries[rig.entry("timing")]["start"], True)]
    assert not rig.ctl.since(since, "alarm")  # the start itself passed while off
    assert_normal(rig, "timing", end, evs)
    rec = rig.ctl.call("backup show %d" % end["run"])
    assert parse_iso(rec["start"]) > start
    rig.empty_drive()


# --- stale backups ------------------------------------------------------------------

def _stale_then_force(rig, rid, key):
    vol = rig.volume(key)
    new = os.urandom(512)
    rig.ctl.call("vol write %s 0 %s" % (vol, base64.b64encode(new).decode()))
    state = {r["id"]: r["state"] for r in rig.ctl.call("backup list")["backups"]}
    assert state[rid] == "stale"
    with pytest.raises(ConsoleError) as e:
        rig.ctl.call("restore %d" % rid, timeout=120)
    assert "--force" in str(e.value)
    assert base64.b64decode(rig.ctl.call("vol read %s 0" % vol)["data"]) == new  # untouched
    r = rig.ctl.call("restore %d --force" % rid, timeout=120)
    assert (r["run"], r["match"], r["to"]) == (rid, True, vol)
    assert rig.ctl.call("vol sha %s" % vol, timeout=60)["sha256"] == sha(rig.data[vol])
    rig.empty_drive()


def test_changed_volume_makes_its_backup_stale_and_restore_needs_force(rig):
    """After the volume changes, `backup list` says stale, and `restore ID`
    over the newer data is refused without --force; with it the volume is the
    backup again."""
    rig.empty_drive()
    end, evs = rig.run_now("stale")
    assert_normal(rig, "stale", end, evs)
    _stale_then_force(rig, end["run"], "stale")


@pytest.mark.virtual_only("sets the DS3231 back")
def test_change_after_the_clock_was_set_back_still_makes_the_backup_stale(rig):
    """The DS3231 set back (corrected, or reset by a flat cell) after a backup:
    a change made then carries an older time than the backup's end, and is a
    change all the same."""
    rig.empty_drive()
    end, evs = rig.run_now("stale")
    assert_normal(rig, "stale", end, evs)
    rec = rig.ctl.call("backup show %d" % end["run"])
    rig.ctl.call("rtc set " + iso(parse_iso(rec["start"]) - datetime.timedelta(hours=1)))
    _stale_then_force(rig, end["run"], "stale")


def test_backup_list_still_answers_with_a_long_catalog(rig):
    """The catalog grows by a run or more a day: with 40 runs in it `backup
    list` still answers with the newest ones and how many there are; --last N
    goes further back and `backup show ID` has every record."""
    end = None
    while end is None or end["run"] < 40:  # run ids count the catalog's records
        end, evs = rig.run_now("nodev")
    r = rig.ctl.call("backup list")
    assert r["count"] >= 40
    ids = [row["id"] for row in r["backups"]]
    assert ids == sorted(ids) and len(ids) < r["count"] and "older runs" in r["text"]
    assert ids[-1] == end["run"] and r["backups"][-1]["state"] == "failed"
    assert [row["id"] for row in rig.ctl.call("backup list --last 3")["backups"]] == ids[-3:]
    shown = rig.ctl.call("backup show %d" % ids[0])
    assert shown["run"] == ids[0] and "sections" in shown


# --- interruptions ------------------------------------------------------------------

@pytest.mark.virtual_only("cuts the wire")
def test_link_cut_in_the_middle_of_a_backup(rig, sim):
    """A 5 s cut of cable 14 in the middle of a disk backup: the run carries on
    once the link is back and ends normally; the restore is identical."""
    vol = rig.volume("cut")
    downs = rig.ctl.call("link stats")["downs"]
    cut = []

    def cut_once():
        prog = rig.ctl.since(since, "backup_progress")
        if prog and not cut:
            cut.append(prog[0]["bytes"])
            sim.cut(5)

    since = time.monotonic()
    end, evs = rig.run_now("cut", during=cut_once)
    assert cut and cut[0] < len(rig.data[vol])  # cut in the middle
    assert rig.ctl.call("link stats")["downs"] > downs  # the link did go down
    assert_normal(rig, "cut", end, evs)
    for ev in rig.ctl.since(since, "backup_started")[1:]:  # if it had to restart: a resume
        assert ev["resume"] and ev["run"] == end["run"]
    r, restored = rig.restore_to_scratch(end["run"], len(rig.data[vol]))
    assert r["match"] and restored == sha(rig.data[vol])


@pytest.mark.virtual_only("power-cuts the controller")
def test_controller_power_cut_mid_backup_resumes_from_the_checkpoint(rig, sim):
    """The controller loses power in the middle of a tape backup, on its
    second cartridge; at boot it resumes the unfinished run from the catalog
    checkpoint by itself, and the restore is identical."""
    vol = rig.volume("kill")
    carts = [rig.name("K", 1), rig.name("K", 2)]
    rig.empty_drive()
    since = time.monotonic()
    rig.ctl.call("backup run %d" % rig.entry("kill"))
    prog = rig.ctl.wait_event("backup_progress", since=since, timeout=60,
                              match=lambda e: e["bytes"] >= 128 * KIB)
    assert prog["volume"] == carts[1]
    sim.power("controller", "off")
    run = prog["run"]
    time.sleep(0.5)
    boot = time.monotonic()
    sim.power("controller", "on")
    rig.ctl.after_boot(boot)
    end, evs = rig.wait_end(boot, vol, timeout=60)
    assert end["run"] == run
    resumed = rig.ctl.since(boot, "backup_started")[0]
    assert resumed["resume"] and resumed["run"] == run
    checkpoint = prog["bytes"] // CHUNK
    assert checkpoint <= resumed["chunk"] < -(-len(rig.data[vol]) // CHUNK) and resumed["chunk"] % 32 == 0
    assert_normal(rig, "kill", end, evs)
    rec = rig.ctl.call("backup show %d" % run)
    assert rec["tapes"] == carts
    rig.empty_drive()
    r, restored = rig.restore_to_scratch(run, len(rig.data[vol]))
    assert r["match"] and restored == sha(rig.data[vol])
    rig.empty_drive()


@pytest.mark.virtual_only("power-cycles the backup device board")
def test_backup_device_restart_during_a_mount_resumes(rig, sim):
    """The backup device board restarts while the controller waits for the
    second cartridge (705): the link session restarts, the controller reports
    the run interrupted and resumes it once the link is back; the operator
    mounts again and the restore is identical."""
    vol = rig.volume("kill")
    carts = [rig.name("K", 1), rig.name("K", 2)]
    rig.empty_drive()
    rig.dev.call("mount policy operator")
    boot = []

    def restart(name):
        if not boot:
            boot.append(time.monotonic())
            sim.power("backupdev", "cycle")
            rig.dev.after_boot(boot[0])
            op.since = boot[0]
            op.seen = []
        else:
            return "mount ok"

    op = Operator(rig.dev, {carts[0]: "mount ok", carts[1]: restart})
    try:
        since = time.monotonic()
        end, evs = rig.run_now("kill", during=op)
    finally:
        rig.dev.call("mount policy auto")
    assert boot
    inter = rig.ctl.since(since, "backup_interrupted")
    assert inter and inter[0]["run"] == end["run"], (end, [ev for ev in evs if ev["event"] != "backup_progress"])
    resumed = rig.ctl.since(since, "backup_started")[1:]
    assert resumed and all(ev["resume"] for ev in resumed)
    assert_normal(rig, "kill", end, evs)
    rig.empty_drive()
    r, restored = rig.restore_to_scratch(end["run"], len(rig.data[vol]))
    assert r["match"] and restored == sha(rig.data[vol])
    rig.empty_drive()


@pytest.mark.virtual_only("injects write errors into the backup device's SD card model")
def test_sd_card_refusing_writes_on_the_device_ends_the_backup_abnormally(rig, sim):
    """The backup device's card answers every write with the write-error token
    (`backupctl sim sd backupdev errors --write-rate 1`): the disk's WRITE
    fails, and the run ends abnormally with its step, never as a success.
    Cleared, the device reopens its files and the same entry backs up again."""
    since = time.monotonic()
    sim.sd("backupdev", "errors", write_rate=1.0)
    try:
        end, evs = rig.run_now("disk")
        # the disk header, written first, fails: the device's sense ends the run
        # at 312 (the engine gives that write no step of its own)
        assert_abnormal(rig, "disk", end, evs, 312, "HARDWARE ERROR: internal target failure")
        assert not [ev for ev in evs if ev["event"] == "backup_ended_normally"]
    finally:
        sim.sd("backupdev", "clear")
    rig.dev.wait_event("sd_io_error", since=since, timeout=30)  # the device saw the errors, reopened its files
    end, evs = rig.run_now("disk")
    assert_normal(rig, "disk", end, evs)


@pytest.mark.virtual_only("pulls the controller's SD card before a power-on")
def test_no_sd_card_at_boot_then_inserted_the_backup_runs_without_a_reboot(rig, sim):
    """The controller starts without its card: the console answers, `status`
    says the card is missing and what does not run; the card put in, the
    volumes, catalog and scheduler come back and a backup runs, same boot."""
    sim.sd("controller", "eject")
    try:
        sim.power("controller", "cycle")
        rig.ctl.sync(timeout=60)
        boots = sim.call("status")["boards"]["controller"]["boots"]
        st = rig.ctl.call("status")
        assert st["sd"].startswith("missing: ") and "schedule" in st["not_running"]
        with pytest.raises(ConsoleError) as e:
            rig.ctl.call("backup list")
        assert "no SD card" in str(e.value)
        since = time.monotonic()
        sim.sd("controller", "insert")
        rig.ctl.wait_event("sd_mounted", since=since, timeout=30)
    finally:
        sim.sd("controller", "clear")
    end, evs = rig.run_now("disk")
    assert_normal(rig, "disk", end, evs)
    assert sim.call("status")["boards"]["controller"]["boots"] == boots
