"""The SD card: the firmware's own SPI driver (lib/sdspi.py) against the virtual
board's SPI-level card model, its injected faults (`backupctl sim sd`), and
the controller and backup device staying alive without a card."""
import base64
import hashlib
import os
import random
import string
import time

import pytest

from host_tools.cmd_bench import sd_driver_cost
from host_tools.cmd_vol import WRITE_BYTES
from host_tools.console import BoardConsole, ConsoleError

virtual_only = pytest.mark.virtual_only


def unique_name():
    return "S" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(5))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def wait_for(con, what, pred, timeout=30):
    """Poll `status` until pred(status) (the card model reacts at the firmware's
    next look at the card, every few seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        st = con.call("status")
        if pred(st):
            return st
        if time.monotonic() > deadline:
            raise TimeoutError("%s: status never became %s: %r" % (con.port, what, st))
        con.pump(0.5)


def mounted(st):
    return st["sd"] == "mounted"


@pytest.fixture
def card(sim):
    """SD faults on the virtual boards; cleared after the test, which then waits
    until both cards are mounted again so that no later test starts without one."""
    if sim is None:
        pytest.skip("real boards: SD faults need the virtual card")
    yield sim
    for role in ("controller", "backupdev"):
        sim.sd(role, "clear")
        with BoardConsole(sim.port(role), timeout=30) as con:
            con.sync(timeout=60)
            wait_for(con, "mounted", mounted)


@pytest.fixture
def volume(controller):
    made = []

    def make(size="64K"):
        name = unique_name()
        controller.call("vol create %s --size %s" % (name, size), timeout=120)
        made.append(name)
        return name

    yield make
    controller.sync(timeout=60)
    for name in made:
        controller.call("vol delete %s --yes" % name, check=False)


def write(con, name, lba, data, timeout=30):
    """`vol write` in pieces of 1 KiB (one console line each): two sectors, one
    multi-block write each, as the volume's data is cluster aligned."""
    n = WRITE_BYTES
    for off in range(0, len(data), n):
        con.call("vol write %s %d %s" % (name, lba + off // 512, base64.b64encode(data[off:off + n]).decode()),
                 timeout=timeout)


def read(con, name, lba, count):
    out = b""
    for i in range(lba, lba + count, 4):
        out += base64.b64decode(con.call("vol read %s %d %d" % (name, i, min(4, lba + count - i)))["data"])
    return out


def restart(con, sim):
    """Start the controller afresh, so that what it reads comes from the card,
    not from FatFs's sector cache: a power cycle on a virtual board (done when
    the daemon answers), `reboot` on a real one."""
    if sim is not None:
        sim.power("controller", "cycle")
    else:
        con.call("reboot")
    con.sync(timeout=60)


def test_the_driver_identifies_the_card_with_crc_on(controller, sim):
    info = controller.call("sd info")
    assert info["crc"] is True and info["last_error"] is None
    assert info["card_sectors"] * 512 >= info["total_bytes"] > 0
    if sim is not None:  # the model's card is the board's sd.img
        img = os.path.join(sim.status["boards"]["controller"]["dir"], "sd.img")
        assert info["card_sectors"] == os.path.getsize(img) // 512


def test_single_and_multi_block_writes_read_back(controller, volume, sim):
    name = volume("64K")
    one = os.urandom(512)
    many = os.urandom(32 * 1024)
    write(controller, name, 3, one)  # a sector inside a cluster: read, modify, single-block write
    write(controller, name, 8, many)  # whole clusters: multi-block writes
    assert read(controller, name, 3, 1) == one
    assert controller.call("vol sha %s 8 64" % name)["sha256"] == sha(many)
    restart(controller, sim)
    assert read(controller, name, 3, 1) == one
    assert controller.call("vol sha %s 8 64" % name)["sha256"] == sha(many)


@virtual_only
def test_a_rejected_write_is_an_error_not_a_success(controller, volume, card):
    name = volume("64K")
    old = read(controller, name, 0, 8)
    since = time.monotonic()
    card.sd("controller", "errors", write_rate=1.0)
    with pytest.raises(ConsoleError) as e:
        write(controller, name, 0, os.urandom(4096))
    assert "SD card rejected a write (write error)" in str(e.value)
    assert controller.call("sd info")["last_error"] == "SD card rejected a write (write error)"
    card.sd("controller", "clear")
    controller.wait_event("sd_io_error", since=since, timeout=30)  # volumes reopened
    assert read(controller, name, 0, 8) == old  # nothing rejected reached the card
    new = os.urandom(4096)
    write(controller, name, 0, new)
    assert read(controller, name, 0, 8) == new


@virtual_only
def test_read_errors_in_a_block_range_fail_only_there(controller, volume, card):
    name = volume("64K")
    data = os.urandom(65536)
    write(controller, name, 0, data)
    restart(controller, card)
    card.sd("controller", "errors", read_rate=1.0, blocks=[0, 0])  # the boot sector only: not our data
    assert controller.call("vol sha %s" % name)["sha256"] == sha(data)
    since = time.monotonic()
    card.sd("controller", "errors", read_rate=1.0, blocks=[0, 1 << 30])
    with pytest.raises(ConsoleError):
        controller.call("vol sha %s" % name)
    card.sd("controller", "clear")
    assert "SD card read error" in controller.call("sd info")["last_error"]
    # the firmware sees the card still answers and reopens the volumes (FatFs
    # fails a file that saw an I/O error for good)
    ev = controller.wait_event("sd_io_error", since=since, timeout=30)
    assert "SD card read error" in ev["reason"]
    assert controller.call("vol sha %s" % name)["sha256"] == sha(data)


@virtual_only
def test_full_card_refuses_new_data_with_enospc_and_recovers(controller, volume, card):
    name = volume("64K")
    card.sd("controller", "full")
    new = unique_name()
    with pytest.raises(ConsoleError) as e:
        controller.call("vol create %s --size 64K" % new, timeout=60)
    assert "the SD card is full (ENOSPC): %s was not created" % new in str(e.value)
    vols = [v["name"] for v in controller.call("vol list")["volumes"]]
    assert new not in vols and name in vols
    data = os.urandom(4096)
    write(controller, name, 0, data)  # space already allocated is still written
    assert read(controller, name, 0, 8) == data
    card.sd("controller", "clear")
    made = volume("64K")  # room again, without a reboot
    assert made in [v["name"] for v in controller.call("vol list")["volumes"]]


@virtual_only
def test_a_card_pulled_while_running_is_reported_and_remounted(controller, volume, card):
    name = volume("64K")
    data = os.urandom(4096)
    write(controller, name, 0, data)
    since = time.monotonic()
    card.sd("controller", "eject")
    with pytest.raises(ConsoleError):
        write(controller, name, 8, data)  # the card does not answer
    lost = controller.wait_event("sd_lost", since=since, timeout=30)
    assert "no SD card" in lost["reason"]
    st = wait_for(controller, "missing", lambda s: s["sd"].startswith("missing"))
    assert "schedule" in st["not_running"]
    with pytest.raises(ConsoleError) as e:
        controller.call("vol list")
    assert "no SD card" in str(e.value)
    since = time.monotonic()
    card.sd("controller", "insert")
    controller.wait_event("sd_mounted", since=since, timeout=30)
    assert name in [v["name"] for v in controller.call("vol list")["volumes"]]
    assert read(controller, name, 0, 8) == data


@virtual_only
def test_a_card_pulled_and_put_back_while_idle_is_remounted(controller, card):
    """Nobody uses the card: the firmware's status poll notices it went away,
    and the card put back (in its power-on state) is identified again."""
    since = time.monotonic()
    card.sd("controller", "eject")
    assert "no SD card" in controller.wait_event("sd_lost", since=since, timeout=30)["reason"]
    since = time.monotonic()
    card.sd("controller", "insert")
    controller.wait_event("sd_mounted", since=since, timeout=30)
    assert mounted(controller.call("status"))
    controller.call("vol list")


@virtual_only
def test_a_long_busy_card_times_out_as_an_error(controller, volume, card):
    name = volume("64K")
    since = time.monotonic()
    card.sd("controller", "busy", ms=800)  # over the spec's 500 ms
    with pytest.raises(ConsoleError) as e:
        write(controller, name, 0, os.urandom(4096), timeout=60)
    assert "ETIMEDOUT: SD card busy for over 500 ms after a write" in str(e.value)
    card.sd("controller", "busy", ms=50)  # slow, within the spec: works
    controller.wait_event("sd_io_error", since=since, timeout=30)
    data = os.urandom(4096)
    write(controller, name, 0, data, timeout=60)
    assert read(controller, name, 0, 8) == data


@virtual_only
@pytest.mark.parametrize("torn", ["old", "half"])
def test_power_cut_inside_a_multi_block_write(controller, volume, card, torn):
    """The power fails while the card programs the 3rd block of a multi-block
    write: after the restart the volumes and the catalog are consistent, the
    sector in flight holds its old data (or, torn, half of the new), and no
    other volume changed."""
    other = volume("64K")
    other_data = os.urandom(65536)
    write(controller, other, 0, other_data)
    name = volume("64K")
    old = os.urandom(32768)
    write(controller, name, 0, old)
    new = os.urandom(32768)
    card.sd("controller", "cut", after=3, torn=torn)
    with pytest.raises((ConsoleError, TimeoutError, OSError)):
        write(controller, name, 0, new, timeout=10)
    con = controller
    if True:
        con.sync(timeout=60)
        assert con.call("status")["sd"] == "mounted"
        assert name in [v["name"] for v in con.call("vol list")["volumes"]]
        con.call("backup list")  # the catalog reads
        assert con.call("vol sha %s" % other)["sha256"] == sha(other_data)
        got = read(con, name, 0, 64)
        blocks = [got[i:i + 512] for i in range(0, 32768, 512)]
        olds = [old[i:i + 512] for i in range(0, 32768, 512)]
        news = [new[i:i + 512] for i in range(0, 32768, 512)]
        neither = [i for i, b in enumerate(blocks) if b not in (olds[i], news[i])]
        # each block old or new, but for the one in flight when torn
        if torn == "old":
            assert neither == []
        else:
            assert len(neither) == 1
            i = neither[0]
            assert blocks[i][:256] == news[i][:256] and blocks[i][256:] == olds[i][256:]
        # the write stopped at the cut: not everything is new
        assert blocks != news


@virtual_only
@pytest.mark.parametrize("role", ["controller", "backupdev"])
def test_no_card_at_boot_then_inserted_works_without_reboot(card, role):
    card.sd(role, "eject")
    card.power(role, "cycle")
    with BoardConsole(card.port(role), timeout=30) as con:
        con.sync(timeout=60)
        boots = card.call("status")["boards"][role]["boots"]
        st = con.call("status")
        assert st["sd"].startswith("missing: ") and "no SD card" in st["sd"]
        assert st["not_running"]
        with pytest.raises(ConsoleError) as e:
            con.call("sd info")
        assert "no SD card" in str(e.value) and "not running" in str(e.value)
        needs_card = "vol list" if role == "controller" else "disk new SDTEST --size 64K"
        with pytest.raises(ConsoleError) as e:
            con.call(needs_card)
        assert "no SD card" in str(e.value)
        since = time.monotonic()
        card.sd(role, "insert")
        con.wait_event("sd_mounted", since=since, timeout=30)
        assert mounted(con.call("status"))
        con.call(needs_card)
        if role == "backupdev":
            con.call("disk delete SDTEST --yes")
        assert card.call("status")["boards"][role]["boots"] == boots  # no reboot


def test_sd_bench_measures_and_leaves_nothing_behind(controller):
    free = controller.call("sd info")["free_blocks"]
    r = controller.call("sd bench 64", timeout=120)
    assert r["kib"] == 64
    for k in ("write_kib_s", "read_kib_s", "driver_read_kib_s", "driver_read_nocrc_kib_s", "crc16_us_per_block"):
        assert r[k] > 0, k
    info = controller.call("sd info")
    assert info["last_error"] is None and info["free_blocks"] == free  # the scratch file is gone


def test_driver_cost_harness_runs_the_firmware_driver():
    c = sd_driver_cost()
    assert set(c) == {"crc_on", "crc_off"}
    assert c["crc_on"]["read_us"] > 0 and c["crc_off"]["write_us"] > 0
