"""backupctl bench: figures, not pass/fail. Link payload throughput between the
two virtual boards over the paced wire, as a fraction of what the wire can carry
(baud/10 bytes per second), next to ZMODEM (lrzsz) through the same wire."""
import os
import shutil
import subprocess
import tempfile
import time

from host_tools.console import BoardConsole
from host_tools.sim import client
from host_tools.sim.wire import Wire

BAUDS = (115200, 921600)
SECONDS = 6  # of wire time per measurement


def register(sub):
    p = sub.add_parser("bench", help="link throughput vs the wire's limit and vs ZMODEM (prints figures)",
                       description=__doc__)
    p.add_argument("--baud", type=int, action="append", help="line rate(s) to measure (default 115200 and 921600)")
    p.add_argument("--json", action="store_true", help="print one JSON object: {\"link\": [...], \"heap\": {role: ...}}")
    p.set_defaults(func=run)


def link_ratio(baud):
    """Controller -> backup device WRITEs of incompressible blocks made on the
    controller (`link write --pattern`), measured by the controller."""
    state = tempfile.mkdtemp(prefix="bench-")
    try:
        st = client.up(state, baud=baud)
        ctl = BoardConsole(os.path.realpath(st["boards"]["controller"]["console"]), timeout=120)
        dev = BoardConsole(os.path.realpath(st["boards"]["backupdev"]["console"]), timeout=30)
        ctl.sync()
        dev.sync()
        limit = baud / 10
        count = max(16, int(limit * SECONDS / 2048))
        dev.call("tape new BEN001 --capacity %dK" % (count * 2 + 256))
        ctl.call("link mount 0 BEN001 --wait 30", timeout=60)
        r = ctl.call("link write 0 --pattern 7 --count %d" % count, timeout=SECONDS * 10 + 60)
        peak = ctl.call("status").get("mem_peak")
        ctl.close()
        dev.close()
        return r["kib_s"] * 1024 / limit, r["bytes"], peak
    finally:
        client.down(state)
        shutil.rmtree(state, ignore_errors=True)


def sd_speed(kib=512):
    """`sd bench` on a virtual controller: lib/sdspi.py against the SPI card model."""
    state = tempfile.mkdtemp(prefix="bench-sd-")
    try:
        st = client.up(state)
        with BoardConsole(os.path.realpath(st["boards"]["controller"]["console"]), timeout=300) as ctl:
            ctl.sync()
            return ctl.call("sd bench %d" % kib)
    finally:
        client.down(state)
        shutil.rmtree(state, ignore_errors=True)


