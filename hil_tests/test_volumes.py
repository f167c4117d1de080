"""Volumes on the controller's SD card: the vol commands, `backupctl vol put/get`,
and what survives reboots and power cuts."""
import base64
import hashlib
import os
import random
import string
import subprocess
import sys
import time

import pytest

from host_tools import cmd_vol
from host_tools.console import ConsoleError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unique_name():
    # 6 characters A-Z 0-9, different in every test run: the board pair is shared
    return "T" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(5))


@pytest.fixture
def volume(controller):
    """make(size, block=512) -> name; every volume made is deleted afterwards."""
    made = []

    def make(size="64K", block=512):
        name = unique_name()
        controller.call("vol create %s --size %s --block %d" % (name, size, block), timeout=120)
        made.append(name)
        return name

    yield make
    controller.sync()
    for name in made:
        controller.call("vol delete %s --yes" % name, check=False)


def body(reply):
    return {k: v for k, v in reply.items() if k != "id"}


def names(con):
    return [v["name"] for v in con.call("vol list")["volumes"]]


def backupctl(*args, **kw):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=kw.get("timeout", 120))


def write(con, name, lba, data):
    return con.call("vol write %s %d %s" % (name, lba, base64.b64encode(data).decode()))


def read(con, name, lba, count=1):
    return base64.b64decode(con.call("vol read %s %d %d" % (name, lba, count))["data"])


def test_create_list_info_delete(controller, volume):
    before = controller.call("vol list")
    name = volume("64K", 1024)
    after = controller.call("vol list")
    assert after["count"] == before["count"] + 1  # item 110
    assert name in names(controller)
    info = controller.call("vol info " + name)
    assert (info["name"], info["size"], info["block_size"], info["blocks"]) == (name, 65536, 1024, 64)
    assert info["created"] == info["updated"]
    assert read(controller, name, 62, 2) == bytes(2048)  # a new volume reads as zeros
    with pytest.raises(ConsoleError, match="--yes"):
        controller.call("vol delete " + name)
    assert name in names(controller)
    assert read(controller, name, 0) == bytes(1024)
    controller.call("vol delete %s --yes" % name)
    assert name not in names(controller)
    assert controller.call("vol list")["count"] == before["count"]


@pytest.mark.parametrize("bad", ["../ETC", "VOL/01", "VOL.01", "..", "vol001", "VOL0001", "VOL01"])
def test_bad_names_refused(controller, bad):
    before = controller.call("vol list")
    for cmd in ("vol create %s --size 64K", "vol info %s", "vol delete %s --yes", "vol read %s 0"):
        with pytest.raises(ConsoleError, match="name.*6 characters A-Z and 0-9"):
            controller.call(cmd % bad)
    assert body(controller.call("vol list")) == body(before)


def test_size_beyond_free_space_refused(controller):
    free = controller.call("sd info")["free_bytes"]
    name = unique_name()
    with pytest.raises(ConsoleError, match=r"needs .* MiB but the SD card has .* MiB free"):
        controller.call("vol create %s --size %d" % (name, free + (1 << 20)))
    with pytest.raises(ConsoleError, match="whole number of 512-byte blocks"):
        controller.call("vol create %s --size 1000" % name)
    assert name not in names(controller)
    assert controller.call("sd info")["free_bytes"] == free


def test_block_io_and_last_update_time(controller, volume):
    name = volume("16K")
    created = controller.call("vol info " + name)["created"]
    data = os.urandom(1024)
    assert write(controller, name, 3, data)["count"] == 2
    assert read(controller, name, 2, 4) == bytes(512) + data + bytes(512)
    first = controller.call("vol info " + name)["updated"]
    time.sleep(1.2)  # the DS3231 counts whole seconds
    write(controller, name, 0, os.urandom(512))
    second = controller.call("vol info " + name)["updated"]
    assert created <= first < second  # ISO text sorts like time
    assert controller.call("vol info " + name)["created"] == created
    for bad, why in (("32 ", "outside"), ("31 ", "outside")):
        with pytest.raises(ConsoleError, match=why):
            controller.call("vol write %s %s%s" % (name, bad, base64.b64encode(bytes(1024)).decode()))
    with pytest.raises(ConsoleError, match="whole number of 512-byte blocks"):
        write(controller, name, 0, bytes(100))
    assert controller.call("vol info " + name)["updated"] == second  # refused writes change nothing


