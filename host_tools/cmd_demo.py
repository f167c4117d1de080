"""backupctl demo: the main job, end to end, on a fresh pair of virtual boards.

Two volumes on the controller's SD card are backed up by the controller itself
when the DS3231 reaches their start times: VOL001 to the tape library (it spans
two cartridges, SSC001 -> SSC002), VOL002 to the disk BKD001. Then both are
restored into scratch volumes and compared by SHA-256.
"""
import hashlib
import os
import tempfile
import time

from host_tools import BOARD_CONFIGS
from host_tools.cmd_config import check_file, load
from host_tools.cmd_vol import put
from host_tools.console import BoardConsole
from host_tools.sim import client

TABLE = os.path.join(BOARD_CONFIGS, "demo-table.toml")
# Sizes: VOL001 is larger than one 1 MiB cartridge (early warning 64 KiB before
# its end), so its backup continues on SSC002.
VOLUMES = (("VOL001", 1536 * 1024, "RST001"), ("VOL002", 512 * 1024, "RST002"))
START = "2026-11-29T01:59:55"  # a Sunday, 5 s before the table's 02:00:00 start


def register(sub):
    p = sub.add_parser("demo", help="run the demo on a fresh virtual board pair (what `make demo` does)",
                       description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--keep", action="store_true", help="leave the virtual boards running afterwards")
    p.set_defaults(func=run)


def _step(msg):
    print("\n== " + msg, flush=True)


def _show_event(ev):
    name = ev["event"]
    if name == "backup_progress":
        print("   %-8s %5d / %d KiB on %s (%d KiB/s)" % ("progress", ev["bytes"] // 1024, ev["total"] // 1024,
                                                         ev["volume"], ev["kbps"]), flush=True)
    elif name == "backup_step":
        t = ev["t140"]
        print("   step %-4s table 140: 151 disk=%d 152 MT=%d 142=%d 143=%s 144=%d" % (
            ev["step"], t["141"]["151_disk"], t["141"]["152_mt"], t["142_checked"], t["143_current"] or "-",
            t["144_mount_wait"]), flush=True)
    elif name not in ("restore_progress",):
        print("   %-22s %s" % (name, " ".join("%s=%s" % (k, v) for k, v in sorted(ev.items()) if k != "event")),
              flush=True)


def _watch(con, until, timeout):
    """Print the controller's events until `until` events have all been seen."""
    seen = 0
    deadline = time.monotonic() + timeout
    done = []
    while time.monotonic() < deadline:
        con.pump(0.2)
        for _, ev in con.events[seen:]:
            _show_event(ev)
            if ev["event"] in ("backup_ended_normally", "backup_ended_abnormally"):
                done.append(ev)
        seen = len(con.events)
        if len(done) >= until:
            return done
    raise TimeoutError("the scheduled backups did not finish within %d s" % timeout)


def run(a):
    t_start = time.monotonic()
    check_file(TABLE)
    state = tempfile.mkdtemp(prefix="backupctl-demo-")
    _step("1. two virtual boards (micropython, Pico heap, LittleFS flash, FAT SD, DS3231, 921600 baud wire)")
    st = client.up(state)
    try:
        ctl = BoardConsole(os.path.realpath(st["boards"]["controller"]["console"]), timeout=30)
        dev = BoardConsole(os.path.realpath(st["boards"]["backupdev"]["console"]), timeout=30)
        for n, c in (("controller", ctl), ("backupdev", dev)):
            v = c.sync()
            print("   %-10s %s  firmware %s, MicroPython %s" % (n, c.port, v["version"], v["micropython"]))

        _step("2. the backup device board: a tape library with SSC001 and SSC002 (1 MiB each), a disk BKD001")
        for cmd in ("tape new SSC001 --capacity 1M", "tape new SSC002 --capacity 1M", "disk new BKD001 --size 4M",
                    "mount policy auto"):
            print("   %-36s %s" % (cmd, dev.call(cmd).get("text", "ok")))

        _step("3. volumes on the controller's SD card, filled from the host")
        data = {}
        for name, size, scratch in VOLUMES:
            ctl.call("vol create %s --size %dK" % (name, size // 1024))
            ctl.call("vol create %s --size %dK" % (scratch, size // 1024))
            path = os.path.join(state, name + ".bin")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            put(ctl, name, path)
            data[name] = hashlib.sha256(open(path, "rb").read()).hexdigest()

        _step("4. configuration table 100 from %s (Fig. 6, steps 206-213)" % os.path.relpath(TABLE))
        load(ctl, check_file(TABLE))
        print(ctl.call("config show").get("text"))
        ctl.call("mode json")

        _step("5. DS3231 set to %s: the backups start by themselves at 02:00:00 and 02:01:00" % START)
        ctl.call("rtc set " + START)
        ctl.events.clear()
        ended = _watch(ctl, 2, 240)

        _step("6. the catalog")
        print(ctl.call("backup list")["text"])
        runs = {r["volume"]: r for r in ctl.call("backup list")["backups"]}

        _step("7. restore each backup into a scratch volume and compare SHA-256")
        rows = []
        for name, size, scratch in VOLUMES:
            rec = runs[name]
            ctl.events.clear()
            ctl.call("restore %d --to %s" % (rec["id"], scratch), timeout=240)
            for _, ev in ctl.events:
                if ev["event"] in ("mount_request", "restore_volume_done"):
                    _show_event(ev)
            sha_scratch = ctl.call("vol sha %s" % scratch, timeout=60)["sha256"]
            rows.append((name, ",".join(rec["tapes"]), rec["state"], data[name][:16], rec["sha256"][:16],
                         sha_scratch[:16], "yes" if data[name] == rec["sha256"] == sha_scratch else "NO"))

        _step("8. summary")
        head = ("volume", "backed up to", "state", "sha256 of data", "on backup", "restored", "equal")
        print("   " + "  ".join("%-16s" % h for h in head))
        for row in rows:
            print("   " + "  ".join("%-16s" % c for c in row))
        ok = all(r[-1] == "yes" for r in rows) and all(e["event"] == "backup_ended_normally" for e in ended)
        print("\n   %s in %.0f s" % ("all backups restored identically" if ok else "MISMATCH", time.monotonic() - t_start))
        ctl.close()
        dev.close()
        return 0 if ok else 1
    finally:
        if not a.keep:
            _step("stopping the virtual boards")
            client.down(state)
        else:
            print("boards left running: backupctl sim --sim %s status" % state)