def sd_driver_cost():
    """host_tools/vboard/sd_cost.py: the driver's own microseconds per block on the unix port."""
    import json
    from host_tools import FIRMWARE
    from host_tools.sim.board import VBOARD, micropython_exe
    out = subprocess.run([micropython_exe(), os.path.join(VBOARD, "sd_cost.py"), os.path.join(FIRMWARE, "lib")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return json.loads(out)


def zmodem_ratio(baud):
    """sz on one end of the same paced wire, rz on the other."""
    if not (shutil.which("sz") and shutil.which("rz")):
        return None
    d = tempfile.mkdtemp(prefix="bench-zm-")
    try:
        size = int(baud / 10 * SECONDS)
        src = os.path.join(d, "data.bin")
        with open(src, "wb") as f:
            f.write(os.urandom(size))
        out = os.path.join(d, "rx")
        os.mkdir(out)
        with Wire(baud, paths=(os.path.join(d, "a"), os.path.join(d, "b"))):
            a, b = os.path.join(d, "a"), os.path.join(d, "b")
            # like `rz < tty > tty`: lrzsz wants its own read and write descriptors
            with open(b, "rb", buffering=0) as bi, open(b, "wb", buffering=0) as bo:
                rz = subprocess.Popen(["rz", "-b", "-y"], stdin=bi, stdout=bo, stderr=subprocess.DEVNULL, cwd=out)
            t0 = time.monotonic()
            with open(a, "rb", buffering=0) as ai, open(a, "wb", buffering=0) as ao:
                sz = subprocess.Popen(["sz", "-b", src], stdin=ai, stdout=ao, stderr=subprocess.DEVNULL)
            try:
                sz.wait(timeout=SECONDS * 10)
                dt = time.monotonic() - t0
                try:
                    rz.wait(timeout=3)  # rz may linger for the over-and-out; the file is complete
                except subprocess.TimeoutExpired:
                    pass
            finally:
                for p in (sz, rz):
                    if p.poll() is None:
                        p.kill()
                        p.wait()
        got = os.path.join(out, "data.bin")
        if not os.path.exists(got) or os.path.getsize(got) != size:
            return None
        return size / dt / (baud / 10)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def heap_rows(figures, out=print):
    from host_tools.bench_heap import SAMPLE_MS, VOLUME_SIZE
    from host_tools.sim import heapcal
    out("heap on the calibrated virtual boards (bytes; Pico = estimate for a real Pico, host_tools/sim/heapcal.py)")
    out("%-10s  %15s  %13s  %15s  %16s  %13s" % ("role", "free after boot", "largest block", "min free backup",
                                                  "min free restore", "min free list"))
    for role, f in figures.items():
        def pico(free, role=role, f=f):
            return int(heapcal.pico_free(role, f["mem_total"] - free))
        out("%-10s  %15d  %13d  %15d  %16d  %13d" % (role, f["free_after_boot"], f["largest_block"],
                                                     f["min_free_backup"], f["min_free_restore"], f["min_free_list"]))
        out("%-10s  %15d  %13s  %15d  %16d  %13d" % ("  Pico", pico(f["free_after_boot"]), "",
                                                     pico(f["min_free_backup"]), pico(f["min_free_restore"]),
                                                     pico(f["min_free_list"])))
    c = figures["controller"]
    out("a %d KiB backup to the tape emulator took %.1f KiB/s, its restore %.1f KiB/s (mount and labels included, "
        "heap sampled every %d ms)" % (VOLUME_SIZE // 1024, c["backup_kib_s"], c["restore_kib_s"], SAMPLE_MS))


def run(a):
    from host_tools.bench_heap import heap_figures
    from host_tools.bench_link import bench as raw_link
    if a.json:
        import contextlib
        import json
        import sys
        link = []
        for baud in a.baud or BAUDS:
            with contextlib.redirect_stdout(sys.stderr):  # raw_link prints its own line: stdout is the object
                raw = raw_link(baud, int(baud / 10 * SECONDS))
            ratio, _nbytes, _peak = link_ratio(baud)
            link.append({"baud": baud, "link": raw["write_ratio"], "boards": ratio, "zmodem": zmodem_ratio(baud)})
        print(json.dumps({"link": link, "heap": heap_figures()}))
        return 0
    heap_rows(heap_figures())
    print("payload throughput / wire payload limit (baud/10 B/s), incompressible data, paced virtual wire")
    print("  link      two micropython peers (192k heap), the link protocol alone, write direction")
    print("  boards    controller `link write` -> tape emulator on the device board (SD writes included)")
    print("  ZMODEM    lrzsz sz -> rz through the same wire")
    print("%8s  %7s  %7s  %7s  %14s  %14s" % ("baud", "link", "boards", "ZMODEM", "heap max (link)", "mem_peak"))
    for baud in a.baud or BAUDS:
        raw = raw_link(baud, int(baud / 10 * SECONDS))
        ratio, _nbytes, _peak = link_ratio(baud)
        zm = zmodem_ratio(baud)
        print("%8d  %7.3f  %7.3f  %7s  %12d B  %12d B" % (
            baud, raw["write_ratio"], ratio, "%.3f" % zm if zm is not None else "n/a", raw["heap_max"],
            raw["mem_peak"]), flush=True)
    print("mem_peak is micropython.mem_peak() of the link peer; on the unix port it counts every allocation "
          "ever made, so the live-heap maximum is shown beside it")
    sd = sd_speed()
    print("SD card on the virtual controller (lib/sdspi.py <-> SPI card model, CRC on; 512 KiB scratch file)")
    print("  files: write %d KiB/s, read %d KiB/s; driver reads: %d KiB/s, %d KiB/s without the CRC16 check"
          " (%d us of CRC16 per 512-byte block)" % (sd["write_kib_s"], sd["read_kib_s"], sd["driver_read_kib_s"],
                                                   sd["driver_read_nocrc_kib_s"], sd["crc16_us_per_block"]))
    print("  the model's own CPU is in these figures; a Pico runs this Python about 40-60x slower")
    c = sd_driver_cost()
    print("  driver CPU per 512-byte block on the unix port (a bus that answers at once): CRC on read %.0f /"
          " write %.0f us, CRC off %.0f / %.0f us" % (c["crc_on"]["read_us"], c["crc_on"]["write_us"],
                                                     c["crc_off"]["read_us"], c["crc_off"]["write_us"]))
    return 0
