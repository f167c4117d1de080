"""Issue 3, part 3: the backup device board's own console. Cartridges and disks
on its SD card, the device address table, the mount policy; every wrong input
gets one clear error and changes nothing; the configuration survives a reboot."""
import json
import random
import string
import subprocess

import pytest

from host_tools import FIRMWARE
from host_tools.console import ConsoleError
from host_tools.sim.board import micropython_exe


def vol_name(prefix="T"):
    # Unique per run: the board pair is shared by the whole session.
    return prefix + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(5))


def inventory(backupdev):
    return (backupdev.call("tape list")["tapes"], backupdev.call("disk list")["disks"],
            backupdev.call("dev list")["devices"], backupdev.call("status")["policy"])


@pytest.fixture
def tape(backupdev):
    name = vol_name()
    backupdev.call("tape new %s --capacity 256K --early-warning 16K" % name)
    yield name
    if backupdev.call("status")["drive"] == name:
        backupdev.call("tape unload")
    backupdev.call("tape delete %s --yes" % name)


def test_new_cartridge_is_listed_in_a_slot_with_its_label(backupdev, tape):
    t = {x["name"]: x for x in backupdev.call("tape list")["tapes"]}[tape]
    assert t["capacity"] == 256 * 1024 and t["early_warning"] == 16 * 1024
    assert t["blocks"] == 1 and t["used"] == 80  # the VOL1 label, nothing else
    assert t["location"] == "slot" and t["slot"] >= 1
    slots = [x["slot"] for x in backupdev.call("tape list")["tapes"]]
    assert len(slots) == len(set(slots))


def test_default_early_warning_is_a_32nd_of_the_capacity(backupdev):
    name = vol_name()
    r = backupdev.call("tape new %s --capacity 2M" % name)
    try:
        assert r["early_warning"] == 64 * 1024
    finally:
        backupdev.call("tape delete %s --yes" % name)
    assert name not in [t["name"] for t in backupdev.call("tape list")["tapes"]]


def test_load_and_unload_by_hand(backupdev, tape):
    backupdev.call("tape load %s" % tape)
    s = backupdev.call("status")
    assert s["drive"] == tape and s["ready"]
    t = {x["name"]: x for x in backupdev.call("tape list")["tapes"]}[tape]
    assert t["location"] == "drive"
    with pytest.raises(ConsoleError, match="in the drive"):
        backupdev.call("tape delete %s --yes" % tape)
    backupdev.call("tape unload")
    assert backupdev.call("status")["drive"] is None
    with pytest.raises(ConsoleError, match="drive is empty"):
        backupdev.call("tape unload")


def test_disk_new_list_delete(backupdev):
    name = vol_name("D")
    backupdev.call("disk new %s --size 64K" % name)
    try:
        d = {x["name"]: x for x in backupdev.call("disk list")["disks"]}[name]
        assert d["size"] == 65536 and d["blocks"] == 128 and d["written"] == 0
        with pytest.raises(ConsoleError, match="already exists"):
            backupdev.call("disk new %s --size 8M" % name)
    finally:
        backupdev.call("disk delete %s --yes" % name)
    assert name not in [d["name"] for d in backupdev.call("disk list")["disks"]]


def test_default_addresses(backupdev):
    devs = {d["addr"]: d["device"] for d in backupdev.call("dev list")["devices"]}
    assert devs.get(0) == "library"


