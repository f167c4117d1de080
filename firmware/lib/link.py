# Link between the two boards (cable 14): frames with CRC-32 over a UART, a
# reliable byte stream with selective acknowledgement, and on top of it tagged
# requests / responses. Frame layout, kinds, window and timer rules: LINK.md.
import os
import struct
from binascii import crc32

try:
    from micropython import const
except ImportError:  # CPython: only the frame codec is used there (fuzzing)

    def const(x):  # type: ignore[misc]  # the stubs' const is generic
        return x


try:
    import asyncio
    from time import ticks_ms, ticks_diff, ticks_add
    import supervisor
except ImportError:  # CPython
    asyncio = None  # type: ignore[assignment]

SYNC = b"\xa5\x3c"
HDR = const(12)  # sync(2) kind|addr(1) tx(1) echo(1) seq(2) ack(2) len(2) hck(1)
OVH = const(16)  # HDR + CRC-32
_RESIDUE = const(0x2144DF1C)  # crc32 over bytes + their little-endian crc32

DATA = const(1)
ACK = const(2)
SYN = const(3)
SYNACK = const(4)

MSGH = const(5)  # message header in the stream: len(2) type|addr(1) tag(1) op/status(1)
REQ = const(0)
RSP = const(1)
ST_ERR = const(255)  # status of a response whose handler raised

_FRAG_MIN = const(32)
_MAXR = const(32)  # out-of-order ranges the receiver keeps
_SACKN = const(8)  # of which an ACK reports the first
_ACKH = const(3)  # ACK payload before the ranges: edge(2) trail(1)
_RTO_MIN = const(40)
_RTO_INIT = const(500)
_RTO_MAX = const(2000)
_TICK = const(10)
_DEADLINE_MS = const(5000)  # the tick's check-in deadline, for the watchdog
# segment flags
_SACKED = const(1)  # the receiver has it (out of order)
_LOST = const(2)  # to be sent again
_RETX = const(4)  # was sent more than once
_ZERO = b"\0\0\0\0"


def encode(buf, kind, addr, tx, echo, seq, ack, n):
    # Frame the n payload bytes already at buf[HDR:]; returns the frame length.
    struct.pack_into("<BBBBBHHH", buf, 0, 0xA5, 0x3C, kind << 4 | addr, tx, echo, seq, ack, n)
    mv = memoryview(buf)
    buf[11] = crc32(mv[2:11]) & 0xFF
    struct.pack_into("<I", buf, HDR + n, crc32(mv[2 : HDR + n]))
    return OVH + n


class Decoder:
    # Finds frames in a byte stream. Fill space() and call filled(n); then
    # next() returns True with kind/addr/tx/echo/seq/ack/payload set, while frames
    # last. payload is a view into the buffer, valid until the next space().
    def __init__(self, frame_max):
        self.fmax = frame_max
        self.buf = bytearray(2 * (frame_max + OVH))
        self.mv = memoryview(self.buf)
        self.lo = self.hi = 0
        self.crc_errors = self.resyncs = 0
        self.kind = self.addr = self.tx = self.echo = self.seq = self.ack = 0
        self.payload = None

    def space(self):
        lo = self.lo
        if lo:
            n = self.hi - lo
            self.mv[:n] = self.mv[lo : self.hi]
            self.lo = 0
            self.hi = n
        return self.mv[self.hi :]

    def filled(self, n):
        self.hi += n

    def next(self):
        buf = self.buf
        mv = self.mv
        while True:
            lo = self.lo
            hi = self.hi
            i = buf.find(SYNC, lo, hi)
            if i < 0:
                # keep a trailing first sync byte: the marker may be split
                i = hi - 1 if hi > lo and buf[hi - 1] == 0xA5 else hi
            if i > lo:
                self.resyncs += 1
                self.lo = i
            if hi - i < HDR:
                return False
            n = buf[i + 9] | buf[i + 10] << 8
            # The header check rejects a corrupt length at once instead of
            # waiting for bytes that belong to the next frames.
            if n > self.fmax or buf[i + 11] != crc32(mv[i + 2 : i + 11]) & 0xFF:
                self.crc_errors += 1
                self.lo = i + 1
                continue
            e = i + OVH + n
            if e > hi:
                return False
            if crc32(mv[i + 2 : e]) != _RESIDUE:
                self.crc_errors += 1
                self.lo = i + 1  # rescan: a good frame may start inside this one
                continue
            self.kind = buf[i + 2] >> 4
            self.addr = buf[i + 2] & 15
            self.tx = buf[i + 3]
            self.echo = buf[i + 4]
            self.seq = buf[i + 5] | buf[i + 6] << 8
            self.ack = buf[i + 7] | buf[i + 8] << 8
            self.payload = mv[i + HDR : e - 4]
            self.lo = e
            return True


