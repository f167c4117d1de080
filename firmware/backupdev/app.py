# Backup device board (backup device 30): tape library and disk emulator on the
# board's own SD card, answering the controller over the UART link (cable 14).
import asyncio
import system
from console import Console
from version import VERSION
from backupdev import server, commands


async def _main():
    con = Console()
    srv = server.start(con)  # tape library, disks, and the link to the controller (cable 14)
    commands.install(con, srv)
    system.install(con, "backupdev", status=srv.status, needs_sd="the tape library and the disks")
    con.event("boot", role="backupdev", version=VERSION)
    await con.run()


def main():
    asyncio.run(_main())
