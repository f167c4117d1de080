# The controller's `link ...` console commands: every device command by hand,
# board to board, on the link controller/linkport.py opened. Loaded on the
# first `link` command (linkport), as nobody needs them to run backups. Bulk
# writes make their data here (`--pattern`), so the console is not the bottleneck.
import time
import asyncio
from micropython import const
import hashlib
import binascii
from link import LinkError
from console import CmdError, UsageError, opts, arg_int
from devcmd import Device, SenseError, ILI, PAYLOAD_MAX, BLOCK_MAX

WINDOW = const(4)  # pipelined WRITEs of `link write --pattern`


def pattern(buf, seed, i):
    # Block i of test pattern `seed`: SHA-256 of b"seed:i", repeated to fill
    # buf. The host makes the same bytes to check what came back.
    d = hashlib.sha256(b"%d:%d" % (seed, i)).digest()
    n = len(buf)
    k = min(n, 32)
    buf[:k] = d[:k]
    while k < n:
        m = min(k, n - k)
        buf[k:k + m] = buf[:m]
        k += m


def _b64(s):
    data = binascii.a2b_base64(s)
    if not data or binascii.b2a_base64(data, newline=False) != s.encode():
        raise UsageError("data must be base64, e.g. aGVsbG8=")
    return data


def _rate(nbytes, t0):
    s = max(time.ticks_diff(time.ticks_ms(), t0), 1) / 1000
    return {"seconds": s, "kib_s": round(nbytes / 1024 / s, 1)}


def _hex(h):
    return binascii.hexlify(h.digest()).decode()


