# Console commands every board has: help, version, status, reboot, mode, rtc, sd.
import sys
import gc
import micropython
import time
import asyncio
import vfs
import hal
import supervisor
from micropython import const
from console import CmdError, UsageError
import lazycmd
from version import VERSION

_boot_ms = time.ticks_ms()
_RETRY_MS = const(3000)  # a missing or failed card is looked at this often
sd_error = "not mounted"  # type: str | None  # None once /sd is mounted; else why not (shown by `sd info`)
sd_ready = asyncio.Event()  # set while /sd is mounted: tasks that need the card wait on it
_sd = None  # the card's driver while mounted
_on_mount = []  # what re-reads the card after each mount (volumes, catalog, ...)


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
    global sd_error, _sd
    try:
        _sd = hal.mount_sd("/sd")
        sd_error = None
        sd_ready.set()
    except Exception as e:
        sd_error = "%s: %s" % (type(e).__name__, e.args[-1] if e.args else e)
    return sd_error is None


def need_sd():
    """Raise the console's error for code that cannot run without the card."""
    if sd_error is not None:
        raise CmdError("no SD card: " + sd_error)


def on_sd_mount(fn):
    """fn() runs after every mount of /sd but the one at boot (the card came
    back), and after a failed operation on a card that still answers: FatFs
    keeps failing a file that saw an I/O error, so its users reopen them."""
    _on_mount.append(fn)


def _reopen(con):
    for fn in _on_mount:
        try:
            fn()
        except Exception as e:  # one user's failure must not stop the others'
            con.event("sd_error", reason="%s: %s" % (type(e).__name__, e))


async def _sd_watch(con):
    # One cheap look every few seconds: mount a missing card; ask a mounted
    # one for its status (one command); a card whose driver failed is probed
    # with one read, and unmounted if it does not answer (pulled, dead), so
    # that the next insertion mounts it afresh.
    global sd_error, _sd
    sec = bytearray(512)
    supervisor.register("sd", 4 * _RETRY_MS)
    while True:
        await asyncio.sleep_ms(_RETRY_MS)
        supervisor.checkin("sd")
        if sd_error is None and _sd is not None:  # mounted (the second test only tells the type checker)
            if _sd.error is None:
                try:
                    _sd.status()  # an idle card is still there?
                    continue
                except OSError:
                    pass
            why = _sd.error
            try:
                _sd.readblocks(0, sec)
                _sd.error = None
                con.event("sd_io_error", reason=why)  # the card answers: that failure was one operation's
                _reopen(con)
                continue
            except OSError:
                pass
            try:
                vfs.umount("/sd")
            except OSError:
                pass
            sd_ready.clear()
            _sd = None
            sd_error = "OSError: " + why
            con.event("sd_lost", reason=why)
        if mount_sd():
            con.event("sd_mounted")
            _reopen(con)


def install(con, role, rtc=None, status=None, on_rtc_set=None, needs_sd=""):
    # needs_sd: what does not run without the card, for `status` and `sd info`
    asyncio.create_task(_sd_watch(con))

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
             "sd": "mounted" if sd_error is None else "missing: " + sd_error,
             "reset_cause": hal.reset_cause(), "task_errors": supervisor.errors()}
        if sd_error is not None:
            d["not_running"] = needs_sd
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

    def rtc_sd_commands():  # rtc get/set, sd info/bench: loaded on first use
        import syscmd
        syscmd.install(con, rtc, on_rtc_set, needs_sd)

    lazycmd.lazy(con, {"rtc": ("rtc COMMAND ...", "get, set: the DS3231 calendar clock (`rtc` lists them)"),
                       "sd": ("sd COMMAND ...", "info, bench: the SD card (`sd` lists them)")}, rtc_sd_commands)
