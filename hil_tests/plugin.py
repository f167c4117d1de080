"""HIL plugin: the board pair under test.

By default a virtual pair (two `micropython` boards and the wire) is started for
the session and torn down at the end. `--controller-port` / `--backupdev-port`
(device path, USB serial number or pyserial URL) select real boards instead;
tests marked `virtual_only` (they need the wire's fault injection, power
control or time warps a real board cannot do) are then skipped with the reason.

One broken test never fails the ones after it: before each test that uses the
pair, both boards must answer `version` within a second or two. A virtual board
that does not is power-cycled (the whole pair restarted if that does not help,
or if the simulator itself is gone), with a warning on that test; a real board
that does not fails that test with what to check.
"""
import os
import shutil
import tempfile
import time
import warnings

import pytest
import serial

from host_tools.console import BoardConsole
from host_tools.sim import client

ROLES = ("controller", "backupdev")
HEALTH_TIMEOUT = 2.0   # s; a healthy board answers `version` in milliseconds (7 ms on this host)
RESTART_TIMEOUT = 60   # s for a restarted board to answer again (boot under load)
_PAIR = pytest.StashKey()  # the session's VirtualPair, once started


def pytest_addoption(parser):
    g = parser.getgroup("hil", "hardware-in-the-loop board pair")
    g.addoption("--controller-port", default=None, help="real controller board (port, serial number or URL)")
    g.addoption("--backupdev-port", default=None, help="real backup device board (port, serial number or URL)")


def pytest_configure(config):
    config.addinivalue_line("markers", "virtual_only(reason): needs the virtual boards (fault injection, "
                                       "power control, time warps); skipped on real boards")


def _real(config):
    return bool(config.getoption("--controller-port") or config.getoption("--backupdev-port"))


def pytest_collection_modifyitems(config, items):
    if not _real(config):
        return
    for item in items:
        m = item.get_closest_marker("virtual_only")
        if m:
            reason = m.args[0] if m.args else "needs virtual boards"
            item.add_marker(pytest.mark.skip(reason="real boards: " + reason))


class VirtualPair:
    """A running simulator: ports, power control and the wire."""

    def __init__(self, state_dir):
        self.dir = state_dir
        self.status = client.up(state_dir)

    def port(self, role):
        return os.path.realpath(self.status["boards"][role]["console"])

    def call(self, cmd, **kw):
        return client.call(self.dir, cmd, **kw)

    def power(self, board, action):
        return self.call("power", board=board, action=action)

    def faults(self, **kw):
        return self.call("faults", **kw)

    def cut(self, seconds):
        return self.call("cut", seconds=seconds)

    def clear(self):
        return self.call("clear")

    def sd(self, board, action, **kw):
        """SD card faults: action eject|insert|full|errors|clear (`backupctl sim sd`)."""
        return self.call("sd", board=board, action=action, **kw)

    def rtc(self, action, **kw):
        """DS3231 faults: action nack (n=N)|battery (on=bool)|clear (`backupctl sim rtc`)."""
        return self.call("rtc", board="controller", action=action, **kw)

    def restart(self):
        """The whole pair again, in the same state folder (images kept)."""
        client.down(self.dir)
        self.status = client.up(self.dir)

    def close(self):
        client.down(self.dir)


def start_pair(tmp_root=None):
    d = tempfile.mkdtemp(prefix="hil-sim-", dir=tmp_root)
    return VirtualPair(d)


@pytest.fixture(scope="session")
def sim(request):
    """The session's virtual pair (None on real boards)."""
    if _real(request.config):
        yield None
        return
    pair = start_pair()
    request.config.stash[_PAIR] = pair
    yield pair
    del request.config.stash[_PAIR]
    pair.close()
    shutil.rmtree(pair.dir, ignore_errors=True)


def board_port(config, sim, role):
    """The port of the board of `role`: the real one given on the command
    line, else the session's virtual one."""
    port = config.getoption("--%s-port" % role)
    if port:
        from host_tools.target import resolve_port_spec
        return resolve_port_spec(port)
    return sim.port(role)


def open_console(request, sim, role, cls=BoardConsole, **kw):
    """A synced console on the board of `role` (board_port)."""
    con = cls(board_port(request.config, sim, role), **kw)
    con.sync()
    return con


@pytest.fixture
def controller(request, sim):
    con = open_console(request, sim, "controller")
    yield con
    con.close()


@pytest.fixture
def backupdev(request, sim):
    con = open_console(request, sim, "backupdev")
    yield con
    con.close()


@pytest.fixture
def wire(sim):
    """Fault injection on the virtual wire; faults are cleared after the test."""
    if sim is None:
        pytest.skip("real boards: the wire's fault injection needs virtual boards")
    yield sim
    sim.clear()


# --- health of the pair before each test -------------------------------------
def answers(port, timeout=HEALTH_TIMEOUT):
    """True if the firmware on `port` answers `version`: within `timeout` s,
    or a second chance of 5 x that for a board merely busy (a loaded host);
    False at once for a board in the REPL. None if the port cannot be opened
    now (a single-client rfc2217 server that a test's console holds): not
    known to be dead."""
    try:
        con = BoardConsole(port, timeout=timeout)
    except (serial.SerialException, OSError):
        return None
    try:
        for t in (timeout, 5 * timeout):
            try:
                con.call("version", timeout=t, check=False)
                return True
            except TimeoutError:
                if any(b">>>" in ln or b"raw REPL" in ln for ln in con.lines[-5:]) or con._buf.endswith(b">>> "):
                    return False  # not its firmware
        return False
    except (serial.SerialException, OSError):
        return False
    finally:
        con.close()


def _until_answers(port, timeout=RESTART_TIMEOUT):
    deadline = time.monotonic() + timeout
    while not answers(port):
        if time.monotonic() > deadline:
            return False
    return True


def _heal_virtual(pair):
    if not client.running(pair.dir):
        warnings.warn(pytest.PytestWarning("the simulator had stopped: the virtual pair was restarted"))
        pair.restart()
    boards = pair.call("status")["boards"]
    dead = [r for r in ROLES if not boards[r]["powered"] or answers(pair.port(r)) is False]
    for role in dead:
        warnings.warn(pytest.PytestWarning(
            "virtual %s did not answer before this test (an earlier test left it broken): power-cycled" % role))
        pair.power(role, "cycle")
    if all(_until_answers(pair.port(r)) for r in dead):
        return
    warnings.warn(pytest.PytestWarning("a power cycle did not bring the boards back: the virtual pair was restarted"))
    pair.restart()
    still = [r for r in ROLES if not _until_answers(pair.port(r))]
    if still:
        pytest.fail("virtual %s does not answer even after restarting the pair: see %s/*.log"
                    % (" and ".join(still), pair.dir), pytrace=False)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """Before the test's fixtures: both boards must answer (see the module doc)."""
    if "sim" not in item.fixturenames:
        return  # does not use the pair
    if _real(item.config):
        dead = [r for r in ROLES if item.config.getoption("--%s-port" % r)
                and answers(board_port(item.config, None, r)) is False]
        if dead:
            pytest.fail("real %s does not answer `version` on %s (a real board cannot be restarted from here): "
                        "check its USB cable, reset it or re-flash it with `backupctl flash`"
                        % (" and ".join(dead), ", ".join(item.config.getoption("--%s-port" % r) for r in dead)),
                        pytrace=False)
        return
    pair = item.config.stash.get(_PAIR, None)
    if pair is not None:
        _heal_virtual(pair)
