# Storage controller (storage device 20): console, volumes on the SD card,
# configuration table 100, scheduler (timer 130) and backup engine (table 140).
import gc
import asyncio
from micropython import const
import hal
import system
import supervisor
from console import Console
from ds3231 import DS3231
from version import VERSION
from controller import volcmd, configflow, linkport
from controller import catalog, engine, scheduler
import lazycmd
from controller.cache import CHUNK, SLOTS

# Check-in deadlines of the long-lived tasks (the watchdog is fed only while
# none is missed); each waits in supervisor.wait(), which checks in at half of it.
_CONSOLE_MS = const(10000)
_SCHEDULER_MS = const(10000)
_RUNNER_MS = const(10000)


async def _main():
    # The big buffers first, before the rest of the start-up scatters small
    # objects: the link's rings and the backup engine's cache 70.
    # Start-up collects every 4 KiB, as main.py does while importing: the
    # garbage of loading table 100 (table_rules.py, the JSON) and of scanning
    # the card is collected before long-lived objects land above it, so that
    # they pack at the bottom and the heap left over is one piece.
    gc.threshold(4096)
    link = linkport.connect()
    slots = [bytearray(CHUNK) for _ in range(SLOTS)]
    con = Console()
    linkport.start(con, link)  # the link to the backup device (cable 14) and its `link ...` commands
    supervisor.install(con)  # task errors on the console, the watchdog fed
    rtc = DS3231(hal.i2c())
    vols = volcmd.install(con, rtc)  # the volume API, for the backup engine
    configflow.install(con, vols, busy=lambda: eng.lock.locked())  # loads table 100 (table100.current())
    cat = catalog.Catalog()
    eng = engine.Engine(con, link, vols, cat, vols.clock, slots)  # channel interface 41
    sp = scheduler.Scheduler(con, rtc, hal.rtc_int(), eng, cat)  # service processor 22, timer 130

    def backup_commands():  # backup run/list/show/status/table, restore, verify: loaded on first use
        from controller import backupcmd
        backupcmd.install(con, eng, sp, vols, cat)

    lazycmd.lazy(con, {"backup": ("backup COMMAND ...", "run, list, show, status, table (`backup` lists them)"),
                       "restore": ("restore ID [--to VOLUME] [--force]", "write backup ID back into a volume"),
                       "verify": ("verify ID", "read backup ID back and check its SHA-256")}, backup_commands)
    system.install(con, "controller", rtc=rtc, on_rtc_set=sp.kick,
                   status=lambda: dict(sp.state(), backup=eng.busy["id"] if eng.busy else None),
                   needs_sd="volumes, backups, restores and the schedule (timer 130)")
    supervisor.start("scheduler", sp.timer, _SCHEDULER_MS)
    supervisor.start("runner", sp.runner, _RUNNER_MS)
    con.event("boot", role="controller", version=VERSION, reset_cause=hal.reset_cause())
    gc.threshold(-1)
    await supervisor.start("console", con.run, _CONSOLE_MS)


def main():
    asyncio.run(_main())
