"""Issue 3, parts 2 and 4: device commands board to board. The controller's
`link ...` commands drive the tape library and a disk on the backup device
board over the UART link (cable 14); data is made on the controller
(`--pattern`) and checked here by SHA-256."""
import base64
import hashlib
import os
import random
import string
import threading
import time

import pytest

from host_tools.console import ConsoleError

BLOCK = 2048  # the link's largest block (devcmd.BLOCK_MAX)


def vol_name(prefix="L"):
    # Unique per run: the board pair is shared by the whole session.
    return prefix + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(5))


def pattern_block(seed, i, size=BLOCK):
    # What `link write --pattern seed` sends as its block i (controller/linkdiag.pattern).
    d = hashlib.sha256(b"%d:%d" % (seed, i)).digest()
    return (d * (size // 32 + 1))[:size]


def pattern_sha(seed, first, count, size=BLOCK):
    h = hashlib.sha256()
    for i in range(first, first + count):
        h.update(pattern_block(seed, i, size))
    return h.hexdigest()


def b64(data):
    return base64.b64encode(data).decode()


@pytest.fixture
def library(backupdev, controller):
    """new_tape(capacity) -> name: cartridges in an auto-mount library with a
    short robot delay. Afterwards the drive is emptied, the cartridges deleted
    and the mount settings put back."""
    s = backupdev.call("status")
    backupdev.call("mount policy auto")
    backupdev.call("mount delay 300")
    made = []

    def new_tape(capacity="1M", extra=""):
        name = vol_name()
        backupdev.call("tape new %s --capacity %s %s" % (name, capacity, extra))
        made.append(name)
        return name

    yield new_tape
    backupdev.sync()  # a test may have power-cycled the board
    backupdev.call("mount cancel", check=False)
    if backupdev.call("status")["drive"]:
        backupdev.call("tape unload")
    for name in made:
        backupdev.call("tape delete %s --yes" % name)
    backupdev.call("mount policy %s" % s["policy"])
    backupdev.call("mount delay %d" % s["mount_delay_ms"])


def mount(controller, name):
    controller.call("link mount 0 %s --wait 20" % name, timeout=30)
    assert controller.call("link label 0")["volume"] == name


def position(controller):
    p = controller.call("link pos 0")
    return {k: p[k] for k in ("block", "file", "bop", "ew", "eod", "used", "left")}


def sense_of(con, line):
    with pytest.raises(ConsoleError) as e:
        con.call(line)
    return str(e.value)


@pytest.fixture
def disk_at(backupdev):
    """A 64 KiB disk at link address 12 (removed afterwards)."""
    name = vol_name("D")
    backupdev.call("disk new %s --size 64K" % name)
    backupdev.call("dev set 12 disk %s" % name)
    yield name
    backupdev.call("dev remove 12")
    backupdev.call("disk delete %s --yes" % name)


def test_inquiry_tells_tape_library_from_disk_on_one_link(controller, disk_at):
    tape = controller.call("link inquiry 0")
    assert (tape["type"], tape["removable"], tape["block_max"]) == ("library", True, BLOCK)
    disk = controller.call("link inquiry 12")
    assert (disk["type"], disk["removable"], disk["capacity"]) == ("disk", False, 65536)
    assert disk_at in disk["product"]
    # an address with no device: the engine's "device type unreadable" (Fig. 7 step 307)
    assert "05/25/00" in sense_of(controller, "link inquiry 11")
    assert "05/25/00" in sense_of(controller, "link tur 11")


def test_disk_blocks_round_trip_at_an_lba(controller, disk_at):
    cap = controller.call("link capacity 12")
    assert (cap["blocks"], cap["block_size"]) == (128, 512)
    assert controller.call("link label 12")["volume"] == disk_at
    data = os.urandom(1024)
    controller.call("link bwrite 12 5 %s" % b64(data))
    back = controller.call("link bread 12 5 2")
    assert base64.b64decode(back["data"]) == data
    assert base64.b64decode(controller.call("link bread 12 100 4")["data"]) == bytes(2048)  # never written
    last = os.urandom(512)
    controller.call("link bwrite 12 127 %s" % b64(last))
    assert base64.b64decode(controller.call("link bread 12 127")["data"]) == last
    assert "05/21/00" in sense_of(controller, "link bread 12 127 2")  # past the end
    assert "05/21/00" in sense_of(controller, "link bwrite 12 128 %s" % b64(last))
    assert "05/24/00" in sense_of(controller, "link bwrite 12 0 %s" % b64(b"x" * 100))  # not whole blocks
    assert "05/20/00" in sense_of(controller, "link rewind 12")  # a tape command to a disk


def test_mount_is_not_ready_while_the_robot_moves_then_reads_the_label(library, backupdev, controller):
    name = library("1M")
    backupdev.call("mount delay 1500")
    controller.call("link mount 0 %s" % name)
    assert "NOT READY: becoming ready (02/04/01)" in sense_of(controller, "link tur 0")
    assert controller.call("link mount 0 %s --wait 20" % name, timeout=30)["waited_ms"] > 0
    controller.call("link tur 0")
    assert controller.call("link label 0")["volume"] == name
    pos = controller.call("link pos 0")
    assert (pos["block"], pos["file"], pos["used"]) == (1, 0, 80)
    assert controller.call("link inquiry 0")["capacity"] == 1024 * 1024
    # UNLOAD keeps the cartridge in the drive until LOAD
    controller.call("link unload 0")
    assert "02/04/02" in sense_of(controller, "link tur 0")
    controller.call("link load 0")
    assert controller.call("link pos 0")["bop"] is True


def test_unknown_volume_is_no_medium(library, controller):
    name = library("1M")
    mount(controller, name)
    err = sense_of(controller, "link mount 0 %s" % vol_name())
    assert "NOT READY: medium not present (02/3A/00)" in err
    controller.call("link tur 0")  # what was in the drive stays there
    assert controller.call("link label 0")["volume"] == name


def test_operator_answers_mount_requests(library, backupdev, controller):
    name = library("1M")
    backupdev.call("mount policy operator")
    t0 = time.monotonic()
    controller.call("link mount 0 %s" % name)
    ev = backupdev.wait_event("mount_request", since=t0, match=lambda e: e.get("volume") == name)
    assert ev["volume"] == name
    assert "02/04/01" in sense_of(controller, "link tur 0")
    assert backupdev.call("mount ok")["mounted"] == name
    controller.call("link tur 0")
    assert controller.call("link label 0")["volume"] == name
    # a volume the library does not have: the operator can only cancel
    missing = vol_name()
    controller.call("link mount 0 %s" % missing)
    backupdev.wait_event("mount_request", since=t0, match=lambda e: e.get("volume") == missing)
    with pytest.raises(ConsoleError, match="no cartridge %s" % missing):
        backupdev.call("mount ok")
    assert "02/04/01" in sense_of(controller, "link tur 0")
    assert backupdev.call("mount cancel")["cancelled"] == missing
    assert "02/3A/00" in sense_of(controller, "link tur 0")


def test_early_warning_then_overflow_trailer_fits_and_data_reads_back(library, controller):
    # 512 KiB, not more: every block crosses the paced wire twice (written,
    # read back), and what is tested happens at the last 64 KiB of any size
    cap, ew, label = 512 * 1024, 64 * 1024, 80
    name = library("%dK" % (cap // 1024), "--early-warning %dK" % (ew // 1024))
    mount(controller, name)
    w = controller.call("link write 0 --pattern 11 --count 2000", timeout=300)
    print("\nwrite: %s" % w["text"])
    # block i ends at 80 + (i + 1) * 2048: early warning from the first block
    # past the end - 64 KiB, overflow for the first one past the end
    first_past = lambda limit: -(-(limit - label) // 2048) - 1  # noqa: E731
    n = first_past(cap)
    assert w["ew"] and w["ew_block"] == first_past(cap - ew)
    assert w["blocks"] == n and "VOLUME OVERFLOW" in w["error"] and "0D/00/02" in w["error"]
    assert w["sha256"] == pattern_sha(11, 0, n)
    # the trailer still fits after early warning, each write saying so
    trailer = b"EOF1" + b"%-76s" % name.encode()
    assert controller.call("link weof 0")["ew"] is True
    t = controller.call("link write 0 %s" % b64(trailer))
    assert t["blocks"] == 1 and t["ew"] is True
    controller.call("link weof 0 2")
    err = sense_of(controller, "link write 0 --pattern 11 --count 1")  # nothing written past the end
    assert "0D/00/02" in err
    pos = controller.call("link pos 0")
    assert pos["ew"] and pos["eod"] and pos["file"] == 3 and pos["block"] == 1 + n + 1 + 1 + 2
    controller.call("link rewind 0")
    assert controller.call("link label 0")["volume"] == name
    r = controller.call("link read 0 --count 2000", timeout=300)
    print("read:  %d blocks in %.1f s, %.1f KiB/s" % (r["blocks"], r["seconds"], r["kib_s"]))
    assert (r["blocks"], r["sha256"], r["stop"]) == (n, w["sha256"], "filemark")
    assert base64.b64decode(controller.call("link read 0")["data"]) == trailer
    assert [controller.call("link read 0")["stop"] for _ in range(3)] == ["filemark", "filemark", "eod"]
    # SPACE: back over the two trailing filemarks, forward to end of data
    controller.call("link space 0 -2")
    assert controller.call("link pos 0")["file"] == 1
    controller.call("link space 0 --eod")
    assert controller.call("link pos 0")["eod"] is True


@pytest.mark.virtual_only("injects faults on the virtual wire")
def test_data_survives_a_noisy_wire_and_a_cut(library, controller, wire):
    name = library("1M")
    mount(controller, name)
    before = controller.call("link stats")
    wire.faults(ber=1e-4, drop=0.02, stall_ms=200, stall_every_s=2)
    out = {}
    writer = threading.Thread(target=lambda: out.update(
        controller.call("link write 0 --pattern 23 --count 8", timeout=240)))
    writer.start()
    time.sleep(2)
    wire.cut(5)  # in the middle of the transfer
    writer.join()
    print("\nwrite with faults and a 5 s cut: %s" % out["text"])
    assert (out["blocks"], out["error"]) == (8, None)
    controller.call("link rewind 0")
    assert controller.call("link label 0")["volume"] == name
    r = controller.call("link read 0 --count 100", timeout=240)
    print("read back with faults: %d blocks in %.1f s, slowest %d ms" % (r["blocks"], r["seconds"], r["slowest_ms"]))
    assert (r["blocks"], r["sha256"], r["stop"]) == (8, pattern_sha(23, 0, 8), "eod")
    wire.clear()
    stats = controller.call("link stats")
    grew = {k: stats[k] - before[k] for k in ("retransmits", "crc_errors", "downs")}
    print("link: %(retransmits)d retransmits, %(crc_errors)d CRC errors, %(downs)d times down" % grew)
    assert stats["up"] and grew["retransmits"] > 0 and grew["crc_errors"] > 0 and grew["downs"] > 0
    controller.call("link tur 0")  # and it keeps working with the faults gone


@pytest.mark.virtual_only("cuts the backup device board's power")
def test_power_cut_during_writes_keeps_every_acknowledged_block(sim, library, backupdev, controller):
    name = library("1M")
    mount(controller, name)
    acked = 0  # pattern blocks on the tape, every one acknowledged or read back
    for delay in (0.4, 1.1, 1.9):
        out = {}
        writer = threading.Thread(target=lambda: out.update(controller.call(
            "link write 0 --pattern 31 --first %d --count 400" % acked, timeout=120, check=False)))
        writer.start()
        time.sleep(delay)
        sim.power("backupdev", "off")
        time.sleep(0.3)
        sim.power("backupdev", "on")
        writer.join()
        # cut short: how many blocks the device acknowledged before it died
        got = out["blocks"] if out["ok"] else 0
        assert not out["ok"] or out["error"], out
        backupdev.sync()
        mount(controller, name)  # the drive is empty after a reboot
        r = controller.call("link read 0 --count 1000", timeout=120)
        assert r["stop"] == "eod"
        # every acknowledged block, and at most the one in flight, which is whole
        assert r["blocks"] in (acked + got, acked + got + 1), (acked, got, r)
        assert r["sha256"] == pattern_sha(31, 0, r["blocks"])
        acked = r["blocks"]
        pos = controller.call("link pos 0")
        assert pos["eod"] and pos["block"] == 1 + acked
    assert acked > 0
    listed = {t["name"]: t for t in backupdev.call("tape list")["tapes"]}[name]
    assert listed["blocks"] == 1 + acked and listed["used"] == 80 + acked * BLOCK


BAD_LINES = [
    ("link inquiry", "wrong number of arguments"),
    ("link inquiry 16", "address must be 0-15"),
    ("link inquiry zero", "address must be a number"),
    ("link write 0", "wrong number of arguments"),
    ("link write 0 !!!!", "base64"),
    ("link write 0 --pattern 1 --size 9999", "size must be 1-2048"),
    ("link write 0 --pattern 1 --count 0", "count at least 1"),
    ("link write 0 --pattern x", "pattern must be a number"),
    ("link read 0 0", "maxlen must be 1-2048"),
    ("link read 0 --count", "needs a value"),
    ("link mount 0", "wrong number of arguments"),
    ("link weof 0 many", "count must be a number"),
    ("link space 0", "wrong number of arguments"),
    ("link bwrite 12 0 ???", "base64"),
    ("link stats now", "no arguments"),
    ("link frob 0", "needs one of"),
]


def test_wrong_input_on_the_controller_gets_one_error_and_moves_nothing(library, controller):
    name = library("1M")
    mount(controller, name)
    controller.call("link write 0 --pattern 3 --count 2")
    before = position(controller)
    for line, words in BAD_LINES:
        r = controller.call(line, check=False)
        assert not r["ok"] and words in r["error"], (line, r)
    # a well-formed command the device refuses: a bad volume name, a disk command to a tape
    assert "05/24/00" in sense_of(controller, "link mount 0 ../x")
    assert "05/20/00" in sense_of(controller, "link capacity 0")
    assert position(controller) == before
    controller.call("link rewind 0")
    assert controller.call("link label 0")["volume"] == name
    r = controller.call("link read 0 --count 10")
    assert (r["blocks"], r["sha256"]) == (2, pattern_sha(3, 0, 2))
