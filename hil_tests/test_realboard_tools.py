"""Tools for real boards, checked without one: the rp2 HAL against the published
MicroPython stubs, the .mpy build, port lookup, UF2 install, bootloader entry
and the CI workflows."""
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import tty

import pytest
import yaml
from serial.tools import list_ports
from serial.tools.list_ports_common import ListPortInfo

from host_tools import FIRMWARE, ROOT, build, ports, typecheck, uf2

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")
MICROPYTHON = os.path.join(os.path.dirname(sys.executable), "micropython")


# --- rp2 HAL against the rp2 stubs -------------------------------------------------


def test_every_module_a_pico_runs_passes_the_stub_check():
    files = typecheck.pico_files()
    for f in ("hal/rp2.py", "main.py", "lib/link.py", "controller/engine.py", "backupdev/tape.py"):
        assert os.path.join(FIRMWARE, f) in files
    assert os.path.join(FIRMWARE, "hal", "unix.py") not in files  # the virtual board's own
    ok, out = typecheck.check(files)
    assert ok, out


def test_stub_check_rejects_wrong_rp2_calls_at_their_lines():
    fixture = os.path.join(FIXTURES, "rp2_wrong_calls.py")
    with open(fixture) as f:
        wrong = {i for i, line in enumerate(f, 1) if "# wrong:" in line}
    ok, out = typecheck.check([fixture])
    assert not ok
    flagged = {int(m) for m in re.findall(r"rp2_wrong_calls\.py:(\d+):\d+: error", out)}
    assert flagged == wrong, out


def test_every_file_importing_machine_or_rp2_is_checked(tmp_path):
    (tmp_path / "a.py").write_text("from machine import Pin\n")
    (tmp_path / "b.py").write_text("import rp2.asm_pio\n")
    (tmp_path / "c.py").write_text("import hal\nmachine = 1\n")
    found = typecheck.hardware_files(str(tmp_path))
    assert [os.path.basename(f) for f in found] == ["a.py", "b.py"]
    (tmp_path / "d.py").write_text("import vboard_hw\n")
    assert [os.path.basename(f) for f in typecheck.pico_files(str(tmp_path))] == ["a.py", "b.py", "c.py"]


