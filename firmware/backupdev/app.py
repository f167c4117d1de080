# Backup device board (backup device 30): tape library and disk emulator on the
# board's own SD card, answering the controller over the UART link (cable 14).
import asyncio
import system
from console import Console
from version import VERSION


async def _main():
    con = Console()
    system.install(con, "backupdev")
    con.event("boot", role="backupdev", version=VERSION)
    await con.run()


def main():
    asyncio.run(_main())
