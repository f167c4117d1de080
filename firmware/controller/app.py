# Storage controller (storage device 20): console, volumes on the SD card,
# configuration table 100, scheduler (timer 130) and backup engine (table 140).
import asyncio
import hal
import system
from console import Console
from ds3231 import DS3231
from version import VERSION


async def _main():
    con = Console()
    rtc = DS3231(hal.i2c())
    system.install(con, "controller", rtc=rtc)
    con.event("boot", role="controller", version=VERSION)
    await con.run()


def main():
    asyncio.run(_main())
