"""The virtual board's heap, calibrated against a real Pico (the one place).

Facts measured on the MicroPython rp2 port (v1.28.0, RPI_PICO, issue 11):

- A Pico's GC heap is PICO_HEAP = 245,888 bytes (gc.mem_alloc() + gc.mem_free()).
- With the landed firmware (main at 912a601) the controller still starts with a
  48 KiB bytearray held from boot.py and fails with 49 KiB; the backup device
  board starts with 80 KiB, not 81 (LANDED below). Running (`status`): controller
  mem_alloc 165,712 / mem_free 80,176, backupdev 113,840 / 132,048.

The unix interpreter of a virtual board is a 64-bit build: objects holding
pointers are twice their rp2 size and GC blocks are 32 bytes, not 16, while
bytearray payloads (buffers, the ballast) are the same. So the firmware
*needs* more heap there, by a ratio that depends on its mix of objects and
buffers, and the free heap is what must match, not the total. The rp2 port's
UART keeps its rx/tx rings in the GC heap (hal/rp2.py sizes them: rp2_only()),
the unix port's pty in the kernel. Per role and firmware build, measured on a
throwaway board with a generous heap (measure(), cached in build/heapcal2.json
by the hash of the flashed tree, so the calibration follows the firmware as it
grows or shrinks):

    need_unix  = heap total - largest ballast the role starts with (bisection, 1 KiB steps)
    alloc_unix = mem_alloc of `status` right after boot

and on a Pico (pico_headroom(), pico_free()):

    headroom   = PICO_HEAP - (need_unix - rom_excess) / RATIO[role] - rp2_only()
    free       = PICO_HEAP - (alloc_unix - rom_excess) / RUN_RATIO[role] - rp2_only()

where rom_excess is what the virtual boot ROM (the part models in
host_tools/vboard, e.g. the SD card model behind the SPI) holds on the heap
beyond what it held when the ratios were fitted (LANDED_ROM): heap no Pico
spends, measured as mem_alloc when /boot.py starts (rom_excess()).

RATIO and RUN_RATIO are fitted on the landed firmware, where both ports were
measured (LANDED; the Pico's headroom taken as the largest ballast that
started, the lower bound, with 8 KiB + 8 KiB rings). The virtual board's heap
total is the smaller of need_unix + headroom and alloc_unix + free, less the
bisection's step (virtual_total()): neither its start-up headroom nor its
free heap while running is larger than the Pico's; the one that binds is
equal, the other lower (hil_tests/test_heap.py: within 10 % for the
controller's both).

Not modelled: fragmentation differs (32-byte blocks), the ratio of a firmware
whose mix of objects and buffers changes a lot drifts from RATIO, and state on
the SD card (catalog, many volumes) is not in the calibration board.
"""
import hashlib
import json
import os
import pty
import re
import select
import shutil
import subprocess
import tempfile
import time

from host_tools import ROOT

PICO_HEAP = 245_888
_KIB = 1024
# The landed firmware, measured on both ports (bytes): the Pico's largest
# starting ballast, and unix need (heap total - largest starting ballast).
LANDED = {
    "controller": {"pico_ballast": 48 * _KIB, "unix_need": 241_152,
                   "pico_mem_alloc": 165_712, "unix_mem_alloc": 216_096},
    "backupdev": {"pico_ballast": 80 * _KIB, "unix_need": 186_880,
                  "pico_mem_alloc": 113_840, "unix_mem_alloc": 148_256},
}
LANDED_RP2_ONLY = 8192 + 8192  # the UART rings of the landed hal/rp2.py
# The virtual boot ROM's own heap (host_tools/vboard: the part models, mem_alloc
# as /boot.py starts) when LANDED was measured (vboot.py of 912a601). A Pico
# has none of it; the fit below holds this much, so only what the ROM has grown
# by since (the SD card model, ...) is taken out of the unix figures (rom_excess()).
LANDED_ROM = {"controller": 18_752, "backupdev": 18_304}
RATIO = {r: v["unix_need"] / (PICO_HEAP - v["pico_ballast"] - LANDED_RP2_ONLY)
         for r, v in LANDED.items()}  # 1.337 / 1.261
RUN_RATIO = {r: v["unix_mem_alloc"] / (v["pico_mem_alloc"] - LANDED_RP2_ONLY)
             for r, v in LANDED.items()}  # 1.447 / 1.521: the import ratios (1.42 / 1.45) plus buffers

# Heap of the throwaway board that measures need_unix (LANDED was measured
# with it): big enough for any firmware a Pico can hold.
_PROBE_HEAPSIZE = "384k"
# -X heapsize is the whole area; the GC keeps 3 bits of tables per 32-byte block.
_TABLES = 32.375 / 32
CACHE = os.path.join(ROOT, "build", "heapcal2.json")
VBOOT = os.path.join(ROOT, "host_tools", "vboard", "vboot.py")


