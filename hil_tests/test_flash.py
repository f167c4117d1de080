"""Issue 6: `backupctl flash --board ... --port ...` over a board's MicroPython
console, here against the session's virtual boards: only files that differ are
sent, the board comes back answering `version`, a board with another
MicroPython is refused, and a Pico gets the SD card driver and a machine.reset().
Every test leaves its board running the current firmware."""
import os
import re
import socket
import subprocess
import sys

import pytest

from host_tools import ROOT, build, cli
from host_tools.console import BoardConsole

MPREMOTE = [sys.executable, "-m", "mpremote"]
SUMMARY = re.compile(r"(\d+) changed, (\d+) unchanged, (\d+) removed, (\d+) bytes sent")

virtual_only = pytest.mark.virtual_only("flashes the session's virtual boards; make hil flashes real ones")


def _mpremote(port, *args):
    r = subprocess.run(MPREMOTE + ["connect", port] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, "mpremote %s failed: %s%s" % (args, r.stdout, r.stderr)
    return r.stdout


def _flash(capsys, *args):
    rc = cli.main(["flash"] + list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _summary(out):
    m = SUMMARY.search(out)
    assert m, out
    return tuple(int(g) for g in m.groups())


_LIST = ("import os\n"
         "def w(d):\n"
         "    for n, t, *_ in os.ilistdir(d):\n"
         "        p = d + '/' + n\n"
         "        yield from w(p) if t == 0x4000 else [p[1:]]\n"
         "print(sorted(p for top in %r for p in w('/' + top)))\n")


def _firmware_files(port, role):
    tops = sorted({p.split("/")[0] for p in build.source_files(role) if "/" in p})
    out = _mpremote(port, "exec", _LIST % (tops,))
    return set(eval(out.strip().splitlines()[-1]))


def _modules(role, ext):
    return {p[:-3] + ext for p in build.source_files(role) if "/" in p}


@virtual_only
def test_flash_sends_only_what_differs_and_the_board_comes_back(sim, capsys):
    port = sim.port("controller")
    # One module missing, and an old source copy of it that would shadow its .mpy.
    _mpremote(port, "exec", "import os; os.remove('/lib/isotime.mpy');"
                            " open('/lib/isotime.py', 'w').write('raise ImportError(\"old\")')")
    rc, out, err = _flash(capsys, "--board", "controller", "--port", port)
    assert rc == 0, err
    size = len(build.deploy_tree("controller", mpy=True)["lib/isotime.mpy"])
    assert re.search(r"^ +%d  lib/isotime\.mpy$" % size, out, re.M), out
    assert "removed  lib/isotime.py" in out
    changed, unchanged, removed, sent = _summary(out)
    assert changed >= 1 and removed == 1 and sent >= size
    assert "controller answers: firmware" in out
    with BoardConsole(port) as con:
        assert con.call("version")["role"] == "controller"
        assert con.call("rtc get")["ok"]  # isotime imports again

    rc, out, err = _flash(capsys, "--board", "controller", "--port", port)
    assert rc == 0, err
    assert _summary(out) == (0, changed + unchanged, 0, 0)
    assert "controller answers: firmware" in out


@virtual_only
def test_py_and_mpy_flashes_replace_each_other_without_leftovers(sim, capsys):
    port = sim.port("backupdev")
    rc, out, err = _flash(capsys, "--board", "backupdev", "--port", port, "--py")
    assert rc == 0, err
    assert _firmware_files(port, "backupdev") == _modules("backupdev", ".py")
    rc, out, err = _flash(capsys, "--board", "backupdev", "--port", port)  # .mpy, the default
    assert rc == 0, err
    assert _firmware_files(port, "backupdev") == _modules("backupdev", ".mpy")
    with BoardConsole(port) as con:
        assert con.sync()["role"] == "backupdev"


# A Pico as flash_real sees one: boot.py, which runs at every soft reset, puts a
# `sys` claiming the rp2 port and a .mpy version, and a `machine` whose reset()
# leaves a mark and pulls the virtual board's reset line, in front of the real ones.
FAKE_PICO_BOOT = """\
import sys
_sys = sys
class _Impl:
    _mpy = %s
class _Sys:
    platform = 'rp2'
    implementation = _Impl()
    def __getattr__(self, name):
        return getattr(_sys, name)
class _Machine:
    def reset(self):
        open('/reset-by-machine', 'w').close()
        import vboard_hw
        vboard_hw.ctl.write('reset\\n')
        vboard_hw.ctl.flush()
        while True:
            pass
sys.modules['sys'] = _Sys()
sys.modules['machine'] = _Machine()
"""


@pytest.fixture
def fake_pico(sim, tmp_path):
    """fake_pico(mpy) turns the session's controller into a Pico whose MicroPython
    has sys.implementation._mpy == mpy (None: the board's own); returns its port.
    The real boot.py is put back afterwards and the firmware restarted."""
    port = sim.port("controller")

    def make(mpy=None):
        boot = tmp_path / "boot.py"
        boot.write_text(FAKE_PICO_BOOT % ("_sys.implementation._mpy" if mpy is None else mpy))
        _mpremote(port, "fs", "cp", str(boot), ":boot.py")
        return port

    yield make
    _mpremote(port, "fs", "cp", build.source_files("controller")["boot.py"], ":boot.py")
    with BoardConsole(port) as con:
        con.sync()


@virtual_only
def test_a_board_with_an_older_micropython_is_refused_untouched(fake_pico, capsys):
    port = fake_pico(mpy=5 | 4 << 10)  # .mpy v5, armv6m: MicroPython 1.18 on a Pico
    rc, out, err = _flash(capsys, "--board", "controller", "--port", port)
    assert rc == 1
    assert "loads .mpy v5.0" in err and "install MicroPython 1.23 or newer" in err
    assert "bytes sent" not in out
    assert "_Impl" in _mpremote(port, "exec", "print(open('/boot.py').read())")  # nothing was written


@pytest.fixture
def no_internet(monkeypatch):
    """https requests go to a closed local port, whatever network this machine has."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    closed = "http://127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    for var in ("https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(var, closed)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)


@virtual_only
def test_a_pico_without_internet_gets_a_running_controller_reset_by_machine_reset(
        fake_pico, no_internet, capsys):
    port = fake_pico()
    _mpremote(port, "exec", "open('/lib/sdcard.py', 'w').write('# micropython-lib')")  # from an older flash
    rc, out, err = _flash(capsys, "--board", "controller", "--port", port)
    assert rc == 0, err
    assert "mip" not in out and "warning" not in out + err  # the SD driver is the firmware's own
    assert "removed  lib/sdcard.py" in out
    assert re.search(r"^ +\d+  boot\.py$", out, re.M)  # the fake boot.py was replaced
    assert "controller answers: firmware" in out
    marks = _mpremote(port, "exec", "import os; print('reset-by-machine' in os.listdir('/'));"
                                    " os.remove('/reset-by-machine')")
    assert marks.strip().endswith("True")


# --- the README's wiring against the board files ------------------------------------

# Raspberry Pi Pico pinout: the physical pin of each GPIO, and the power pins.
PICO_PIN = {0: 1, 1: 2, 2: 4, 3: 5, 4: 6, 5: 7, 6: 9, 7: 10, 8: 11, 9: 12, 10: 14, 11: 15, 12: 16, 13: 17,
            14: 19, 15: 20, 16: 21, 17: 22, 18: 24, 19: 25, 20: 26, 21: 27, 22: 29, 26: 31, 27: 32, 28: 34}
POWER_PINS = {"GND": {3, 8, 13, 18, 23, 28, 33, 38}, "3V3": {36}, "3V3(OUT)": {36}}
NOT_PINS = {"id", "baud", "freq", "spi"}  # the other numbers in a board file


def _pins_in_board_files():
    pins = {}
    for role in build.ROLES:
        for table, values in build.load_board(role).items():
            if isinstance(values, dict) and table not in ("virtual", "watchdog"):  # not wiring
                for key, v in values.items():
                    if isinstance(v, int) and key not in NOT_PINS:
                        pins[(role, "%s.%s" % (table, key))] = v
    return pins


def test_readme_wiring_matches_the_board_files():
    with open(os.path.join(ROOT, "README.md")) as f:
        section = f.read().split("## Real boards", 1)[1].split("\n## ", 1)[0]
    documented = {}
    rows = re.findall(r"^\| (both|controller|backupdev) \| `?([\w.]*)`? \| (\S+) \| (\d+) \|", section, re.M)
    assert rows, "no wiring table under ## Real boards"
    for boards, key, signal, pin in rows:
        if signal.startswith("GP"):
            assert PICO_PIN[int(signal[2:])] == int(pin), "README: %s is not pin %s of a Pico" % (signal, pin)
            for role in build.ROLES if boards == "both" else (boards,):
                documented[(role, key)] = int(signal[2:])
        else:
            assert int(pin) in POWER_PINS[signal], "README: pin %s of a Pico is not %s" % (pin, signal)
    assert documented == _pins_in_board_files()
    picture = section.split("```", 2)[1]
    pairs = re.findall(r"\b(\d+)  (GP(\d+)|GND|3V3)\b", picture)
    assert len(pairs) > 10
    for pin, signal, gpio in pairs:
        assert int(pin) == PICO_PIN[int(gpio)] if gpio else int(pin) in POWER_PINS[signal], (pin, signal)