def _rput(ring, pos, src):
    # Copy src into the ring at stream position pos.
    m = len(ring)
    p = pos & (m - 1)
    n = len(src)
    k = m - p
    if n <= k:
        ring[p : p + n] = src
    else:
        ring[p:] = src[:k]
        ring[: n - k] = src[k:]


def _rget(ring, pos, dst):
    m = len(ring)
    p = pos & (m - 1)
    n = len(dst)
    k = m - p
    if n <= k:
        dst[:] = ring[p : p + n]
    else:
        dst[:k] = ring[p:]
        dst[k:] = ring[: n - k]


class LinkError(Exception):
    pass


class LinkDown(LinkError):  # nothing heard from the peer until the deadline
    pass


class LinkTimeout(LinkError):  # link up, but no response in time
    pass


class LinkReset(LinkError):  # a side restarted: the request was dropped
    pass


class Link:
    def __init__(self, stream, payload_max=4096, window=32, keepalive_ms=250, dead_ms=1500,
                 frame_max=1024, baud=115200, on_state=None):
        if not (0 < payload_max <= 4096 and 1 <= window <= 64 and frame_max >= _FRAG_MIN):
            raise ValueError("bad link parameters")
        frame_max = min(frame_max, payload_max + MSGH)
        self.payload_max = payload_max
        self._s = stream
        self._win = window
        self._ka = keepalive_ms
        self._dead = dead_ms
        self._fmax = frame_max
        # No timeout shorter than two of the longest frames take on the line.
        self._rto_min = _RTO_MIN + 20000 * (frame_max + OVH) // baud
        self._on_state = on_state
        r = 1024
        while r < payload_max + MSGH + frame_max:  # a whole message plus a frame
            r <<= 1
        self._tb = memoryview(bytearray(r))  # sent, not yet acknowledged
        self._rb = memoryview(bytearray(r))  # received, not yet consumed
        self._fb = bytearray(OVH + max(frame_max, _ACKH + 4 * _SACKN, 14))
        self._fv = memoryview(self._fb)
        self._mb = None  # request being served: allocated by serve(), as only a server needs it
        self._th = bytearray(MSGH)
        self._rh = bytearray(MSGH)
        self._rhv = memoryview(self._rh)
        self._dec = Decoder(frame_max)
        self._tx_ev = asyncio.Event()
        self._space_ev = asyncio.Event()
        self._tx_lock = asyncio.Lock()
        self._sync_ev = asyncio.Event()
        self._req_ev = asyncio.Event()
        self._st = {"tx_frames": 0, "rx_frames": 0, "retransmits": 0, "timeouts": 0, "duplicates": 0,
                    "tx_bytes": 0, "rx_bytes": 0, "ups": 0, "downs": 0, "sessions": 0}
        self._pend = {}  # tag -> [event, status, payload or exception, into]
        self._tag = 0
        self._handler = None
        self._req = None
        self._tasks = []
        self._epoch = 0
        self._up = False
        self._pwnd = 0
        self._ppmax = payload_max
        self._fcap = frame_max
        self._stamp = 0  # transmissions so far; the low byte goes out as tx
        self._echo = 0  # tx of the newest intact frame from the peer
        self._trail = 0  # damaged frames from the peer since that one
        self._hi = -1  # newest stamp the peer has echoed
        self._t_prog = ticks_ms()  # when it last moved
        self._last_rx = self._last_tx = ticks_ms()
        self._restart()

    # ---- public -----------------------------------------------------------

    def start(self):
        # under the supervisor: restarted if they fail; the tick checks in as "link"
        self._tasks = [supervisor.start("link rx", self._rx), supervisor.start("link tx", self._tx),
                       supervisor.start("link", self._tick, _DEADLINE_MS)]

    def serve(self, handler):
        # async handler(addr, op, payload) -> (status, payload); payload is a
        # memoryview valid until the handler returns. One request at a time.
        self._handler = handler
        self._mb = memoryview(bytearray(self.payload_max))
        self._tasks.append(supervisor.start("link serve", self._serve))

    def stop(self):
        for t in self._tasks:
            t.cancel()
        self._tasks = []
        supervisor.unregister("link")
        self._fail(LinkDown, "link stopped")

    @property
    def up(self):
        return self._up

    def stats(self):
        d = dict(self._st)
        d["crc_errors"] = self._dec.crc_errors
        d["resyncs"] = self._dec.resyncs
        d["up"] = self._up
        d["rtt_ms"] = self._srtt
        d["frame"] = self._frag
        return d

    async def request(self, addr, op, payload=b"", timeout_ms=5000, into=None, head=b""):
        # -> (status, response payload). With `into` (a writable buffer) the
        # payload is copied there and returned as a memoryview: no allocation.
        # head: bytes sent in front of payload (an LBA), saving the caller a copy.
        if len(head) + len(payload) > self._pmax() or not 0 <= addr <= 15:
            raise ValueError("payload too large or bad address")
        if len(self._pend) > 250:
            raise LinkError("too many requests")
        deadline = ticks_add(ticks_ms(), timeout_ms)
        while not self._synced:
            await self._wait(self._sync_ev, deadline)
        t = self._tag
        while True:
            t = (t + 1) & 0xFF  # round robin: a late response cannot meet a reused tag
            if t not in self._pend:
                break
        self._tag = t
        p = [asyncio.Event(), None, None, into]
        self._pend[t] = p
        try:
            await self._send(REQ, addr, t, op, payload, self._epoch, deadline, head)
            await self._wait(p[0], deadline)
        finally:
            self._pend.pop(t, None)
        if p[1] is None:
            raise p[2]
        return p[1], p[2]

    # ---- message layer ----------------------------------------------------

    def _pmax(self):
        return min(self.payload_max, self._ppmax)

    async def _wait(self, ev, deadline):
        if deadline is None:
            await ev.wait()
            return
        t = ticks_diff(deadline, ticks_ms())
        if t > 0:
            try:
                await asyncio.wait_for_ms(ev.wait(), t)
                return
            except asyncio.TimeoutError:
                pass
        if self._up:
            raise LinkTimeout("no response in time")
        raise LinkDown("link down")

    async def _send(self, typ, addr, tag, code, payload, epoch, deadline, head=b""):
        n = len(head) + len(payload)
        need = MSGH + n
        # FIFO: messages enter the stream in the order request() was called, so a
        # writer pipelining WRITEs keeps its blocks in order (the lock is fair).
        async with self._tx_lock:
            while True:
                if epoch != self._epoch:
                    raise LinkReset("session restarted")
                if len(self._tb) - ((self._end - self._una) & 0xFFFF) >= need:
                    break
                self._space_ev.clear()  # the lock holder is its only waiter
                await self._wait(self._space_ev, deadline)
        e = self._end
        struct.pack_into("<HBBB", self._th, 0, n, typ << 4 | addr, tag, code)
        _rput(self._tb, e, self._th)
        if head:
            _rput(self._tb, e + MSGH, head)
        _rput(self._tb, e + MSGH + len(head), memoryview(payload))
        self._end = (e + need) & 0xFFFF
        self._mends.append((self._end, addr))
        self._st["tx_bytes"] += n
        self._tx_ev.set()

    def _deliver(self):
        # Consume whole messages from the receive ring, in stream order.
        rb = self._rb
        while True:
            c = self._rcons
            avail = (self._rnxt - c) & 0xFFFF
            if avail < MSGH:
                return
            _rget(rb, c, self._rhv)
            n, ta, tag, code = struct.unpack("<HBBB", self._rh)
            if n > self.payload_max:
                self._restart()  # peer breaks the protocol: start a new session
                return
            if avail < MSGH + n:
                return
            body = c + MSGH
            if ta >> 4 == REQ:
                if self._req is not None or self._handler is None:
                    return  # served one at a time; the rest waits in the ring
                _rget(rb, body, self._mb[:n])  # type: ignore[index]  # a handler means serve() made _mb
                self._req = (ta & 15, tag, code, n, self._epoch)
                self._req_ev.set()
            else:
                p = self._pend.pop(tag, None)
                if p is not None:
                    buf = bytearray(n) if p[3] is None else p[3]
                    if len(buf) < n:
                        p[2] = LinkError("response larger than buffer")
                    else:
                        dst = memoryview(buf)[:n]
                        _rget(rb, body, dst)
                        p[1] = code
                        p[2] = buf if p[3] is None else dst
                    p[0].set()
            self._rcons = (body + n) & 0xFFFF
            self._st["rx_bytes"] += n
            self._ack_due = True  # window update

    async def _serve(self):
        while True:
            await self._req_ev.wait()
            self._req_ev.clear()
            addr, tag, op, n, ep = self._req  # type: ignore[misc]  # set with the event
            try:
                st, out = await self._handler(addr, op, self._mb[:n])  # type: ignore[misc,index]  # serve() set both
                if len(out) > self._pmax():
                    raise ValueError("response too large")
            except Exception as e:  # the requester gets the error, the server lives on
                st, out = ST_ERR, str(e).encode()[: self._pmax()]
            try:
                await self._send(RSP, addr, tag, st, out, ep, None)
            except LinkReset:
                pass
            self._req = None
            self._deliver()
            self._tx_ev.set()

    def _fail(self, cls, msg):
        for p in self._pend.values():
            p[2] = cls(msg)
            p[0].set()
        self._pend.clear()

    # ---- sessions ---------------------------------------------------------

    def _restart(self):
        # New own session: the peer resets too when it sees the new id.
        sid = _ZERO
        while sid == _ZERO:
            sid = os.urandom(4)
        self._sid = sid
        self._peer = _ZERO
        self._unsync()
        self._reset()
        self._syn = SYN
        self._tx_ev.set()

    def _unsync(self):
        self._synced = False
        self._sync_ev.clear()
        if self._up:
            self._set_up(False)

    def _reset(self):
        # Both directions start afresh at stream offset 0.
        self._epoch += 1
        self._una = self._nxt = self._end = 0
        self._segs = []  # [offset, length, stamp, sent_ms, flags, addr] in offset order
        self._mends = []  # (end offset, addr) of messages not yet sent once
        self._edge = self._pwnd
        self._rnxt = self._rcons = 0
        self._rs = []  # out-of-order ranges [a0, b0, a1, b1..] relative to _rnxt
        self._frag = self._fcap
        self._good = 0
        self._srtt = -1
        self._rttv = 0
        self._rto = _RTO_INIT
        self._ack_due = False
        self._fail(LinkReset, "link session restarted")
        self._space_ev.set()  # a waiting sender sees the new epoch

    def _on_syn(self, kind, p):
        if len(p) < 14:
            return
        s = bytes(p[0:4])
        if s != self._peer:
            if self._peer != _ZERO:
                self._st["sessions"] += 1
            self._peer = s
            self._pwnd, self._ppmax, f = struct.unpack_from("<HHH", p, 8)
            self._fcap = max(min(self._fmax, f), _FRAG_MIN)
            self._unsync()
            self._reset()
        if not self._synced and bytes(p[4:8]) == self._sid:
            self._synced = True
            self._sync_ev.set()
            self._last_rx = ticks_ms()
            self._set_up(True)
        if not self._synced:
            self._syn = SYN
        elif kind == SYN:
            self._syn = SYNACK
        self._tx_ev.set()

    def _set_up(self, v):
        self._up = v
        self._st["ups" if v else "downs"] += 1
        if v:
            self._lose()  # the wire is back: resend now, not at the backed-off timer
        if self._on_state:
            self._on_state(v)

    # ---- receiving --------------------------------------------------------

    async def _rx(self):
        sr = asyncio.StreamReader(self._s)
        d = self._dec
        while True:
            n = await sr.readinto(d.space())
            if not n:
                await asyncio.sleep_ms(_TICK)  # hang-up: readable but empty, don't spin
                continue
            d.filled(n)
            bad = d.crc_errors
            while d.next():
                self._st["rx_frames"] += 1
                self._echo = d.tx
                self._trail = 0
                bad = d.crc_errors
                self._frame(d)
            if d.crc_errors != bad:
                self._trail = min(self._trail + d.crc_errors - bad, 255)
                if self._synced:
                    self._ack_due = True  # the sender learns at once what was lost
            self._deliver()
            if self._ack_due:
                self._tx_ev.set()

    def _frame(self, d):
        k = d.kind
        if k == SYN or k == SYNACK:
            self._on_syn(k, d.payload)
            return
        if not self._synced or not (k == DATA or k == ACK):
            return
        self._last_rx = ticks_ms()
        if not self._up:
            self._set_up(True)
        if k == ACK:
            if len(d.payload) >= _ACKH:
                self._on_ack(d.ack, d.echo, d.payload)
        else:
            self._on_ack(d.ack, d.echo, None)
            self._on_data(d.seq, d.payload)

    def _on_data(self, seq, p):
        self._ack_due = True
        n = len(p)
        off = (seq - self._rnxt) & 0xFFFF
        if off >= 0x8000:  # starts before what we have: keep only the new tail
            k = 0x10000 - off
            if k >= n:
                self._st["duplicates"] += 1
                return
            p = p[k:]
            n -= k
            off = 0
        room = len(self._rb) - ((self._rnxt - self._rcons) & 0xFFFF)
        if off + n > room:  # beyond the advertised window
            if off >= room:
                return
            n = room - off
            p = p[:n]
        if not n:
            return
        rs = self._rs
        if off == 0:
            _rput(self._rb, self._rnxt, p)
            self._advance(n)
            return
        a = off
        b = off + n
        i = 0
        while i < len(rs) and rs[i + 1] < a:
            i += 2
        if i < len(rs) and rs[i] <= a and b <= rs[i + 1]:
            self._st["duplicates"] += 1
            return
        j = i
        while j < len(rs) and rs[j] <= b:
            a = min(a, rs[j])
            b = max(b, rs[j + 1])
            j += 2
        if j == i and len(rs) >= 2 * _MAXR:
            return  # too many holes: drop, it comes again
        _rput(self._rb, self._rnxt + off, p)
        rs[i:j] = [a, b]

    def _advance(self, n):
        # In-order bytes arrived: move _rnxt, absorbing ranges that now join.
        rs = self._rs
        while True:
            self._rnxt = (self._rnxt + n) & 0xFFFF
            for i in range(len(rs)):
                rs[i] -= n
            if not rs or rs[0] > 0:
                return
            n = max(rs[1], 0)
            del rs[:2]

    def _on_ack(self, ack, echo, p):
        # p: an ACK frame's payload, or None for the ack carried by a DATA frame.
        una = self._una
        adv = (ack - una) & 0xFFFF
        if adv > ((self._nxt - una) & 0xFFFF):
            return  # stale or not ours
        segs = self._segs
        wake = adv
        last = self._stamp - 1
        hi = last - ((last - echo) & 0xFF)  # full stamp of the echoed tx
        if hi > self._hi:
            self._hi = hi
            self._t_prog = ticks_ms()
            for s in segs:
                if s[2] == hi:
                    self._sample(ticks_diff(ticks_ms(), s[3]))
                    break
        if adv:
            self._una = ack
            while segs:
                s = segs[0]
                a = (s[0] - una) & 0xFFFF
                if a + s[1] > adv:
                    if a < adv:
                        s[1] -= adv - a
                        s[0] = ack
                    break
                segs.pop(0)
                if not s[4] & _RETX:
                    self._good += 1
            if self._good >= self._win and self._frag < self._fcap:
                self._frag = min(self._frag << 1, self._fcap)
                self._good = 0
            self._space_ev.set()
        if p is not None:
            edge = p[0] | p[1] << 8
            if edge != self._edge:
                self._edge = edge
                wake = 1
            # The echo names our newest frame that arrived intact, `trail` the
            # damaged ones right after it. The UART keeps order, so any frame
            # sent up to the echoed one and not received is lost, and so are
            # the next `trail`. The ranges describe all up to the last one
            # (the whole window when there are fewer than _SACKN).
            tr = hi + p[2]
            n = len(p)
            lim = p[n - 2] | p[n - 1] << 8 if n >= _ACKH + 4 * _SACKN else 0x10000
            lost = 0
            for s in segs:
                f = s[4]
                if f & _SACKED:
                    continue
                a = (s[0] - ack) & 0xFFFF
                b = a + s[1]
                for j in range(_ACKH, n - 3, 4):
                    if (p[j] | p[j + 1] << 8) <= a and b <= (p[j + 2] | p[j + 3] << 8):
                        s[4] = f & _RETX | _SACKED  # arrived after all: not to be resent
                        break
                else:
                    if not f & _LOST and (s[2] <= hi and a < lim or hi < s[2] <= tr):
                        s[4] = f | _LOST
                        lost = 1
            if lost:
                self._shrink()
                wake = 1
            self._merge()
        if wake:
            self._tx_ev.set()

    def _sample(self, rtt):
        if self._srtt < 0:
            self._srtt = rtt
            self._rttv = rtt >> 1
        else:
            self._rttv += (abs(rtt - self._srtt) - self._rttv) >> 2
            self._srtt += (rtt - self._srtt) >> 3
        self._rto = min(max(self._srtt + 4 * self._rttv, self._rto_min), _RTO_MAX)

    def _merge(self):
        # One entry per run of received frames (never sent again) and per run
        # of lost ones (cut again when resent) keeps the list short.
        segs = self._segs
        i = len(segs) - 1
        while i > 0:
            a = segs[i - 1]
            b = segs[i]
            if a[4] & b[4] & _SACKED or a[4] & b[4] & _LOST and a[5] == b[5]:
                a[1] += b[1]
                a[4] |= b[4]
                del segs[i]
            i -= 1

    def _lose(self):
        # Everything in flight is presumed lost (timeout, or the wire is back).
        for s in self._segs:
            if not s[4] & _SACKED:
                s[4] |= _LOST
        self._merge()
        self._tx_ev.set()

    def _shrink(self):
        # Losses: smaller frames get through a noisy line more often.
        self._frag = max(self._frag >> 1, _FRAG_MIN)
        self._good = 0

    # ---- sending ----------------------------------------------------------

    async def _tx(self):
        w = asyncio.StreamWriter(self._s, {})
        ev = self._tx_ev
        while True:
            await ev.wait()
            ev.clear()
            while True:
                n = self._next()
                if not n:
                    break
                w.write(self._fv[:n])
                await w.drain()
                self._last_tx = ticks_ms()
                self._st["tx_frames"] += 1

    def _out(self, kind, addr, seq, n):
        # Stamp and frame what _next put at _fb[HDR:]; the stamp is _stamp - 1.
        self._stamp += 1
        return encode(self._fb, kind, addr, (self._stamp - 1) & 0xFF, self._echo, seq, self._rnxt, n)

    def _next(self):
        # Build the next frame to send into _fb; 0 when there is none.
        fb = self._fb
        if self._syn:
            fb[HDR : HDR + 4] = self._sid
            fb[HDR + 4 : HDR + 8] = self._peer
            struct.pack_into("<HHH", fb, HDR + 8, len(self._rb), self.payload_max, self._fmax)
            k = self._syn
            self._syn = 0
            return self._out(k, 0, 0, 14)
        if not self._synced:
            return 0
        if self._ack_due:
            self._ack_due = False
            rs = self._rs
            k = min(len(rs), 2 * _SACKN)
            edge = (self._rcons + len(self._rb)) & 0xFFFF
            struct.pack_into("<HB", fb, HDR, edge, self._trail)
            for j in range(k):
                struct.pack_into("<H", fb, HDR + _ACKH + 2 * j, rs[j])
            return self._out(ACK, 0, self._nxt, _ACKH + 2 * k)
        segs = self._segs
        pipe = 0
        lost = -1
        for i in range(len(segs)):
            f = segs[i][4]
            if f & _LOST:
                if lost < 0:
                    lost = i
            elif not f & _SACKED:
                pipe += 1
        if pipe >= self._win:
            return 0
        if lost >= 0:
            s = segs[lost]
            n = min(s[1], self._frag)
            if n < s[1]:  # cut again to the current frame size
                segs.insert(lost + 1, [(s[0] + n) & 0xFFFF, s[1] - n, s[2], s[3], s[4], s[5]])
                s[1] = n
            s[4] = _RETX
            self._st["retransmits"] += 1
            return self._data(s, n)
        nxt = self._nxt
        room = (self._edge - nxt) & 0xFFFF
        if room >= 0x8000 or len(segs) >= 4 * self._win:  # bound the bookkeeping
            return 0
        room = min(room, (self._end - nxt) & 0xFFFF)
        if not room:
            return 0
        me, addr = self._mends[0]
        n = min(self._frag, room, (me - nxt) & 0xFFFF)  # frames never straddle messages
        self._nxt = (nxt + n) & 0xFFFF
        if self._nxt == me:
            self._mends.pop(0)
        s = [nxt, n, 0, 0, 0, addr]
        segs.append(s)
        return self._data(s, n)

    def _data(self, s, n):
        _rget(self._tb, s[0], self._fv[HDR : HDR + n])
        s[2] = self._stamp
        s[3] = ticks_ms()
        return self._out(DATA, s[5], s[0], n)

    # ---- timers -----------------------------------------------------------

    async def _tick(self):
        while True:
            await asyncio.sleep_ms(_TICK)
            supervisor.checkin("link")
            now = ticks_ms()
            idle = ticks_diff(now, self._last_tx) >= self._ka
            if not self._synced:
                if idle:
                    self._syn = SYN
                    self._tx_ev.set()
                continue
            if self._up and ticks_diff(now, self._last_rx) > self._dead:
                self._set_up(False)
            if idle:
                self._ack_due = True  # keepalive, carries our window and ranges
                self._tx_ev.set()
            # Frames queue on the line, so a frame's age says little; no news
            # (no newer echo) for rto since it was sent does. While the link is
            # down only keepalives go out; coming up resends at once.
            for s in self._segs if self._up else ():
                if s[4] & (_SACKED | _LOST):
                    continue
                t = s[3] if ticks_diff(s[3], self._t_prog) > 0 else self._t_prog
                if ticks_diff(now, t) > self._rto:
                    self._st["timeouts"] += 1
                    if ticks_diff(now, self._last_rx) > self._rto:
                        self._rto = min(self._rto << 1, _RTO_MAX)  # peer silent: back off
                    self._lose()
                    break