def rp2_only():
    """Bytes of GC heap the rp2 port takes that the virtual board keeps
    elsewhere: the UART rx and tx rings sized in hal/rp2.py."""
    with open(os.path.join(ROOT, "firmware", "hal", "rp2.py")) as f:
        src = f.read()
    return sum(int(re.search(r"^%s = const\((\d+)\)" % n, src, re.M).group(1))
               for n in ("_UART_RXBUF", "_UART_TXBUF"))


def pico_headroom(role, need_unix, pico_heap=PICO_HEAP):
    """The headroom a Pico has with a firmware that needs need_unix here."""
    return pico_heap - (need_unix - rom_excess(role)) / RATIO[role] - rp2_only()


def pico_free(role, mem_alloc_unix, pico_heap=PICO_HEAP):
    """A Pico's free heap where the virtual board's firmware has allocated mem_alloc_unix."""
    return pico_heap - (mem_alloc_unix - rom_excess(role)) / RUN_RATIO[role] - rp2_only()


def virtual_total(role, use, pico_heap=PICO_HEAP):
    """Heap total (mem_alloc + mem_free) the virtual board of `role` gets, for
    the firmware's measured use {"need": need_unix, "alloc": mem_alloc running}:
    the smaller of the totals that give the Pico's headroom at start-up and the
    Pico's free heap while running, so that neither is kinder than a Pico."""
    need, alloc = use["need"], use["alloc"]
    start = need + pico_headroom(role, need, pico_heap)
    run = alloc + pico_free(role, alloc, pico_heap)
    # need is measured to the bisection's 1 KiB step, up to 1 KiB above the
    # truth: one step less keeps the virtual board's headroom under the Pico's.
    return int(min(start, run)) - _KIB


def heapsize_arg(total):
    """-X heapsize value whose heap total is `total` bytes."""
    return str(int(total * _TABLES))


def tree_hash(tree):
    h = hashlib.sha256()
    for name in sorted(tree):
        if name != "board.json":
            h.update(name.encode() + b"\0" + tree[name] + b"\0")
    return h.hexdigest()[:16]


class ProbeBoard:
    """A throwaway virtual board of `role` booting `tree` (no supervisor, no
    wire): the calibration's and the ballast test's bench."""

    def __init__(self, cfg, tree):
        from host_tools.vboard import flashimg, hwfaults
        self.dir = tempfile.mkdtemp(prefix="heapcal-")
        with open(os.path.join(self.dir, "board.json"), "w") as f:
            json.dump(cfg, f)
        flashimg.write_tree(os.path.join(self.dir, "flash.img"), tree)
        with open(os.path.join(self.dir, "sd.img"), "wb") as f:
            f.truncate(64 << 20)
        open(os.path.join(self.dir, "rtc.json"), "wb").close()
        hwfaults.write(os.path.join(self.dir, "faults.json"), {})
        os.mkfifo(os.path.join(self.dir, "ctl.fifo"))
        # reset/watchdog lines from the firmware: nobody acts on them here
        self._ctl = os.open(os.path.join(self.dir, "ctl.fifo"), os.O_RDWR | os.O_NONBLOCK)
        self._uart, slave = pty.openpty()  # the wire's end: nobody answers the link
        os.symlink(os.ttyname(slave), os.path.join(self.dir, "uart0"))
        self._uart_slave = slave

    def _start(self, heapsize):
        """The board's process on a pty of its own: (process, pty master)."""
        from host_tools.sim.board import micropython_exe
        master, slave = pty.openpty()
        proc = subprocess.Popen([micropython_exe(), "-X", "heapsize=" + heapsize, "-i", VBOOT, self.dir],
                                stdin=slave, stdout=slave, stderr=slave, cwd=self.dir, close_fds=True,
                                start_new_session=True)
        os.close(slave)
        return proc, master

    def boot(self, heapsize, ballast=0, timeout=20):
        """Boot with a `ballast`-byte bytearray held from before boot.py; the
        `status` reply once the console answers, or None if it never does."""
        with open(os.path.join(self.dir, "ballast"), "w") as f:
            f.write(str(ballast))
        proc, master = self._start(heapsize)
        out = b""
        asked = 0.0
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if b"Traceback" in out or out.endswith(b">>> ") or b"MemoryError" in out \
                        or b"out of memory" in out:
                    # died and left the REPL, or runs on with a task failing for
                    # want of heap (the supervisor restarts it, for ever)
                    return None
                for line in out.split(b"\n")[:-1]:
                    if line.startswith(b"{") and b'"ok": true' in line:
                        return json.loads(line)
                if time.monotonic() - asked > 0.5:
                    os.write(master, b"#1 status\r\n")
                    asked = time.monotonic()
                r, _, _ = select.select([master, self._uart], [], [], 0.05)
                if master in r:
                    try:
                        out += os.read(master, 4096)
                    except OSError:
                        break
                if self._uart in r:
                    os.read(self._uart, 65536)
            return None
        finally:
            proc.kill()
            proc.wait()
            os.close(master)

    def rom(self, heapsize, timeout=20):
        """mem_alloc as /boot.py starts (the tree's boot.py must print "ROM n")."""
        proc, master = self._start(heapsize)
        out = b""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                m = re.search(rb"ROM (\d+)\r?\n", out)
                if m:
                    return int(m.group(1))
                r, _, _ = select.select([master], [], [], 0.05)
                if r:
                    out += os.read(master, 4096)
            raise RuntimeError("the virtual boot ROM did not start: %r" % out[-300:])
        finally:
            proc.kill()
            proc.wait()
            os.close(master)

    def largest_ballast(self, heapsize, hi):
        """Largest ballast (1 KiB steps, below `hi` bytes) the board starts with,
        and the `status` of that boot."""
        lo, hi = 0, hi // _KIB
        best = self.boot(heapsize)
        if best is None:
            raise RuntimeError("the firmware does not start even without ballast (heapsize=%s)" % heapsize)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            s = self.boot(heapsize, mid * _KIB)
            if s:
                lo, best = mid, s
            else:
                hi = mid
        return lo * _KIB, best

    def close(self):
        for fd in (self._ctl, self._uart, self._uart_slave):
            os.close(fd)
        shutil.rmtree(self.dir, ignore_errors=True)


