# One end of the board link, run by the real `micropython` interpreter for
# hil_tests/test_link.py and host_tools/bench_link.py. Its UART is a pseudo-
# terminal opened the way hal/unix.py opens one.
#
#   micropython linkpeer.py resp  PATH FILE   [k=v ...]  responder storing data in FILE
#   micropython linkpeer.py xfer  PATH SIZE   [k=v ...]  write SIZE bytes, read them back
#   micropython linkpeer.py churn PATH SECONDS [k=v ...] small requests, outcome runs
#   micropython linkpeer.py fuzz  CASES FRAME_MAX        feed the frame decoder
# Options: payload=4096 window=32 frame=1024 depth=4 timeout=30000 addr=3 baud=115200.
# xfer / churn print JSON lines ({"progress": n} / {"event": e}, then the result).
import sys
import os
import gc
import json
import struct
import hashlib
import termios
import asyncio
import micropython
from binascii import hexlify, crc32

sys.path.insert(0, __file__.rsplit("/", 1)[0] + "/../firmware/lib")
import link  # noqa: E402

WRITE = 1
READ = 2
SHA = 3
TRUNC = 4
ECHO = 5
STATS = 6

OPT = {"payload": 4096, "window": 32, "frame": 1024, "depth": 4, "timeout": 30000, "addr": 3,
       "baud": 115200}


def uart(path):
    f = open(path, "r+b")
    a = termios.tcgetattr(f.fileno())
    a[0] = 0  # iflag: no CR/NL translation, no flow control
    a[1] = 0  # oflag: no post-processing
    a[3] &= ~0x807B  # lflag: no ISIG/ICANON/ECHO*/IEXTEN
    a[6][6] = 0  # VMIN: read returns what is there
    a[6][5] = 0  # VTIME
    termios.tcsetattr(f.fileno(), termios.TCSANOW, a)
    return f


def new_link(path):
    return link.Link(uart(path), payload_max=OPT["payload"], window=OPT["window"],
                     frame_max=OPT["frame"], baud=OPT["baud"])


def out(obj):
    print(json.dumps(obj))


async def responder(path, fname):
    lk = new_link(path)
    f = open(fname, "w+b")
    buf = bytearray(OPT["payload"])
    mv = memoryview(buf)

    async def handler(addr, op, p):
        nonlocal f
        if op == WRITE:
            f.seek(struct.unpack_from("<I", p)[0])
            f.write(p[4:])
            return 0, b""
        if op == READ:
            off, n = struct.unpack_from("<IH", p)
            f.seek(off)
            return 0, mv[: f.readinto(mv[:n])]
        if op == SHA:
            h = hashlib.sha256()
            f.seek(0)
            while True:
                n = f.readinto(buf)
                if not n:
                    return 0, h.digest()
                h.update(mv[:n])
        if op == TRUNC:
            f.close()
            f = open(fname, "w+b")
            return 0, b""
        if op == ECHO:
            return addr, p
        if op == STATS:
            return 0, json.dumps(lk.stats()).encode()
        return 1, b"bad op"

    lk.start()
    lk.serve(handler)
    while True:
        await asyncio.sleep(3600)


async def heap_watch(res):
    # Largest live heap (after a collection): what the board really needs.
    while True:
        gc.collect()
        res["heap_max"] = max(res["heap_max"], gc.mem_alloc())
        await asyncio.sleep_ms(200)


