"""backupctl demo: the main job, end to end, on virtual boards."""
import datetime
import os
import tempfile

from host_tools.console import BoardConsole
from host_tools.sim import client


def register(sub):
    p = sub.add_parser("demo", help="run the demo on a fresh virtual board pair (what `make demo` does)")
    p.add_argument("--keep", action="store_true", help="leave the virtual boards running afterwards")
    p.set_defaults(func=run)


def _step(msg):
    print("\n== " + msg, flush=True)


def run(a):
    state = tempfile.mkdtemp(prefix="backupctl-demo-")
    _step("starting two virtual boards in " + state)
    st = client.up(state)
    try:
        cons = {n: BoardConsole(os.path.realpath(b["console"])) for n, b in st["boards"].items()}
        for n, c in cons.items():
            v = c.sync()
            print("  %-10s %s  firmware %s on MicroPython %s (%s)" % (n, c.port, v["version"], v["micropython"],
                                                                       v["board"]))
        ctl = cons["controller"]
        now = datetime.datetime.now().replace(microsecond=0).isoformat()
        _step("setting the controller's DS3231 to " + now)
        print("  rtc: " + ctl.call("rtc set " + now)["time"])
        for n, c in cons.items():
            _step("status of " + n)
            s = c.call("status")
            for k in sorted(s):
                if k not in ("ok", "id"):
                    print("  %-10s %s" % (k, s[k]))
            if n == "controller":
                print("  %-10s %s" % ("rtc", c.call("rtc get")["time"]))
            info = c.call("sd info")
            print("  %-10s %.1f MiB FAT, %.1f MiB free" % ("sd", info["total_bytes"] / 2**20, info["free_bytes"] / 2**20))
        for c in cons.values():
            c.close()
    finally:
        if not a.keep:
            _step("stopping the virtual boards")
            client.down(state)
    print("\ndemo finished")
    return 0
