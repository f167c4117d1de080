"""HIL plugin: the board pair under test.

By default a virtual pair (two `micropython` boards and the wire) is started for
the session and torn down at the end. `--controller-port` / `--backupdev-port`
(device path, USB serial number or pyserial URL) select real boards instead;
tests marked `virtual_only` (they need the wire's fault injection, power
control or time warps a real board cannot do) are then skipped with the reason.
"""
import os
import shutil
import tempfile

import pytest

from host_tools.console import BoardConsole
from host_tools.sim import client


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
    yield pair
    pair.close()
    shutil.rmtree(pair.dir, ignore_errors=True)


def open_console(request, sim, role, cls=BoardConsole, **kw):
    """A synced console on the board of `role`: the real one given on the
    command line, else the session's virtual one."""
    port = request.config.getoption("--%s-port" % role)
    if port:
        from host_tools.target import resolve_port_spec
        port = resolve_port_spec(port)
    else:
        port = sim.port(role)
    con = cls(port, **kw)
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