def flash_tree(cfg, mpy=True):
    """The tree `backupctl flash --virtual` writes for board file `cfg`."""
    from host_tools.build import deploy_tree
    tree = deploy_tree(cfg["role"], mpy=mpy)
    tree["board.json"] = json.dumps(cfg, sort_keys=True).encode()
    return tree


def measure(cfg, tree):
    """What the firmware `tree` uses here for the role of board file `cfg`:
    {"need": heap total - largest ballast it starts with, "alloc": mem_alloc
    of `status` right after boot}."""
    b = ProbeBoard(cfg, tree)
    try:
        ballast, s = b.largest_ballast(_PROBE_HEAPSIZE, 384 * _KIB)
        return {"need": s["mem_alloc"] + s["mem_free"] - ballast, "alloc": b.boot(_PROBE_HEAPSIZE)["mem_alloc"]}
    finally:
        b.close()


def _vboard_hash():
    h = hashlib.sha256()
    d = os.path.dirname(VBOOT)
    for name in sorted(os.listdir(d)):
        if name.endswith(".py"):
            with open(os.path.join(d, name), "rb") as f:
                h.update(name.encode() + b"\0" + f.read() + b"\0")
    return h.hexdigest()[:16]


def rom_excess(role):
    """Bytes the virtual boot ROM of `role` holds beyond LANDED_ROM: heap of the
    board's models, not of anything a Pico runs. Measured once per ROM build."""
    key = "rom-%s-%s" % (role, _vboard_hash())
    cache = _load_cache()
    if key not in cache:
        from host_tools.build import load_board
        cfg = load_board(role)
        cfg["name"] = role
        tree = flash_tree(cfg)
        tree["boot.py"] = b"import gc\ngc.collect()\nprint('ROM', gc.mem_alloc())\n"
        tree["main.py"] = b""
        b = ProbeBoard(cfg, tree)
        try:
            rom = b.rom(_PROBE_HEAPSIZE)
        finally:
            b.close()
        _store(key, rom)
        cache[key] = rom
    return max(0, cache[key] - LANDED_ROM[role])


def _store(key, value):
    cache = _load_cache()  # another process may have measured meanwhile
    cache[key] = value
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    tmp = CACHE + ".%d" % os.getpid()
    with open(tmp, "w") as f:
        json.dump(cache, f, indent=1, sort_keys=True)
    os.replace(tmp, CACHE)


def _load_cache():
    try:
        with open(CACHE) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def firmware_use(cfg, tree):
    """measure() for this firmware build and role, once per build."""
    key = "%s-%s" % (cfg["role"], tree_hash(tree))
    cache = _load_cache()
    if key not in cache:
        cache[key] = measure(cfg, tree)
        _store(key, cache[key])
    return cache[key]


def warm(board_files):
    """Measure every board {name: board file} whose firmware build has no
    calibration yet, before a daemon starts them (a minute or two per role)."""
    import sys
    from host_tools.build import load_board
    for name, bf in board_files.items():
        cfg = load_board(bf)
        cfg["name"] = name
        tree = flash_tree(cfg, cfg.get("virtual", {}).get("mpy", True))
        if "%s-%s" % (cfg["role"], tree_hash(tree)) not in _load_cache():
            print("calibrating the virtual %s's heap for this firmware build (once per build)..." % name,
                  file=sys.stderr, flush=True)
            firmware_use(cfg, tree)


def heap_for(cfg, tree):
    """(-X heapsize value, heap total) for a virtual board of cfg's role running `tree`."""
    from host_tools.sim.board import parse_size
    pico = parse_size(cfg.get("virtual", {}).get("heapsize", PICO_HEAP))  # the board file's Pico heap
    total = virtual_total(cfg["role"], firmware_use(cfg, tree), pico)
    return heapsize_arg(total), total
