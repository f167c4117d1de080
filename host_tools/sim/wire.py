"""Virtual wire: a null-modem cable between two pseudo-terminals, with a line rate and faults.

Each end is a pseudo-terminal whose slave side is put in raw mode and published as a symlink
(``path_a``, ``path_b``). A virtual board, pyserial, ``sz``/``rz`` or anything else opens that
path as its UART. Bytes written at end A come out at end B and vice versa, paced at the line
rate of 8N1 (10 bits a byte): byte *k* leaves the line at ``max(arrival, line_free) + 10/baud``,
so nothing arrives faster than a real cable would carry it.

The wire keeps both slave fds open itself, so an end may be closed and reopened (a board
reboots) without the wire seeing EIO. Bytes sent towards an end nobody reads pile up in the
kernel pty buffer and are read, stale, by whoever opens it next, like a UART RX FIFO. At most
``QUEUE_LIMIT`` bytes wait on the wire per direction; beyond that the wire stops reading the
sender, whose writes then block as on a full serial driver buffer.

API (all methods thread-safe; results are JSON-serialisable for a control socket)::

    w = Wire(115200, paths=("/tmp/a", "/tmp/b"), seed=None)
    w.start()                  # creates ptys + symlinks, starts the carrier thread
    w.pts                      # ("/dev/pts/N", "/dev/pts/M") after start()
    w.set_faults(ber=0.0, drop=0.0, stall_ms=0, stall_every_s=0.0, direction="both")
    w.cut(seconds)             # every byte on the line in either direction is lost for that long
    w.clear()                  # no faults, cut ended
    w.stats()                  # {"a2b": {...}, "b2a": {...}} counters, see Wire.stats
    w.close()                  # stops the thread, closes fds, removes symlinks
    with Wire(...) as w: ...   # start() / close()

Fault semantics. ``set_faults`` replaces the previous ber/drop/stall settings (a cut is
separate). ``direction`` is "a2b", "b2a" or "both". ``ber`` flips each data bit independently
with that probability; ``drop`` deletes each byte with that probability (the byte still used
its line time). A stall holds the line for ``stall_ms``: bytes queued or arriving meanwhile
leave after it, at line rate. With ``stall_every_s > 0`` a stall starts every that many
seconds (first one ``stall_every_s`` after the call); with ``stall_every_s == 0`` a single
stall starts now. A cut discards the bytes whose transmission time falls inside it.

Standalone (e.g. to benchmark ZMODEM ``sz``/``rz`` through it), until SIGINT/SIGTERM::

    python -m host_tools.sim.wire --baud 115200 --a /tmp/a --b /tmp/b [--ber 1e-5] [--drop 0]
"""
import argparse
import json
import math
import os
import random
import select
import signal
import sys
import threading
import time
import tty

QUEUE_LIMIT = 64 * 1024  # bytes waiting on the wire per direction before the sender is throttled
_READ_SIZE = 16 * 1024
# Deliver in batches at least this far apart: at 921600 baud a byte is 10.85 us, far below
# what a Python thread can schedule one by one.
_MIN_BATCH_S = 0.001
_MAX_SLEEP_S = 0.05
DIRECTIONS = ("a2b", "b2a")


def _positions(rng, p, n):
    """Sorted distinct indices in range(n), each chosen independently with probability p."""
    if p <= 0.0 or n <= 0:
        return ()
    if p >= 1.0:
        return range(n)
    log_q = math.log1p(-p)
    out = []
    i = -1
    while True:
        # Geometric skip: number of unchosen indices before the next chosen one.
        i += 1 + int(math.log(1.0 - rng.random()) / log_q)
        if i >= n:
            return out
        out.append(i)


class _Direction:
    """Bytes in flight one way: a schedule of chunks plus already-due bytes the far pty refused."""

    def __init__(self, name, src, dst):
        self.name = name
        self.src = src
        self.dst = dst
        # [start, bytearray, done]: byte i of the chunk is due at start + (i + 1) * byte_time;
        # bytes [0, done) have been processed.
        self.chunks = []
        self.head = 0  # index of the first live chunk (avoids O(n) pops)
        self.out = bytearray()  # processed and due, waiting for room in the destination pty
        self.line_free = 0.0
        self.pending = 0  # bytes in chunks not yet processed
        self.dst_full = False
        self.stats = {"sent": 0, "delivered": 0, "flipped_bits": 0, "dropped": 0, "cut": 0}

    @property
    def queued(self):
        return self.pending + len(self.out)


