# Console commands every board has: help, version, status, reboot, mode, rtc, sd.
import os
import sys
import gc
import micropython
import time
import asyncio
import hal
import isotime
from console import CmdError, UsageError
import lazycmd
from version import VERSION

_boot_ms = time.ticks_ms()
sd_error = "not mounted"  # type: str | None  # None once /sd is mounted; else why not (`sd info`)


def largest_block():
    # The largest bytearray the heap can give now (to 64 bytes), by bisection:
    # what a big buffer could still get, which mem_free alone does not say.
    # Synchronous, so no task allocates in between; each try is garbage at once.
    gc.collect()
    lo, hi = 0, gc.mem_free() + 1
    while hi - lo > 64:
        mid = (lo + hi) // 2
        try:
            bytearray(mid)
            lo = mid
        except MemoryError:
            hi = mid
    gc.collect()
    return lo


def mount_sd():
    global sd_error
    try:
        hal.mount_sd("/sd")
        sd_error = None
    except Exception as e:
        sd_error = "%s: %s" % (type(e).__name__, e)


def install(con, role, rtc=None, status=None, on_rtc_set=None):
    @con.command("help", "help", "list the commands")
    def _help(args):
        rows = con.help_rows()
        return {"commands": [r[0] for r in rows],
                "text": "\n".join("  %-34s %s" % r for r in rows)}

    @con.command("version", "version", "firmware, role and MicroPython version")
    def _version(args):
        impl = sys.implementation
        return {"version": VERSION, "role": role, "board": hal.NAME, "uid": hal.uid(),
                "micropython": "%d.%d.%d" % impl.version[:3], "mpy": getattr(impl, "_mpy", 0)}

    @con.command("status", "status", "uptime, memory and the board's own state")
    def _status(args):
        gc.collect()
        d = {"role": role, "uptime_s": time.ticks_diff(time.ticks_ms(), _boot_ms) // 1000,
             "mem_free": gc.mem_free(), "mem_alloc": gc.mem_alloc(), "largest_block": largest_block(),
             "sd": "mounted" if sd_error is None else sd_error}
        if hasattr(micropython, "mem_peak"):  # ports built with memory statistics
            d["mem_peak"] = micropython.mem_peak()
        if status:
            d.update(status())
        return d

    def heap_commands():
        import heapcmd
        heapcmd.install(con)

    lazycmd.lazy(con, {"heap": ("heap watch MS|off / heap min", "the lowest free heap while something runs")},
                 heap_commands)

    @con.command("reboot", "reboot", "hard reset of the board")
    def _reboot(args):
        async def later():
            await asyncio.sleep_ms(100)  # let the reply reach the host first
            hal.reset()
        asyncio.create_task(later())
        return {"text": "rebooting", "rebooting": True}

    @con.command("mode", "mode json|text", "json: one JSON reply per line and !-tagged events")
    def _mode(args):
        if len(args) != 1 or args[0] not in ("json", "text"):
            raise UsageError("mode must be json or text")
        con.json = args[0] == "json"
        return {"mode": args[0]}

    def _need_rtc():
        if rtc is None:
            raise CmdError("this board has no DS3231 (timer 130)")
        return rtc

    @con.command("rtc get", "rtc get", "read the DS3231 calendar clock")
    def _rtc_get(args):
        r = _need_rtc()
        return {"time": isotime.fmt(r.datetime()), "lost_power": r.lost_power(),
                "temperature": r.temperature()}

    @con.command("rtc set", "rtc set YYYY-MM-DDTHH:MM:SS", "set the DS3231 calendar clock")
    def _rtc_set(args):
        r = _need_rtc()
        if len(args) != 1:
            raise UsageError("rtc set needs one ISO time")
        try:
            t = isotime.parse(args[0])
        except ValueError as e:
            raise UsageError(str(e))
        r.set_datetime(t)
        if on_rtc_set:
            on_rtc_set()  # the scheduler re-plans against the new time
        return {"time": isotime.fmt(r.datetime())}

    @con.command("sd info", "sd info", "SD card size and free space")
    def _sd_info(args):
        if sd_error is not None:
            raise CmdError("no SD card: " + sd_error)
        st = os.statvfs("/sd")
        return {"block_size": st[0], "blocks": st[2], "free_blocks": st[3],
                "total_bytes": st[0] * st[2], "free_bytes": st[0] * st[3]}