def test_rp2_hal_drives_the_pins_and_buses_from_board_json(tmp_path):
    # hal/rp2.py itself, on the unix MicroPython with a recording `machine`, given
    # the /board.json that flashing board_configs/controller.toml writes; stdin
    # stays open so a console read that waits for more than is there hangs.
    board_json = tmp_path / "board.json"
    board_json.write_bytes(build.deploy_tree("controller")["board.json"])
    probe = subprocess.Popen(
        [MICROPYTHON, os.path.join(FIXTURES, "rp2_hal_probe.py"), FIRMWARE, str(board_json)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        hw = json.loads(probe.stdout.readline())
        probe.stdin.write(b"status\r")
        probe.stdin.flush()
        console = _readline_within(probe.stdout, 5)
    finally:
        probe.kill()
        probe.communicate()
    calls = hw["calls"]
    assert ["UART", [0], {"baudrate": 921600, "tx": 0, "rx": 1, "txbuf": 2048, "rxbuf": 4096, "timeout": 0}] in calls
    assert ["I2C", [0], {"sda": 4, "scl": 5, "freq": 400000}] in calls
    assert ["Pin", 3, 0, 1, None] in calls  # DS3231 INT: input with pull-up
    assert ["irq", 3, 4] in calls  # falling edge only
    assert ["WDT", [], {"timeout": 8388}] in calls  # the RP2040's longest
    assert hw["uid"] == "e6614103e7452d2f"
    assert ["SPI", [1], {"sck": 10, "mosi": 11, "miso": 12}] in calls
    assert ["Pin", 13, 1, None, 1] in calls  # CS: output, idle high
    assert calls.count(["SPI.init", 400000]) == 1  # identification at 400 kHz; no card, so never faster
    assert hw["sd_error"] == "[Errno 19] ENODEV: no SD card (no answer to CMD0)"
    assert json.loads(console) == {"console": "status\r"}


def _readline_within(stream, seconds):
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, "console read did not return what was there"
    return stream.readline()


# --- make mpy ---------------------------------------------------------------------


def test_mpy_build_compiles_modules_keeps_boot_and_main_and_fits_flash(tmp_path):
    out = tmp_path / "controller"
    sizes = build.build_mpy("controller", str(out))
    assert "main.py" in sizes and "board.json" in sizes and "hal/rp2.mpy" in sizes
    # Only the scripts the board runs by name stay source.
    assert [p for p in sizes if p.endswith(".py")] == [p for p in ("boot.py", "main.py") if p in sizes]
    _, version, _ = build.mpy_cross_version()
    for path in sizes:
        data = (out / path).read_bytes()
        assert len(data) == sizes[path]
        if path.endswith(".mpy"):
            assert data[:2] == bytes((ord("M"), version)), path
    assert build.fits(sizes)
    report = build.size_report("controller", sizes)
    assert "hal/rp2.mpy" in report and "1408 KiB" in report and "DOES NOT FIT" not in report


def test_size_report_flags_a_build_larger_than_flash():
    sizes = {"lib/huge.mpy": 1409 * 1024}
    assert not build.fits(sizes)
    assert "DOES NOT FIT" in build.size_report("x", sizes)


def _mpy(version, sub, arch):
    return version | sub << 8 | arch << 10


def test_mpy_compat_accepts_a_pico_with_current_micropython():
    _, version, sub = build.mpy_cross_version()
    build.check_mpy_compat(_mpy(version, sub, 4))  # armv6m, the RP2040


@pytest.mark.parametrize("board", [_mpy(5, 0, 4), _mpy(6, 2, 4)], ids=["v5 (1.18)", "v6.2 (1.22)"])
def test_mpy_compat_tells_which_micropython_to_install(board):
    with pytest.raises(build.MpyMismatch, match=r"install MicroPython 1\.23 or newer"):
        build.check_mpy_compat(board)


# --- a fake board on a pseudo-terminal, for the mpremote paths ---------------------


@pytest.fixture
def fake_board(tmp_path):
    """The unix MicroPython REPL on a pty, with a machine.bootloader() that ends it,
    as the real one drops the board off USB."""
    boot = tmp_path / "boot.py"
    boot.write_text(
        "import sys\n"
        "class _Machine:\n"
        "    def bootloader(self):\n"
        "        sys.exit(0)\n"
        "sys.modules['machine'] = _Machine()\n"
    )
    master, slave = pty.openpty()
    tty.setraw(slave)
    proc = subprocess.Popen([MICROPYTHON, "-i", str(boot)], stdin=master, stdout=master, stderr=master)
    yield os.ttyname(slave), proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    os.close(master)
    os.close(slave)


def test_board_mpy_reads_the_running_micropython(fake_board):
    port, _ = fake_board
    got = build.board_mpy(port)
    native = subprocess.run(
        [MICROPYTHON, "-c", "import sys; print(sys.implementation._mpy)"], capture_output=True, text=True
    )
    assert got == int(native.stdout)


def test_enter_bootloader_runs_machine_bootloader(fake_board):
    port, proc = fake_board
    uf2.enter_bootloader(port)
    assert proc.wait(timeout=10) == 0


def test_enter_bootloader_refuses_a_missing_port(tmp_path):
    with pytest.raises(uf2.UF2Error, match="no such port"):
        uf2.enter_bootloader(str(tmp_path / "ttyACM9"))


# --- ports --------------------------------------------------------------------------


def _port(device, vid, pid, serial, description):
    p = ListPortInfo(device, skip_link_detection=True)
    p.vid, p.pid, p.serial_number, p.description = vid, pid, serial, description
    return p


PICO_A = _port("/dev/ttyACM0", 0x2E8A, 0x0005, "E6614103E7452D2F", "Board in FS mode")
PICO_B = _port("/dev/ttyACM1", 0x2E8A, 0x0005, "E6614864D3452D2F", "Board in FS mode")
PROBE = _port("/dev/ttyACM2", 0x2E8A, 0x000C, "E6633861A3819B2A", "Debug Probe (CMSIS-DAP)")


@pytest.fixture
def two_picos(monkeypatch):
    attached = [PROBE, PICO_B, PICO_A]
    monkeypatch.setattr(list_ports, "comports", lambda: list(attached))
    return attached


def test_ports_lists_micropython_picos_first_with_hints_for_others(two_picos):
    boards = ports.list_boards()
    assert [b.device for b in boards] == ["/dev/ttyACM0", "/dev/ttyACM1", "/dev/ttyACM2"]
    assert [b.micropython for b in boards] == [True, True, False]
    table = ports.format_boards(boards)
    assert "E6614103E7452D2F" in table and "2e8a:0005" in table
    probe_line = table.splitlines()[3]
    assert "Debug Probe" in probe_line and "not to MicroPython" in probe_line


@pytest.mark.parametrize(
    "spec, device",
    [("E6614864D3452D2F", "/dev/ttyACM1"), ("7452d2f", "/dev/ttyACM0"), ("ttyACM1", "/dev/ttyACM1")],
    ids=["exact serial", "suffix, lower case", "device name"],
)
def test_resolve_port_finds_a_board_by_serial(two_picos, spec, device):
    assert ports.resolve_port(spec) == device


def test_resolve_port_refuses_an_ambiguous_suffix(two_picos):
    with pytest.raises(ports.PortError) as e:
        ports.resolve_port("52D2F")
    assert "ambiguous" in str(e.value)
    assert "E6614103E7452D2F" in str(e.value) and "E6614864D3452D2F" in str(e.value)


def test_resolve_port_refuses_an_unknown_serial_listing_what_is_attached(two_picos):
    with pytest.raises(ports.PortError) as e:
        ports.resolve_port("DEADBEEF")
    assert "DEADBEEF" in str(e.value)
    assert "/dev/ttyACM0" in str(e.value) and "/dev/ttyACM2" in str(e.value)


def test_resolve_port_passes_urls_and_existing_paths(two_picos, tmp_path):
    assert ports.resolve_port("rfc2217://hil-bench:4000") == "rfc2217://hil-bench:4000"
    assert ports.resolve_port("socket://localhost:7000") == "socket://localhost:7000"
    link = tmp_path / "pico-controller"
    link.write_text("")
    assert ports.resolve_port(str(link)) == str(link)
    with pytest.raises(ports.PortError, match="no such port"):
        ports.resolve_port(str(tmp_path / "pico-backupdev"))


# --- UF2 install ----------------------------------------------------------------------


def _uf2(path, family=uf2.RP2040_FAMILY_ID, blocks=3):
    with open(path, "wb") as f:
        for i in range(blocks):
            head = struct.pack(
                "<8I", uf2.UF2_MAGIC_START0, uf2.UF2_MAGIC_START1, uf2.UF2_FLAG_FAMILY_ID,
                0x10000000 + 256 * i, 256, i, blocks, family,
            )
            f.write(head + bytes([i]) * 476 + struct.pack("<I", uf2.UF2_MAGIC_END))
    return str(path)


@pytest.fixture
def bootsel_drive(tmp_path):
    drive = tmp_path / "RPI-RP2"
    drive.mkdir()
    (drive / "INFO_UF2.TXT").write_text("UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: RPI-RP2\n")
    (drive / "INDEX.HTM").write_text("<html></html>")
    return drive


def test_install_copies_the_uf2_and_returns_the_new_micropython_port(tmp_path, bootsel_drive, monkeypatch):
    image = _uf2(tmp_path / "RPI_PICO-20260801-v1.28.0.uf2")
    copied = bootsel_drive / "RPI_PICO-20260801-v1.28.0.uf2"
    # The Pico reboots into MicroPython once the image has landed on the drive.
    monkeypatch.setattr(list_ports, "comports", lambda: [PICO_B] + ([PICO_A] if copied.exists() else []))
    assert uf2.install_micropython(image, drive=str(bootsel_drive), wait_port_s=5) == "/dev/ttyACM0"
    assert copied.read_bytes() == open(image, "rb").read()


def test_install_reports_a_board_that_never_comes_back(tmp_path, bootsel_drive, monkeypatch):
    monkeypatch.setattr(list_ports, "comports", lambda: [])
    with pytest.raises(uf2.UF2Error, match="no MicroPython port"):
        uf2.install_micropython(_uf2(tmp_path / "fw.uf2"), drive=str(bootsel_drive), wait_port_s=0.3)


def test_install_refuses_a_folder_that_is_not_the_bootsel_drive(tmp_path):
    plain = tmp_path / "usbstick"
    plain.mkdir()
    with pytest.raises(uf2.UF2Error, match="not an RP2040 BOOTSEL drive"):
        uf2.install_micropython(_uf2(tmp_path / "fw.uf2"), drive=str(plain), wait_port_s=0)
    assert os.listdir(plain) == []


def test_install_refuses_a_file_that_is_not_uf2(tmp_path, bootsel_drive):
    image = tmp_path / "firmware.bin"
    image.write_bytes(b"\x00\x20\x04\x20" * 256)
    with pytest.raises(uf2.UF2Error, match="not a UF2 file"):
        uf2.install_micropython(str(image), drive=str(bootsel_drive), wait_port_s=0)
    assert sorted(os.listdir(bootsel_drive)) == ["INDEX.HTM", "INFO_UF2.TXT"]


def test_install_refuses_a_uf2_for_another_chip(tmp_path, bootsel_drive):
    rp2350 = _uf2(tmp_path / "RPI_PICO2.uf2", family=0xE48BFF59)
    with pytest.raises(uf2.UF2Error, match="not the RP2040"):
        uf2.install_micropython(rp2350, drive=str(bootsel_drive), wait_port_s=0)


def test_bootsel_drives_are_found_among_mount_points(tmp_path, bootsel_drive, monkeypatch):
    monkeypatch.setattr(uf2, "_mount_points", lambda: {str(bootsel_drive), str(tmp_path)})
    assert uf2.find_bootsel_drives() == [str(bootsel_drive)]


# --- CI workflows -----------------------------------------------------------------------


def _workflow(name):
    with open(os.path.join(ROOT, ".github", "workflows", name)) as f:
        wf = yaml.safe_load(f)
    # YAML 1.1 reads the key `on` as the boolean True.
    return wf, wf.get("on", wf.get(True))


def test_test_workflow_runs_make_test_on_every_push_and_pull_request():
    wf, on = _workflow("test.yml")
    assert set(on) == {"push", "pull_request"}
    job = wf["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
    assert str(setup[0]["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").startswith("make test") for s in job["steps"])


def test_hil_workflow_runs_only_trusted_code_one_at_a_time_on_the_board_runner():
    wf, on = _workflow("hil.yml")
    assert set(on) == {"push", "workflow_dispatch"}  # never pull_request: forks must not reach the boards
    assert wf["concurrency"] == {"group": "rp2040-hil", "cancel-in-progress": False}
    job = wf["jobs"]["hil"]
    assert job["runs-on"] == ["self-hosted", "linux", "rp2040-hil"]
    runs = [s["run"] for s in job["steps"] if "run" in s]
    assert runs == [
        "make hil CONTROLLER=${{ vars.HIL_CONTROLLER_PORT }} BACKUPDEV=${{ vars.HIL_BACKUPDEV_PORT }}"
    ]
    upload = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload and upload[0]["if"] == "always()" and upload[0]["with"]["path"].endswith(".xml")
