# Storage controller (storage device 20): console, volumes on the SD card,
# configuration table 100, scheduler (timer 130) and backup engine (table 140).
import asyncio
from micropython import const
import hal
import system
import supervisor
from console import Console
from ds3231 import DS3231
from version import VERSION
from controller import volcmd, configflow, linkdiag
from controller import catalog, engine, scheduler, backupcmd

# Check-in deadlines of the long-lived tasks (the watchdog is fed only while
# none is missed); each waits in supervisor.wait(), which checks in at half of it.
_CONSOLE_MS = const(10000)
_SCHEDULER_MS = const(10000)
_RUNNER_MS = const(10000)


async def _main():
    con = Console()
    linkdiag.start(con)  # the link to the backup device (cable 14); first, while its buffers fit in one piece
    supervisor.install(con)  # task errors on the console, the watchdog fed
    rtc = DS3231(hal.i2c())
    vols = volcmd.install(con, rtc)  # the volume API, for the backup engine
    configflow.install(con, vols, busy=lambda: eng.lock.locked())  # loads table 100 (table100.current())
    cat = catalog.Catalog()
    eng = engine.Engine(con, linkdiag.get_link(), vols, cat, vols.clock)  # channel interface 41
    sp = scheduler.Scheduler(con, rtc, hal.rtc_int(), eng, cat)  # service processor 22, timer 130
    backupcmd.install(con, eng, sp, vols, cat)
    system.install(con, "controller", rtc=rtc, on_rtc_set=sp.kick,
                   status=lambda: dict(sp.state(), backup=eng.busy["id"] if eng.busy else None),
                   needs_sd="volumes, backups, restores and the schedule (timer 130)")
    supervisor.start("scheduler", sp.timer, _SCHEDULER_MS)
    supervisor.start("runner", sp.runner, _RUNNER_MS)
    con.event("boot", role="controller", version=VERSION, reset_cause=hal.reset_cause())
    await supervisor.start("console", con.run, _CONSOLE_MS)


def main():
    asyncio.run(_main())