async def xfer(path, size):
    gc.collect()
    before = gc.mem_alloc()
    lk = new_link(path)
    gc.collect()
    res = {"link_bytes": gc.mem_alloc() - before, "heap_max": 0}
    watch = asyncio.create_task(heap_watch(res))
    lk.start()
    addr = OPT["addr"]
    tmo = OPT["timeout"]
    chunk = OPT["payload"] - 4

    async def req(op, p, into=None):
        st, d = await lk.request(addr, op, p, timeout_ms=tmo, into=into)
        if st:
            raise ValueError("status %d" % st)
        return d

    await req(TRUNC, b"")
    sent = hashlib.sha256()
    pos = [0, 0]  # next offset, bytes acknowledged

    async def writer():
        buf = bytearray(4 + chunk)
        mv = memoryview(buf)
        while pos[0] < size:
            off = pos[0]
            n = min(chunk, size - off)
            pos[0] += n
            for i in range(4, 4 + n, 256):  # small pieces: no big allocations to fragment the heap
                k = min(256, 4 + n - i)
                mv[i : i + k] = os.urandom(k)
            sent.update(mv[4 : 4 + n])
            struct.pack_into("<I", buf, 0, off)
            await req(WRITE, mv[: 4 + n])
            if (pos[1] + n) >> 16 != pos[1] >> 16:
                out({"progress": pos[1] + n})
            pos[1] += n

    back = hashlib.sha256()
    rpos = [0, 0]  # next offset to ask, next offset to hash

    async def reader():
        buf = bytearray(chunk)
        while rpos[0] < size:
            off = rpos[0]
            n = min(chunk, size - off)
            rpos[0] += n
            d = await req(READ, struct.pack("<IH", off, n), buf)
            if len(d) != n:
                raise ValueError("short read")
            while rpos[1] != off:  # readers may resume out of order: hash in order
                await asyncio.sleep_ms(1)
            back.update(d)
            rpos[1] += n

    t0 = asyncio.ticks()
    await asyncio.gather(*[writer() for _ in range(OPT["depth"])])
    t1 = asyncio.ticks()
    await asyncio.gather(*[reader() for _ in range(OPT["depth"])])
    t2 = asyncio.ticks()
    res["sent"] = hexlify(sent.digest()).decode()
    res["back"] = hexlify(back.digest()).decode()
    res["remote"] = hexlify(await req(SHA, b"")).decode()
    res["write_s"] = asyncio.ticks_diff(t1, t0) / 1000
    res["read_s"] = asyncio.ticks_diff(t2, t1) / 1000
    res["size"] = size
    res["remote_stats"] = json.loads(bytes(await req(STATS, b"")))
    res["stats"] = lk.stats()
    res["mem_peak"] = micropython.mem_peak()  # unix port: allocation total, not a peak
    watch.cancel()
    out(res)
    lk.stop()


async def churn(path, seconds):
    # Keeps `depth` small ECHO requests outstanding; reports runs of equal
    # outcomes [outcome, count, first_ms, last_ms] in completion order.
    lk = new_link(path)
    lk.start()
    t0 = asyncio.ticks()
    runs = []
    bad = [0]

    def note(what):
        t = asyncio.ticks_diff(asyncio.ticks(), t0)
        if runs and runs[-1][0] == what:
            runs[-1][1] += 1
            runs[-1][3] = t
        else:
            runs.append([what, 1, t, t])
            out({"event": what, "t": t})

    async def worker(i):
        n = 0
        while asyncio.ticks_diff(asyncio.ticks(), t0) < seconds * 1000:
            p = b"%d.%d" % (i, n)
            n += 1
            try:
                st, d = await lk.request(OPT["addr"], ECHO, p, timeout_ms=OPT["timeout"])
                if st != OPT["addr"] or bytes(d) != p:
                    bad[0] += 1
                note("ok")
            except link.LinkError as e:
                note(type(e).__name__)
                await asyncio.sleep_ms(50)

    await asyncio.gather(*[worker(i) for i in range(OPT["depth"])])
    out({"runs": runs, "bad": bad[0], "stats": lk.stats()})
    lk.stop()


def fuzz(cases, fmax):
    # Cases are u32-length-prefixed byte strings; each is fed in uneven
    # chunks, then flushed with zeros. Prints "count crc" of the frames found.
    f = open(cases, "rb")
    buf = bytearray(8192)
    pad = memoryview(bytes(fmax + link.OVH))
    idx = 0
    while True:
        if f.readinto(memoryview(buf)[:4]) != 4:
            break
        n = struct.unpack_from("<I", buf)[0]
        src = memoryview(buf)[:n]
        f.readinto(src)
        d = link.Decoder(fmax)
        found = 0
        h = 0
        for part in (src, pad):
            i = 0
            step = idx
            while i < len(part):
                sp = d.space()
                k = min(len(sp), 1 + (step * 37) % 211, len(part) - i)
                sp[:k] = part[i : i + k]
                d.filled(k)
                i += k
                step += 1
                while d.next():
                    found += 1
                    h = crc32(bytes((d.kind, d.addr, d.tx, d.echo)) + struct.pack("<HH", d.seq, d.ack), h)
                    h = crc32(d.payload, h)
        print(found, h)
        idx += 1


def main():
    mode = sys.argv[1]
    for a in sys.argv[4:]:
        k, v = a.split("=")
        OPT[k] = int(v)
    if mode == "fuzz":
        fuzz(sys.argv[2], int(sys.argv[3]))
    elif mode == "resp":
        asyncio.run(responder(sys.argv[2], sys.argv[3]))
    elif mode == "xfer":
        asyncio.run(xfer(sys.argv[2], int(sys.argv[3])))
    elif mode == "churn":
        asyncio.run(churn(sys.argv[2], float(sys.argv[3])))


if __name__ == "__main__":
    main()
