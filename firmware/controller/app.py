# Storage controller (storage device 20): console, volumes on the SD card,
# configuration table 100, scheduler (timer 130) and backup engine (table 140).
import asyncio
import hal
import system
from console import Console
from ds3231 import DS3231
from version import VERSION
from controller import volcmd, configflow, linkport
from controller import catalog, engine, scheduler, backupcmd
from controller.cache import CHUNK, SLOTS


async def _main():
    # The big buffers first, while the heap main.py held free is in one piece:
    # the link's rings and the backup engine's cache 70.
    link = linkport.connect()
    slots = [bytearray(CHUNK) for _ in range(SLOTS)]
    con = Console()
    linkport.start(con, link)  # the link to the backup device (cable 14) and its `link ...` commands
    rtc = DS3231(hal.i2c())
    vols = volcmd.install(con, rtc)  # the volume API, for the backup engine
    configflow.install(con, vols)  # loads table 100 (table100.current())
    cat = catalog.Catalog()
    eng = engine.Engine(con, link, vols, cat, vols.clock, slots)  # channel interface 41
    sp = scheduler.Scheduler(con, rtc, hal.rtc_int(), eng, cat)  # service processor 22, timer 130
    backupcmd.install(con, eng, sp, vols, cat)
    system.install(con, "controller", rtc=rtc, on_rtc_set=sp.kick,
                   status=lambda: {"backup": eng.busy["id"] if eng.busy else None})
    asyncio.create_task(sp.timer())
    asyncio.create_task(sp.runner())
    con.event("boot", role="controller", version=VERSION)
    await con.run()


def main():
    asyncio.run(_main())