def test_put_get_4mib_identical_and_survives_reboot(controller, volume, tmp_path):
    name = volume("4M")
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(4 << 20))
    port = controller.port
    put = backupctl("vol", "put", name, str(src), "--port", port)
    assert put.returncode == 0, put.stderr
    assert "matches" in put.stdout and "100%" in put.stderr
    dst = tmp_path / "out.bin"
    get = backupctl("vol", "get", name, str(dst), "--port", port)
    assert get.returncode == 0, get.stderr
    assert dst.read_bytes() == src.read_bytes()
    info = controller.call("vol info " + name)
    controller.call("reboot")
    time.sleep(0.5)
    controller.sync()
    assert body(controller.call("vol info " + name)) == body(info)
    sha = controller.call("vol sha " + name, timeout=60)["sha256"]
    assert sha == hashlib.sha256(src.read_bytes()).hexdigest()


def test_put_of_a_short_file_pads_the_last_block(controller, volume, tmp_path):
    name = volume("16K")
    src = tmp_path / "short.bin"
    src.write_bytes(b"x" * 700)
    r = backupctl("vol", "put", name, str(src), "--port", controller.port)
    assert r.returncode == 0, r.stderr
    assert read(controller, name, 0, 2) == b"x" * 700 + bytes(324)
    big = tmp_path / "big.bin"
    big.write_bytes(bytes(16 * 1024 + 1))
    r = backupctl("vol", "put", name, str(big), "--port", controller.port)
    assert r.returncode == 1 and "make a bigger volume" in r.stderr


@pytest.mark.virtual_only("cuts the board's power")
def test_cut_put_is_reported_incomplete(controller, volume, sim, tmp_path):
    name = volume("4M")
    src = tmp_path / "in.bin"
    src.write_bytes(os.urandom(4 << 20))
    proc = subprocess.Popen([sys.executable, "-m", "host_tools.cli", "vol", "put", name, str(src),
                             "--port", controller.port], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        for line in proc.stderr:  # progress lines: cut once a tenth is through
            if "10%" in line:
                break
        sim.power("controller", "off")
        sim.power("controller", "on")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 1
    assert "incomplete" in err and "matches" not in out
    controller.sync()
    assert name in names(controller)


@pytest.mark.virtual_only("cuts the board's power")
def test_power_cut_keeps_headers_and_acknowledged_blocks(controller, volume, sim):
    name = volume("256K")
    info = controller.call("vol info " + name)
    old = {lba: bytes(512) for lba in range(512)}
    for cut_after in (1, 9, 40, 97, 230):
        new = {lba: os.urandom(512) for lba in range(256)}
        acked = []

        def on_reply(reply, lba):
            acked.append(lba)
            if len(acked) == cut_after:
                sim.power("controller", "off")
                sim.power("controller", "on")

        with pytest.raises(cmd_vol.Incomplete):
            cmd_vol._pipeline(controller, (("vol write %s %d %s" % (name, lba, base64.b64encode(new[lba]).decode()),
                                            lba) for lba in range(256)), on_reply, timeout=10)
        controller.sync()
        after = controller.call("vol info " + name)
        assert {k: after[k] for k in ("name", "size", "blocks", "block_size", "created")} == \
            {k: info[k] for k in ("name", "size", "blocks", "block_size", "created")}
        for lba in range(0, 256, 4):
            got = read(controller, name, lba, 4)
            for i in range(4):
                block = got[i * 512:(i + 1) * 512]
                if lba + i in acked:
                    assert block == new[lba + i], "acknowledged block %d lost (cut after %d)" % (lba + i, cut_after)
                else:  # in flight: whole old or whole new, never torn
                    assert block in (old[lba + i], new[lba + i]), "block %d torn" % (lba + i)
                old[lba + i] = block


@pytest.mark.virtual_only("cuts the board's power")
def test_create_cut_by_power_leaves_nothing(controller, sim):
    free = controller.call("sd info")
    name = unique_name()
    controller.send_line("#c vol create %s --size 16M" % name)
    time.sleep(0.3)  # into the zero fill, which takes seconds
    sim.power("controller", "off")
    t_on = time.monotonic()
    sim.power("controller", "on")
    controller.wait_event("boot", since=t_on, timeout=15)
    # the boot found the half-made volume and removed it
    assert any(b"vol_removed" in line and name.encode() in line for line in controller.lines)
    controller.sync()
    assert name not in names(controller)
    # its clusters are free again (one may be lost if the cut fell between its
    # allocation and the first directory sync)
    assert controller.call("sd info")["free_bytes"] >= free["free_bytes"] - free["block_size"]