class Wire:
    """A paced, fault-injecting null-modem cable between two pseudo-terminals (see module doc)."""

    def __init__(self, baud, paths, seed=None):
        if baud <= 0:
            raise ValueError("baud must be positive")
        if len(paths) != 2:
            raise ValueError("paths must be (path_a, path_b)")
        self.baud = baud
        self.byte_time = 10.0 / baud
        self.paths = tuple(os.path.abspath(p) for p in paths)
        self.pts = None
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._fds = []
        self._links = []
        self._dirs = ()
        self._thread = None
        self._stop = False
        self._wake_r = self._wake_w = None
        self._ber = {d: 0.0 for d in DIRECTIONS}
        self._drop = {d: 0.0 for d in DIRECTIONS}
        self._stall_s = 0.0
        self._stall_every_s = 0.0
        self._stall_dirs = ()
        self._next_stall = None
        self._cut_start = self._cut_end = 0.0

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self):
        if self._thread is not None:
            raise RuntimeError("wire already started")
        try:
            ends = []
            for path in self.paths:
                master, slave = os.openpty()
                self._fds += [master, slave]
                tty.setraw(slave)
                os.set_blocking(master, False)
                ends.append((master, os.ttyname(slave)))
                self._link(os.ttyname(slave), path)
                self._links.append((path, os.ttyname(slave)))
            self._wake_r, self._wake_w = os.pipe()
            self._fds += [self._wake_r, self._wake_w]
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
        except BaseException:
            self._release()
            raise
        (ma, pts_a), (mb, pts_b) = ends
        self.pts = (pts_a, pts_b)
        self._dirs = (_Direction("a2b", ma, mb), _Direction("b2a", mb, ma))
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wire", daemon=True)
        self._thread.start()
        return self

    def close(self):
        if self._thread is not None:
            self._stop = True
            self._wake()
            self._thread.join()
            self._thread = None
        self._release()

    def __enter__(self):
        if self._thread is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _link(target, path):
        if os.path.lexists(path) and not os.path.islink(path):
            raise FileExistsError(f"{path} exists and is not a symlink")
        tmp = f"{path}.wire-{os.getpid()}"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, path)  # atomic: a board polling the path never sees it missing

    def _release(self):
        for path, pts in self._links:
            # Remove only our own link: someone may have re-pointed the path meanwhile.
            if os.path.islink(path) and os.readlink(path) == pts:
                os.unlink(path)
        self._links = []
        for fd in self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._fds = []
        self._wake_r = self._wake_w = None
        self.pts = None

    # ---- faults ----------------------------------------------------------------------------

    def set_faults(self, ber=0.0, drop=0.0, stall_ms=0, stall_every_s=0.0, direction="both"):
        if direction not in ("both",) + DIRECTIONS:
            raise ValueError("direction must be 'a2b', 'b2a' or 'both'")
        if not (0.0 <= ber <= 1.0 and 0.0 <= drop <= 1.0):
            raise ValueError("ber and drop are probabilities in [0, 1]")
        if stall_ms < 0 or stall_every_s < 0:
            raise ValueError("stall_ms and stall_every_s must be >= 0")
        chosen = DIRECTIONS if direction == "both" else (direction,)
        with self._lock:
            for d in DIRECTIONS:
                self._ber[d] = ber if d in chosen else 0.0
                self._drop[d] = drop if d in chosen else 0.0
            self._stall_s = stall_ms / 1000.0
            self._stall_every_s = float(stall_every_s)
            self._stall_dirs = chosen
            if stall_ms > 0:
                self._next_stall = time.monotonic() + self._stall_every_s
            else:
                self._next_stall = None
        self._wake()

    def cut(self, seconds):
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        now = time.monotonic()
        with self._lock:
            if self._cut_end <= now:
                self._cut_start = now
            self._cut_end = max(self._cut_end, now + seconds)
        self._wake()

    def clear(self):
        self.set_faults()
        with self._lock:
            self._cut_end = min(self._cut_end, time.monotonic())

    def stats(self):
        """Per direction: sent (bytes taken from the sender), delivered (bytes handed to the
        receiver's pty), flipped_bits, dropped, cut (bytes lost to a cut), queued (on the wire)."""
        with self._lock:
            out = {d: self._zero_stats() for d in DIRECTIONS}
            for d in self._dirs:
                out[d.name] = dict(d.stats, queued=d.queued)
            return out

    @staticmethod
    def _zero_stats():
        return {"sent": 0, "delivered": 0, "flipped_bits": 0, "dropped": 0, "cut": 0, "queued": 0}

    def _wake(self):
        if self._wake_w is not None and self._thread is not None:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass  # a wake-up is already pending (or the wire is closing)

    # ---- carrier thread --------------------------------------------------------------------

    def _run(self):
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        a2b, b2a = self._dirs
        while not self._stop:
            with self._lock:
                now = time.monotonic()
                for d in self._dirs:
                    self._deliver(d, now)
                # After delivery, so every byte still scheduled is due after `now` and the
                # shift holds it until the stall is over.
                if self._next_stall is not None and now >= self._next_stall:
                    self._stall(now)
                timeout = self._timeout(now)
            # One master is the source of one direction and the destination of the other.
            for src_dir, dst_dir in ((a2b, b2a), (b2a, a2b)):
                mask = 0
                if src_dir.queued < QUEUE_LIMIT:
                    mask |= select.POLLIN
                if dst_dir.dst_full:
                    mask |= select.POLLOUT
                poller.register(src_dir.src, mask)
            events = poller.poll(timeout * 1000.0)
            now = time.monotonic()
            for fd, ev in events:
                if fd == self._wake_r:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                if ev & select.POLLOUT:
                    for d in self._dirs:
                        if d.dst == fd:
                            d.dst_full = False
                if ev & select.POLLIN:
                    for d in self._dirs:
                        if d.src == fd:
                            self._receive(d, now)

    def _receive(self, d, now):
        try:
            data = os.read(d.src, min(_READ_SIZE, QUEUE_LIMIT - d.queued + 1))
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        with self._lock:
            d.stats["sent"] += len(data)
            d.pending += len(data)
            tail = d.chunks[-1] if len(d.chunks) > d.head else None
            if tail is not None and now <= tail[0] + len(tail[1]) * self.byte_time:
                # Line still busy with the tail: these bytes follow it back to back.
                tail[1] += data
            else:
                d.chunks.append([max(now, d.line_free), bytearray(data), 0])
                tail = d.chunks[-1]
            d.line_free = max(d.line_free, tail[0] + len(tail[1]) * self.byte_time)

    def _stall(self, now):
        hold = self._stall_s
        for d in self._dirs:
            if d.name not in self._stall_dirs:
                continue
            for chunk in d.chunks[d.head:]:
                chunk[0] += hold
            d.line_free = max(d.line_free + hold, now + hold)
        if self._stall_every_s > 0:
            self._next_stall += self._stall_every_s
            if self._next_stall <= now:
                self._next_stall = now + self._stall_every_s
        else:
            self._next_stall = None

    def _deliver(self, d, now):
        bt = self.byte_time
        while d.head < len(d.chunks):
            chunk = d.chunks[d.head]
            start, data, done = chunk
            due = min(len(data), int((now - start) / bt))
            if due > done:
                self._carry(d, start, data, done, due)
                chunk[2] = due
            if due < len(data):
                break
            d.head += 1
        if d.head > 64 and d.head * 2 > len(d.chunks):
            del d.chunks[:d.head]
            d.head = 0
        self._flush(d)

    def _carry(self, d, start, data, lo, hi):
        """Put bytes [lo, hi) of a chunk through the faults into the output buffer."""
        bt = self.byte_time
        # Indices whose due time start + (i + 1) * bt falls inside the cut window.
        c_lo = max(lo, math.ceil((self._cut_start - start) / bt) - 1)
        c_hi = min(hi, math.ceil((self._cut_end - start) / bt) - 1)
        if c_lo < c_hi:
            d.stats["cut"] += c_hi - c_lo
            self._faulty(d, data[lo:c_lo])
            self._faulty(d, data[c_hi:hi])
        else:
            self._faulty(d, data[lo:hi])
        d.pending -= hi - lo

    def _faulty(self, d, seg):
        if not seg:
            return
        drop = self._drop[d.name]
        if drop > 0.0:
            gone = _positions(self._rng, drop, len(seg))
            if gone:
                kept = bytearray()
                prev = 0
                for i in gone:
                    kept += seg[prev:i]
                    prev = i + 1
                kept += seg[prev:]
                d.stats["dropped"] += len(seg) - len(kept)
                seg = kept
        ber = self._ber[d.name]
        if ber > 0.0:
            flips = _positions(self._rng, ber, len(seg) * 8)
            for bit in flips:
                seg[bit >> 3] ^= 1 << (bit & 7)
            d.stats["flipped_bits"] += len(flips)
        d.out += seg

    def _flush(self, d):
        while d.out and not d.dst_full:
            try:
                n = os.write(d.dst, d.out)
            except BlockingIOError:
                # Nobody is draining that end: keep the bytes and retry when it has room.
                d.dst_full = True
                return
            except OSError:
                return
            del d.out[:n]
            d.stats["delivered"] += n

    def _timeout(self, now):
        nxt = now + _MAX_SLEEP_S
        for d in self._dirs:
            if d.head < len(d.chunks) and not d.dst_full:
                start, _, done = d.chunks[d.head]
                nxt = min(nxt, start + (done + 1) * self.byte_time)
        if self._next_stall is not None:
            nxt = min(nxt, self._next_stall)
        return max(nxt - now, _MIN_BATCH_S)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m host_tools.sim.wire", description=__doc__.split("\n")[0])
    ap.add_argument("--baud", type=int, default=115200)
    ap.add_argument("--a", required=True, help="symlink path for end A")
    ap.add_argument("--b", required=True, help="symlink path for end B")
    ap.add_argument("--ber", type=float, default=0.0, help="bit error rate, both directions")
    ap.add_argument("--drop", type=float, default=0.0, help="byte drop probability, both directions")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Wire(args.baud, (args.a, args.b), seed=args.seed) as wire:
        if args.ber or args.drop:
            wire.set_faults(ber=args.ber, drop=args.drop)
        print(f"A {wire.paths[0]} -> {wire.pts[0]}", flush=True)
        print(f"B {wire.paths[1]} -> {wire.pts[1]}", flush=True)
        while not stop.wait(0.5):
            pass
        print(json.dumps(wire.stats()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