def install(con, link):
    def dev(pos, n_min, n_max):
        if not n_min <= len(pos) <= n_max:
            raise UsageError("wrong number of arguments")
        a = arg_int(pos[0], "address")
        if not 0 <= a <= 15:
            raise UsageError("address must be 0-15")
        return Device(link, a)

    def cmd(name, usage, help):
        # Sense data and link failures become one clear error line.
        def deco(fn):
            async def run(args):
                try:
                    return await fn(args)
                except SenseError as e:
                    raise CmdError(str(e))
                except LinkError as e:
                    raise CmdError("link: %s" % e)
            con.command(name, usage, help)(run)
            return fn
        return deco

    def simple(name, usage, help, method):
        @cmd(name, usage, help)
        async def run(args):
            await getattr(dev(args, 1, 1), method)()
            return {"done": name.split()[1]}

    simple("link tur", "link tur ADDR", "TEST UNIT READY", "tur")
    simple("link load", "link load ADDR", "LOAD the cartridge in the drive", "load")
    simple("link unload", "link unload ADDR", "UNLOAD: rewind; the cartridge stays in the drive", "unload")
    simple("link rewind", "link rewind ADDR", "REWIND", "rewind")

    @cmd("link inquiry", "link inquiry ADDR", "INQUIRY: device type, block size, capacity")
    async def _inquiry(args):
        return await dev(args, 1, 1).inquiry()

    @cmd("link mount", "link mount ADDR VOLUME [--wait SECONDS]", "MOUNT a cartridge; --wait until ready")
    async def _mount(args):
        pos, kw = opts(args, values=("wait",))
        d = dev(pos, 2, 2)
        await d.mount(pos[1])
        if "wait" not in kw:
            return {"requested": pos[1]}
        t0 = time.ticks_ms()
        await d.wait_ready(arg_int(kw["wait"], "wait") * 1000)
        return {"ready": True, "waited_ms": time.ticks_diff(time.ticks_ms(), t0)}

    @cmd("link label", "link label ADDR", "READ LABEL: the volume name")
    async def _label(args):
        return {"volume": await dev(args, 1, 1).read_label()}

    @cmd("link pos", "link pos ADDR", "READ POSITION")
    async def _pos(args):
        return await dev(args, 1, 1).read_position()

    @cmd("link weof", "link weof ADDR [COUNT]", "WRITE FILEMARKS")
    async def _weof(args):
        d = dev(args, 1, 2)
        return {"ew": await d.write_filemarks(arg_int(args[1], "count") if len(args) > 1 else 1)}

    @cmd("link space", "link space ADDR COUNT [--blocks] | link space ADDR --eod",
         "SPACE over filemarks (or blocks; negative: back), or to end of data")
    async def _space(args):
        pos, kw = opts(args, flags=("blocks", "eod"))
        if kw.get("eod"):
            await dev(pos, 1, 1).space_eod()
        else:
            await dev(pos, 2, 2).space(arg_int(pos[1], "count"), filemarks=not kw.get("blocks"))
        return {"done": "space"}

    @cmd("link write", "link write ADDR BASE64 | link write ADDR --pattern N --count K [--size 2048] [--first I]",
         "WRITE blocks; stops at the first error and says how far it got")
    async def _write(args):
        pos, kw = opts(args, values=("pattern", "count", "size", "first"))
        if "pattern" in kw:
            d = dev(pos, 1, 1)
            seed = arg_int(kw["pattern"], "pattern")
            count = arg_int(kw.get("count", "1"), "count")
            first = arg_int(kw.get("first", "0"), "first")
            size = arg_int(kw.get("size", "%d" % BLOCK_MAX), "size")
            if not 0 < size <= BLOCK_MAX or count < 1:
                raise UsageError("size must be 1-%d and count at least 1" % BLOCK_MAX)
            block = memoryview(bytearray(size))
        else:
            d = dev(pos, 2, 2)
            block = _b64(pos[1])
            if len(block) > BLOCK_MAX:
                raise UsageError("a block holds at most %d bytes" % BLOCK_MAX)
            count, seed, first = 1, None, 0
        h = hashlib.sha256()
        n = nbytes = 0
        ew_block = err = None
        t0 = time.ticks_ms()
        slowest = 0
        # WINDOW writes in flight, as the backup engine sends: the link keeps
        # them in order and the wire stays busy while the device stores a block.
        bufs = [block] + [memoryview(bytearray(size)) for _ in range(WINDOW - 1)] if seed is not None else [block]
        inflight = []
        i = 0
        while True:
            while err is None and i < count and len(inflight) < len(bufs):
                b = bufs[i % len(bufs)]  # free again: block i - len(bufs) has been answered
                if seed is not None:
                    pattern(b, seed, first + i)
                inflight.append((asyncio.create_task(d.write(b)), b, i, time.ticks_ms()))
                i += 1
            if not inflight:
                break
            task, b, k, t = inflight.pop(0)
            try:
                ew = await task
            except (SenseError, LinkError) as e:
                err = err or e
                continue
            if err is not None:
                continue  # answered after an earlier block failed: not counted
            slowest = max(slowest, time.ticks_diff(time.ticks_ms(), t))
            h.update(b)
            n += 1
            nbytes += len(b)
            if ew and ew_block is None:
                ew_block = k
        if err is not None and not n:
            raise err
        r = {"blocks": n, "bytes": nbytes, "sha256": _hex(h), "ew": ew_block is not None, "ew_block": ew_block,
             "error": None if err is None else str(err), "slowest_ms": slowest}
        r.update(_rate(nbytes, t0))
        r["text"] = "wrote %d blocks (%d bytes) in %.1f s, %.1f KiB/s, slowest %d ms%s%s" % (
            n, nbytes, r["seconds"], r["kib_s"], slowest, "" if ew_block is None else "; early warning at block %d" % ew_block,
            "" if err is None else "; stopped: %s" % err)
        return r

    @cmd("link read", "link read ADDR [MAXLEN] [--count K]",
         "READ blocks (data as base64 for one block, SHA-256 of all); stops at a filemark or end of data")
    async def _read(args):
        pos, kw = opts(args, values=("count",))
        d = dev(pos, 1, 2)
        maxlen = arg_int(pos[1], "maxlen") if len(pos) > 1 else BLOCK_MAX
        count = arg_int(kw.get("count", "1"), "count")
        if not 0 < maxlen <= BLOCK_MAX or count < 1:
            raise UsageError("maxlen must be 1-%d and count at least 1" % BLOCK_MAX)
        h = hashlib.sha256()
        n = nbytes = truncated = 0
        stop = b64 = None
        err = None  # type: Exception | None
        t0 = time.ticks_ms()
        slowest = 0
        for _ in range(count):
            t = time.ticks_ms()
            try:
                data = await d.read(maxlen)
            except SenseError as e:
                if e.filemark or e.eod:
                    stop = "filemark" if e.filemark else "eod"
                    break
                if not e.flags & ILI:
                    err = e
                    break
                data = e.data  # the head of a block longer than maxlen
                truncated += 1
            except LinkError as e:
                err = e
                break
            slowest = max(slowest, time.ticks_diff(time.ticks_ms(), t))
            h.update(data)
            n += 1
            nbytes += len(data)
            if count == 1:
                b64 = binascii.b2a_base64(data, newline=False).decode()
            data = None  # let it go before the next READ allocates the next reply
        if err is not None and not n:
            raise err
        r = {"blocks": n, "bytes": nbytes, "sha256": _hex(h), "stop": stop, "truncated": truncated,
             "error": None if err is None else str(err), "slowest_ms": slowest}
        if count == 1 and n:
            r["data"] = b64
        r.update(_rate(nbytes, t0))
        return r

    @cmd("link capacity", "link capacity ADDR", "READ CAPACITY of a disk")
    async def _capacity(args):
        blocks, size = await dev(args, 1, 1).capacity()
        return {"blocks": blocks, "block_size": size}

    @cmd("link bread", "link bread ADDR LBA [COUNT]", "read disk blocks at LBA (base64 and SHA-256)")
    async def _bread(args):
        d = dev(args, 2, 3)
        data = await d.read_blocks(arg_int(args[1], "lba"), arg_int(args[2], "count") if len(args) > 2 else 1)
        return {"bytes": len(data), "sha256": binascii.hexlify(hashlib.sha256(data).digest()).decode(),
                "data": binascii.b2a_base64(data, newline=False).decode()}

    @cmd("link bwrite", "link bwrite ADDR LBA BASE64", "write whole disk blocks at LBA")
    async def _bwrite(args):
        d = dev(args, 3, 3)
        data = _b64(args[2])
        await d.write_blocks(arg_int(args[1], "lba"), data)
        return {"bytes": len(data)}

    @con.command("link stats", "link stats", "link state and counters (frames, retransmits, CRC errors)")
    def _stats(args):
        if args:
            raise UsageError("no arguments expected")
        return link.stats()