BAD_LINES = [
    # (command, words the error must contain)
    ("tape new ../x --capacity 1M", "bad volume name"),
    ("tape new a/b --capacity 1M", "bad volume name"),
    ("tape new ssc001 --capacity 1M", "bad volume name"),
    ("tape new TOOLONG1 --capacity 1M", "bad volume name"),
    ("tape new SSC0.1 --capacity 1M", "bad volume name"),
    ("tape new --capacity 1M", "one volume name"),
    ("tape new ZZ0001", "--capacity is required"),
    ("tape new ZZ0001 --capacity 2X", "bad size"),
    ("tape new ZZ0001 --capacity 0", "positive"),
    ("tape new ZZ0001 --capacity -1M", "positive"),
    ("tape new ZZ0001 --capacity 1K", "4K to 4G"),
    ("tape new ZZ0001 --capacity 8G", "4K to 4G"),
    ("tape new ZZ0001 --capacity 1M --early-warning 512K", "less than half"),
    ("tape new ZZ0001 --capacity 1M --early-warning", "needs a value"),
    ("tape new ZZ0001 --capacity 1M --colour red", "unknown option"),
    ("tape delete ZZ0001 --yes", "no cartridge ZZ0001"),
    ("tape delete ../.. --yes", "bad volume name"),
    ("tape load ZZ0001", "no cartridge ZZ0001"),
    ("tape list extra", "no arguments"),
    ("disk new ../d --size 1M", "bad volume name"),
    ("disk new ZZD001 --size 5000", "multiple of 512"),
    ("disk new ZZD001 --size 1K", "4K to 4G"),
    ("disk new ZZD001", "--size is required"),
    ("disk delete ZZD001 --yes", "no disk ZZD001"),
    ("dev set 16 library", "address must be 0-15"),
    ("dev set x library", "address must be a number"),
    ("dev set 3 tape", "library` or `disk NAME"),
    ("dev set 3 disk ../x", "bad volume name"),
    ("dev set 3", "an address and a device"),
    ("dev remove 14", "no device at address 14"),
    ("mount policy sometimes", "auto or operator"),
    ("mount delay soon", "must be a number"),
    ("mount delay 9999999", "0-600000"),
    ("mount ok", "no mount request"),
    ("mount cancel", "no mount is under way"),
]


