"""The simulator itself must never be why a test fails: a board's console
bridge and the daemon's control socket survive power cuts at any moment and
clients that misbehave. Timing is forced with events, not sleeps."""
import json
import os
import select
import socket
import stat
import threading

import pytest

from host_tools.sim import board as board_mod
from host_tools.sim import client
from host_tools.sim.daemon import Sim


class HeldSelect:
    """Stands in for the `select` module in board.py: the board's pump thread
    is stopped in front of its next select() whose read list holds descriptor
    `fd` (it has taken its snapshot of the console descriptor) until the test
    releases it; then its further select() calls are counted."""

    def __init__(self, thread_name):
        self.thread_name = thread_name
        self.fd = None
        self.held = threading.Event()
        self.go = threading.Event()
        self.calls = 0
        self.cond = threading.Condition()

    def __getattr__(self, name):  # poll, POLLHUP, ...: the real module's
        return getattr(select, name)

    def select(self, rl, wl, xl, timeout):
        if threading.current_thread().name == self.thread_name:
            if self.fd is not None and self.fd in rl and not self.go.is_set():
                self.held.set()
                self.go.wait(10)
            with self.cond:
                self.calls += 1
                self.cond.notify_all()
        return select.select(rl, wl, xl, timeout)

    def release_for(self, iterations):
        with self.cond:
            start = self.calls
            self.go.set()
            assert self.cond.wait_for(lambda: self.calls >= start + iterations, 10)


def _open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


@pytest.fixture
def bare_board(tmp_path, monkeypatch):
    """A VirtualBoard whose process is `cat` (an echoing board): the bridge and
    power control without booting MicroPython."""
    fake = tmp_path / "fakeboard"
    fake.write_text("#!/bin/sh\nexec cat\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(board_mod, "micropython_exe", lambda: str(fake))
    held = HeldSelect("board-controller")
    monkeypatch.setattr(board_mod, "select", held)
    b = board_mod.VirtualBoard("controller", "controller", str(tmp_path), uart_path=str(tmp_path / "wire"))
    os.makedirs(b.dir)
    os.mkfifo(os.path.join(b.dir, "ctl.fifo"))
    b.open_console()
    b.power_on()
    yield b, held
    held.go.set()
    b.close()


def test_power_cut_while_the_bridge_holds_the_console_does_not_steal_the_next_socket(bare_board):
    """The race behind `power on` timing out: the pump took the console
    descriptor, a power cut closed it, the daemon's next accept() got the same
    number and the pump read the client's request off the control socket."""
    b, held = bare_board
    old = b._inner
    held.fd = old
    assert held.held.wait(10)  # the pump holds `old` and is about to select() on it
    b.power_off()
    # The daemon's accept() gets the lowest free number: `old`'s if it was closed.
    ours, theirs = socket.socketpair()
    if not _open(old):
        os.dup2(ours.fileno(), old)
        ours.close()
        ours = socket.socket(fileno=old)
    request = b'{"cmd": "power", "board": "controller", "action": "on"}\n'
    theirs.sendall(request)
    held.release_for(3)
    got = ours.recv(4096) if select.select([ours], [], [], 0)[0] else b""
    assert got == request, "the board's bridge read the client's request off the control socket"
    assert ours.fileno() == old or not _open(old), "the dead board's console descriptor leaked"
    ours.close()
    theirs.close()


def test_bridge_keeps_echoing_across_power_cycles(bare_board):
    b, held = bare_board
    held.go.set()
    con = os.open(os.path.realpath(b.console_path), os.O_RDWR | os.O_NOCTTY)
    try:
        board_mod._raw(con)
        for i in range(3):
            b.reset()
            os.write(con, b"ping%d\n" % i)
            got = b""
            while b"ping%d" % i not in got:
                r, _, _ = select.select([con], [], [], 10)
                assert r, "no echo after power cycle %d: %r" % (i, got)
                got += os.read(con, 4096)
    finally:
        os.close(con)


@pytest.fixture
def daemon(tmp_path):
    """The daemon's control socket served in a thread, boards not started."""
    sim = Sim(str(tmp_path), 921600)
    t = threading.Thread(target=sim.serve, daemon=True)
    t.start()
    sock = os.path.join(str(tmp_path), "control.sock")
    while not os.path.exists(sock):
        assert t.is_alive()
        threading.Event().wait(0.01)
    yield sim, str(tmp_path)
    sim.done.set()
    t.join(5)


def _connect(state):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(os.path.join(state, "control.sock"))
    return s


def test_client_that_hangs_up_before_its_answer_does_not_stop_the_daemon(daemon, monkeypatch):
    sim, state = daemon
    entered, leave = threading.Event(), threading.Event()
    real = sim.handle

    def slow(req):
        if req.get("cmd") == "wire":
            entered.set()
            leave.wait(10)
        return real(req)

    monkeypatch.setattr(sim, "handle", slow)
    s = _connect(state)
    s.sendall(b'{"cmd": "wire"}\n')
    assert entered.wait(10)
    s.close()  # gone before the answer is sent: sendall() fails with EPIPE
    leave.set()
    assert client.call(state, "status", timeout=10)["state_dir"] == sim.dir
    assert not sim.done.is_set()


def test_silent_or_bad_clients_get_errors_and_others_are_served(daemon):
    sim, state = daemon
    silent = _connect(state)  # connects and never sends a request
    try:
        # served while the silent client still holds its connection
        assert client.call(state, "status", timeout=5)["baud"] == 921600
        for raw, frag in ((b"[1, 2]\n", "one JSON object"), (b"not json\n", "JSONDecodeError"),
                          (b'{"cmd": "frob"}\n', "unknown command"),
                          (b'{"cmd": "power", "board": "nope", "action": "on"}\n', "KeyError"),
                          (b"x" * (1 << 17), "longer than")):
            s = _connect(state)
            with s:
                s.sendall(raw)
                reply = json.loads(client.recv_line(s))
            assert not reply["ok"] and frag in reply["error"], (raw[:20], reply)
    finally:
        silent.close()
    assert not sim.done.is_set()


# --- the plugin's health check before each test (hil_tests/plugin.py) --------
@pytest.mark.virtual_only("powers a board off and breaks into the REPL")
def test_boards_left_broken_are_brought_back_with_a_warning(sim, controller):
    from hil_tests import plugin
    controller.ser.write(b"\x03")  # the controller drops to the REPL: its firmware no longer answers
    controller.close()
    sim.power("backupdev", "off")
    assert plugin.answers(sim.port("controller")) is False
    with pytest.warns(pytest.PytestWarning) as w:
        plugin._heal_virtual(sim)
    said = " ".join(str(x.message) for x in w)
    assert "controller did not answer" in said and "backupdev did not answer" in said
    assert plugin.answers(sim.port("controller")) and plugin.answers(sim.port("backupdev"))


@pytest.mark.virtual_only("stops the simulator")
def test_a_stopped_simulator_is_restarted_with_a_warning(sim):
    from hil_tests import plugin
    client.down(sim.dir)
    with pytest.warns(pytest.PytestWarning, match="simulator had stopped"):
        plugin._heal_virtual(sim)
    assert plugin.answers(sim.port("controller")) and plugin.answers(sim.port("backupdev"))
