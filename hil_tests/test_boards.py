"""Issue 2: both boards boot on real MicroPython, answer on their consoles,
keep their clock and SD card across reboots, and survive garbage input."""
import hashlib
import os
import random
import subprocess
import sys
import time

import pytest

from host_tools.console import BoardConsole


MPREMOTE = [sys.executable, "-m", "mpremote"]


def test_both_boards_answer_version(sim, controller, backupdev):
    for con, role in ((controller, "controller"), (backupdev, "backupdev")):
        v = con.call("version")
        assert v["role"] == role
        assert v["micropython"].startswith("1.")
        s = con.call("status")
        heap = s["mem_free"] + s["mem_alloc"]
        if sim:  # the calibrated Pico heap (host_tools/sim/heapcal.py), not the unix default 8 MiB
            from host_tools.build import load_board
            from host_tools.sim import heapcal
            cfg = load_board(role)
            total = heapcal.heap_for(cfg, heapcal.flash_tree(cfg))[1]
            assert total - 1024 <= heap <= total
        else:  # a Pico's MicroPython heap: 245,888 bytes on 1.28, about 240 KiB since 1.20
            assert 200_000 < heap <= 264 * 1024
        assert s["mem_free"] > 24 * 1024, "less than 24 KiB of heap left after boot on %s" % role


def test_unknown_and_bad_commands_get_one_error_each(controller):
    for line, frag in (("frobnicate", "unknown command"), ("rtc", "needs one of"),
                       ("rtc set yesterday", "ISO"), ("rtc set 2026-02-30T00:00:00", "impossible date"),
                       ("mode binary", "json or text")):
        r = controller.call(line, check=False)
        assert not r["ok"] and frag in r["error"], (line, r)
    assert controller.call("version")["ok"]


@pytest.mark.virtual_only("powers the board off")
def test_rtc_survives_reboot_and_counts_while_off(sim, controller):
    controller.call("rtc set 2031-05-06T07:08:09")
    sim.power("controller", "off")
    time.sleep(2.0)
    sim.power("controller", "on")
    controller.sync()
    t = controller.call("rtc get")
    assert t["time"] >= "2031-05-06T07:08:11"  # kept counting on its battery
    assert t["time"] < "2031-05-06T07:09:00"
    assert t["lost_power"] is False


def test_sd_card_is_fat_of_the_card_size(sim, controller):
    info = controller.call("sd info")
    if sim:  # the board file's image size, less the FAT's own sectors
        from host_tools.build import load_board
        from host_tools.sim.board import parse_size
        size = parse_size(load_board("controller")["virtual"]["sd_size"])
        assert 0.9 * size < info["total_bytes"] <= size
    else:  # a real card: any size the bill of materials allows (FAT32, up to 32 GB)
        assert 0 < info["total_bytes"] <= 32 * 10**9
    assert info["free_bytes"] <= info["total_bytes"]


def _mpremote(port, *args, check=True):
    r = subprocess.run(MPREMOTE + ["connect", port] + list(args), capture_output=True, text=True, timeout=60)
    if check and r.returncode:
        raise AssertionError("mpremote %s failed: %s%s" % (args, r.stdout, r.stderr))
    return r.stdout


@pytest.mark.virtual_only("power-cycles the board")
def test_mpremote_lists_copies_and_sd_survives_reboot(sim, controller, tmp_path):
    port = sim.port("controller")
    controller.close()
    listing = _mpremote(port, "fs", "ls", ":/")
    assert "main.py" in listing and "lib/" in listing
    data = os.urandom(200_000)
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    _mpremote(port, "fs", "cp", str(src), ":/sd/blob.bin")
    out = _mpremote(port, "exec", "import os; print(os.stat('/sd/blob.bin')[6])")
    assert out.strip().endswith(str(len(data)))
    sim.power("controller", "cycle")
    back = tmp_path / "back.bin"
    time.sleep(1)
    _mpremote(port, "fs", "cp", ":/sd/blob.bin", str(back))
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(data).digest()
    _mpremote(port, "fs", "rm", ":/sd/blob.bin")
    with BoardConsole(port) as con:  # mpremote leaves the board in the REPL: back to its firmware
        con.sync()


def test_ctrl_c_breaks_into_the_repl_and_firmware_comes_back(controller):
    controller.ser.write(b"\x03")
    time.sleep(0.5)
    controller.pump(0.5)
    assert any(b"KeyboardInterrupt" in ln for ln in controller.lines[-10:])
    assert controller._buf.endswith(b">>> ") or any(ln.endswith(b">>> ") for ln in controller.lines[-3:])
    controller.sync()  # Ctrl-D soft reset runs main.py again
    assert controller.call("version")["ok"]


def _random_line(rng):
    kind = rng.random()
    n = rng.randint(1, 120)
    if kind < 0.45:
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789 -_.:/#!?=\"'{}[]\t") for _ in range(n))
        b = s.encode()
    elif kind < 0.9:
        # binary: anything but the line ends and Ctrl-C (which breaks into the REPL on every MicroPython board)
        b = bytes(rng.choice([c for c in range(256) if c not in (3, 10, 13)]) for _ in range(n))
    else:
        b = b"x" * rng.randint(2049, 5000)  # longer than a console line may be
    if not b.strip():
        b = b"?" + b
    return b


@pytest.mark.parametrize("mode", ("json", "text"), ids=("machine", "people"))
def test_ten_thousand_garbage_lines_each_get_an_answer(controller, mode):
    """Machine mode answers each line with one JSON reply; people mode (echo on,
    as a person's terminal is, so Backspace, DEL and Ctrl-U in the garbage edit
    the line) ends each with one prompt at the start of a line."""
    rng = random.Random(1234)
    lines = [_random_line(rng) for _ in range(10_000)]
    t0 = time.monotonic()
    up = controller.call("status")["uptime_s"]
    controller.call("mode " + mode)
    if mode == "json":
        controller.ser.reset_input_buffer()
        answer = b"\n{"
        buf = b"\n"
    else:
        answer = b"\n> "
        buf = controller._buf  # the first prompt, after the reply to `mode text`
    answered = 0
    deadline = time.monotonic() + 180
    sent = 0
    while answered < len(lines) and time.monotonic() < deadline:
        while sent < len(lines) and sent - answered < 32:  # a few lines ahead, like a typist with a paste buffer
            controller.ser.write(lines[sent] + b"\n")
            sent += 1
        buf += controller.ser.read(controller.ser.in_waiting or 1)
        answered += buf.count(answer)
        buf = buf[1 - len(answer):]  # shorter than `answer`: no answer is counted twice
    assert answered == len(lines)
    controller.call("mode json")
    v = controller.call("version")
    assert v["ok"] and v["role"] == "controller"
    # the board never left its firmware
    assert controller.call("status")["uptime_s"] >= up + int(time.monotonic() - t0) - 2
