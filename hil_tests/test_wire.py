"""The virtual wire seen from its two ends, as a board (or any serial program) sees it."""
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

import pytest
import serial

from host_tools.sim.wire import QUEUE_LIMIT, Wire

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = 921600


class Receiver:
    """Reads one end in a thread, timestamping every read that returned data."""

    def __init__(self, port):
        self.port = port
        self.arrivals = []  # (monotonic time, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            chunk = self.port.read(max(1, self.port.in_waiting))
            if chunk:
                self.arrivals.append((time.monotonic(), chunk))

    @property
    def data(self):
        return b"".join(c for _, c in self.arrivals)

    def wait_for(self, n, timeout):
        deadline = time.monotonic() + timeout
        while len(self.data) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.data

    def wait_quiet(self, quiet=0.3, timeout=10.0):
        """Wait until nothing has arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            last = self.arrivals[-1][0] if self.arrivals else 0.0
            if time.monotonic() - last > quiet:
                break
            time.sleep(0.05)
        return self.data

    def gaps(self):
        times = [t for t, _ in self.arrivals]
        return [b - a for a, b in zip(times, times[1:])]

    def stop(self):
        self._stop.set()
        self._thread.join()


@pytest.fixture
def link(tmp_path):
    """make(baud) -> (wire, port_a, port_b, rx_at_a, rx_at_b); everything is torn down after."""
    made = []

    def make(baud=FAST):
        wire = Wire(baud, (tmp_path / "a", tmp_path / "b"), seed=1234).start()
        made.append(wire)
        ports = [serial.Serial(str(p), baud, timeout=0.02) for p in wire.paths]
        made.extend(ports)
        rx = [Receiver(p) for p in ports]
        made.extend(rx)
        return (wire, *ports, *rx)

    yield make
    for obj in reversed(made):
        (obj.stop if isinstance(obj, Receiver) else obj.close)()


def rate(rx):
    """Bytes per second from the first byte received to the last."""
    (t0, first), (t1, _) = rx.arrivals[0], rx.arrivals[-1]
    return (len(rx.data) - len(first)) / (t1 - t0)


def bit_errors(a, b):
    return sum(bin(x ^ y).count("1") for x, y in zip(a, b))


def is_subsequence(small, big):
    it = iter(big)
    return all(byte in it for byte in small)


@pytest.mark.parametrize("baud", [115200, FAST])
def test_bulk_transfer_arrives_intact_at_line_rate(link, baud):
    wire, a, b, _, rx_b = link(baud)
    data = os.urandom(baud // 10 * 2)  # ~2 s of line time
    a.write(data)
    assert rx_b.wait_for(len(data), timeout=10) == data
    assert rate(rx_b) == pytest.approx(baud / 10, rel=0.10)
    assert wire.stats()["a2b"]["delivered"] == len(data)


def test_both_directions_at_once_are_full_duplex(link):
    wire, a, b, rx_a, rx_b = link(FAST)
    n = FAST // 10  # 1 s each way
    d_ab, d_ba = os.urandom(n), os.urandom(n)
    t0 = time.monotonic()
    writer = threading.Thread(target=b.write, args=(d_ba,))
    writer.start()
    a.write(d_ab)
    writer.join()
    assert rx_b.wait_for(n, timeout=10) == d_ab
    assert rx_a.wait_for(n, timeout=10) == d_ba
    elapsed = max(rx_a.arrivals[-1][0], rx_b.arrivals[-1][0]) - t0
    # Half duplex (or a shared line) would need 2 s for both.
    assert 0.9 < elapsed < 1.5
    assert rate(rx_a) == pytest.approx(FAST / 10, rel=0.10)
    assert rate(rx_b) == pytest.approx(FAST / 10, rel=0.10)


def test_bit_errors_corrupt_bytes_but_keep_length(link):
    wire, a, b, _, rx_b = link(FAST)
    wire.set_faults(ber=1e-3, direction="a2b")
    data = os.urandom(20000)
    a.write(data)
    got = rx_b.wait_for(len(data), timeout=10)
    assert len(rx_b.wait_quiet()) == len(data)
    flipped = bit_errors(data, got)
    assert flipped == wire.stats()["a2b"]["flipped_bits"]
    assert 60 < flipped < 320  # 160 expected for 160000 bits
    assert wire.stats()["b2a"]["flipped_bits"] == 0


def test_dropped_bytes_never_arrive(link):
    wire, a, b, _, rx_b = link(FAST)
    wire.set_faults(drop=0.05)
    data = os.urandom(20000)
    a.write(data)
    time.sleep(20000 / (FAST / 10))
    got = rx_b.wait_quiet()
    dropped = wire.stats()["a2b"]["dropped"]
    assert 600 < dropped < 1400  # 1000 expected
    assert len(got) == len(data) - dropped
    assert is_subsequence(got, data)


def test_periodic_stall_leaves_gaps_of_stall_length_and_loses_nothing(link):
    wire, a, b, _, rx_b = link(FAST)
    wire.set_faults(stall_ms=200, stall_every_s=0.6)
    data = os.urandom(int(FAST / 10 * 1.5))
    a.write(data)
    assert rx_b.wait_for(len(data), timeout=10) == data
    stalls = [g for g in rx_b.gaps() if g > 0.1]
    assert len(stalls) >= 2  # at 0.6 s and 1.2 s at least
    assert all(0.15 < g < 0.6 for g in stalls)


def test_single_stall_holds_only_the_chosen_direction(link):
    wire, a, b, rx_a, rx_b = link(FAST)
    n = int(FAST / 10 * 1.0)
    d_ab, d_ba = os.urandom(n), os.urandom(n)
    writer = threading.Thread(target=b.write, args=(d_ba,))
    writer.start()
    a.write(d_ab[: n // 4])
    wire.set_faults(stall_ms=500, direction="b2a")
    a.write(d_ab[n // 4 :])
    writer.join()
    assert rx_a.wait_for(n, timeout=10) == d_ba
    assert rx_b.wait_for(n, timeout=10) == d_ab
    assert 0.4 < max(rx_a.gaps()) < 0.9
    assert max(rx_b.gaps()) < 0.25


def test_cut_loses_bytes_sent_during_it_and_recovers_after(link):
    wire, a, b, rx_a, rx_b = link(FAST)
    a.write(b"before")
    assert rx_b.wait_for(6, timeout=5) == b"before"
    wire.cut(1.0)
    time.sleep(0.2)
    a.write(b"during" * 10)
    b.write(b"during" * 10)
    time.sleep(1.2)
    a.write(b"after")
    b.write(b"after")
    assert rx_b.wait_for(11, timeout=5) == b"beforeafter"
    assert rx_a.wait_for(5, timeout=5) == b"after"
    stats = wire.stats()
    assert stats["a2b"]["cut"] == stats["b2a"]["cut"] == 60


def test_clear_restores_a_clean_line(link):
    wire, a, b, _, rx_b = link(FAST)
    wire.set_faults(ber=0.01, drop=0.1, stall_ms=300, stall_every_s=0.1)
    wire.cut(30)
    wire.clear()
    data = os.urandom(FAST // 10 // 2)
    a.write(data)
    assert rx_b.wait_for(len(data), timeout=5) == data
    assert rate(rx_b) == pytest.approx(FAST / 10, rel=0.10)


def test_an_end_can_be_closed_and_reopened(link):
    wire, a, b, rx_a, rx_b = link(FAST)
    for i in range(3):
        rx_b.stop()
        b.close()
        b = serial.Serial(wire.paths[1], FAST, timeout=0.02)
        rx_b = Receiver(b)
        try:
            msg = b"reopened %d" % i
            a.write(msg)
            assert rx_b.wait_for(len(msg), timeout=5) == msg
            b.write(b"back")
            assert rx_a.wait_for(4 * (i + 1), timeout=5) == b"back" * (i + 1)
        finally:
            if i == 2:
                rx_b.stop()
                b.close()


def test_writer_is_throttled_when_far_end_does_not_read_and_nothing_is_lost(tmp_path):
    with Wire(FAST, (tmp_path / "a", tmp_path / "b")) as wire:
        b = serial.Serial(str(tmp_path / "b"), FAST, timeout=0.2)  # open, but not read yet
        fd = os.open(tmp_path / "a", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            sent = bytearray()
            block = os.urandom(4096)
            refused_since = None
            deadline = time.monotonic() + 10
            # Write until the wire has stopped taking bytes for 0.5 s.
            while time.monotonic() < deadline:
                try:
                    sent += block[: os.write(fd, block)]
                    refused_since = None
                except BlockingIOError:
                    refused_since = refused_since or time.monotonic()
                    if time.monotonic() - refused_since > 0.5:
                        break
                    time.sleep(0.01)
            assert refused_since is not None, "writer was never throttled"
            assert len(sent) < 4 * QUEUE_LIMIT
            assert wire.stats()["a2b"]["queued"] <= QUEUE_LIMIT + 16 * 1024
            got = bytearray()
            while len(got) < len(sent):
                chunk = b.read(65536)
                if not chunk:
                    break
                got += chunk
            assert got == sent
        finally:
            os.close(fd)
            b.close()


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_close_leaves_no_threads_fds_or_symlinks(tmp_path):
    a_path, b_path = tmp_path / "a", tmp_path / "b"
    a_path.symlink_to("/nonexistent")  # a stale link from an earlier run is replaced
    fds, threads = _open_fds(), threading.active_count()
    wire = Wire(FAST, (a_path, b_path)).start()
    assert os.readlink(a_path) == wire.pts[0]
    with serial.Serial(str(a_path), FAST, timeout=1) as a, serial.Serial(str(b_path), FAST, timeout=1) as b:
        a.write(b"ping")
        assert b.read(4) == b"ping"
    wire.close()
    assert not os.path.lexists(a_path) and not os.path.lexists(b_path)
    assert threading.active_count() == threads
    assert _open_fds() == fds


def test_refuses_to_replace_a_regular_file(tmp_path):
    (tmp_path / "b").write_text("not a tty")
    fds = _open_fds()
    with pytest.raises(FileExistsError):
        Wire(FAST, (tmp_path / "a", tmp_path / "b")).start()
    assert (tmp_path / "b").read_text() == "not a tty"
    assert not os.path.lexists(tmp_path / "a")
    assert _open_fds() == fds


def test_standalone_command_runs_until_sigterm(tmp_path):
    a_path, b_path = str(tmp_path / "a"), str(tmp_path / "b")
    proc = subprocess.Popen(
        [sys.executable, "-m", "host_tools.sim.wire", "--baud", "115200", "--a", a_path, "--b", b_path],
        stdout=subprocess.PIPE, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "wire did not print its paths"
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith(f"A {a_path} -> /dev/pts/")
        assert lines[1].startswith(f"B {b_path} -> /dev/pts/")
        with serial.Serial(a_path, 115200, timeout=2) as a, serial.Serial(b_path, 115200, timeout=2) as b:
            a.write(b"hello B")
            b.write(b"hello A")
            assert b.read(7) == b"hello B"
            assert a.read(7) == b"hello A"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0
        assert json.loads(out)["a2b"]["delivered"] == 7
        assert not os.path.lexists(a_path) and not os.path.lexists(b_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