def test_wrong_input_gets_one_clear_error_and_changes_nothing(backupdev, tape):
    before = inventory(backupdev)
    for line, words in BAD_LINES:
        r = backupdev.call(line, check=False)
        assert not r["ok"] and words in r["error"], (line, r)
    # a duplicate is refused, and deleting needs --yes
    for line, words in (("tape new %s --capacity 1M" % tape, "already exists"),
                        ("tape delete %s" % tape, "add --yes")):
        r = backupdev.call(line, check=False)
        assert not r["ok"] and words in r["error"], (line, r)
    # a cartridge bigger than the card's free space (whatever card it is)
    free = backupdev.call("sd info")["free_bytes"]
    if free < 4 << 30:
        r = backupdev.call("tape new ZZ0001 --capacity %dK" % (free // 1024 + 1), check=False)
        assert not r["ok"] and "SD card has free" in r["error"], r
    assert inventory(backupdev) == before
    assert backupdev.call("version")["ok"]


def test_library_at_a_second_address_is_refused(backupdev):
    devs = {d["addr"]: d["device"] for d in backupdev.call("dev list")["devices"]}
    assert 0 in devs
    with pytest.raises(ConsoleError, match="already at address 0"):
        backupdev.call("dev set 9 library")


def test_configuration_and_cartridges_survive_a_reboot(backupdev, tape):
    status = backupdev.call("status")
    old_policy, old_delay = status["policy"], status["mount_delay_ms"]
    disk = vol_name("D")
    try:
        backupdev.call("mount policy operator")
        backupdev.call("mount delay 1234")
        backupdev.call("dev set 13 disk %s" % disk)
        backupdev.call("reboot")
        backupdev.sync()
        s = backupdev.call("status")
        assert (s["policy"], s["mount_delay_ms"], s["drive"]) == ("operator", 1234, None)
        devs = {d["addr"]: d for d in backupdev.call("dev list")["devices"]}
        assert devs[13]["device"] == "disk " + disk and not devs[13]["present"]
        assert tape in [t["name"] for t in backupdev.call("tape list")["tapes"]]
    finally:
        backupdev.call("dev remove 13", check=False)
        backupdev.call("mount policy %s" % old_policy)
        backupdev.call("mount delay %d" % old_delay)


# Runs under the real `micropython` with the firmware's tape module on a FAT
# image in RAM. Every sector write is logged with how many blocks the drive
# had acknowledged; each prefix of that log is a power cut at that instant.
POWER_CUT_SCRIPT = r"""
import sys, vfs, json, hashlib
sys.path[:0] = [FW + "/lib", FW]
from backupdev import store, tape
from devcmd import SenseError, SPACE_BLOCKS, SPACE_EOD
import ansilabel

class RamDisk:
    def __init__(s, data):
        s.data, s.log, s.acked = data, None, 0
    def readblocks(s, n, buf):
        buf[:] = s.data[n * 512:n * 512 + len(buf)]
    def writeblocks(s, n, buf):
        s.data[n * 512:n * 512 + len(buf)] = buf
        if s.log is not None:
            s.log.append((n, bytes(buf), s.acked))
    def ioctl(s, op, arg):
        return len(s.data) // 512 if op == 4 else 512 if op == 5 else 0

def blk(i):
    return (hashlib.sha256(b"%d" % i).digest() * 22)[:700]

def contents(disk, meta):
    vfs.mount(vfs.VfsFat(disk), "/sd")
    t = tape.Tape("SSC001", meta, writable=False)
    buf = memoryview(bytearray(2048))
    got = []
    while True:
        try:
            got.append(bytes(buf[:t.read(buf)]))
        except SenseError as e:
            if not e.filemark:  # end of data, or a damaged block
                got += [] if e.eod else [str(e)]
                break
            got.append("FM")
    t.close()
    vfs.umount("/sd")
    return got

def replay(base, log, meta, ok):
    bad = []
    for k in range(len(log) + 1):
        img = bytearray(base)
        for n, b, _ in log[:k]:
            img[n * 512:n * 512 + len(b)] = b
        acked = log[k - 1][2] if k else 0
        got = contents(RamDisk(img), meta)
        if not ok(acked, got):
            bad.append([k, acked, len(got)])
    return bad

disk = RamDisk(bytearray(1024 * 512))
vfs.VfsFat.mkfs(disk)
vfs.mount(vfs.VfsFat(disk), "/sd")
store.ensure_dir(store.TAPES)
tape.create("SSC001", 256 * 1024, 8 * 1024, 1)
meta = tape.read_meta("SSC001")
buf = memoryview(bytearray(2048))
t = tape.Tape("SSC001", meta)
t.label(buf)
for i in range(60):  # an index of several sectors
    t.write(blk(i))
t.close()
vfs.umount("/sd")
old = [ansilabel.vol1("SSC001")] + [blk(i) for i in range(70)] + ["FM"]
result = {}

# 1. appending data blocks and a filemark
base = bytes(disk.data)
vfs.mount(vfs.VfsFat(disk), "/sd")
t = tape.Tape("SSC001", meta)
t.space(SPACE_EOD, 0)
disk.log = []
for i in range(60, 70):
    disk.acked = i - 60
    t.write(blk(i))
disk.acked = 10
t.write_filemarks(1)
disk.acked = 11
t.close()
vfs.umount("/sd")
log, disk.log = disk.log, None
# every acknowledged block is there, then at most the one in flight, whole
result["append"] = [len(log), replay(base, log, meta, lambda a, got: got == old[:len(got)]
                                     and 61 + a <= len(got) <= 62 + a)]

# 2. writing in the middle cuts the tape there
base = bytes(disk.data)
vfs.mount(vfs.VfsFat(disk), "/sd")
t = tape.Tape("SSC001", meta)
t.label(buf)
t.space(SPACE_BLOCKS, 5)
disk.log, disk.acked = [], 0
t.write(b"X" * 300)
disk.acked = 1
t.write(b"Y" * 300)
disk.acked = 2
t.close()
vfs.umount("/sd")
log, disk.log = disk.log, None
new = old[:6] + [b"X" * 300, b"Y" * 300]
# before the write is acknowledged: a prefix of the old tape, at least up to
# the write position; after: the new tape up to what was acknowledged
result["overwrite"] = [len(log), replay(base, log, meta, lambda a, got: len(got) >= 6 + a and (
    got == new[:len(got)] or (a == 0 and got == old[:len(got)])))]
print(json.dumps(result))
"""


def test_a_power_cut_at_any_sector_write_leaves_the_cartridge_consistent(tmp_path):
    script = tmp_path / "powercut.py"
    script.write_text("FW = %r\n" % FIRMWARE + POWER_CUT_SCRIPT)
    out = subprocess.run([micropython_exe(), "-X", "heapsize=16m", str(script)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for case, (writes, bad) in result.items():
        assert writes > 10, case  # every block took several sector writes, each one a cut point
        assert bad == [], "%s: power cuts that lose acknowledged data or leave garbage: %s" % (case, bad)
