# Backup device board (backup device 30): tape library and disk emulator on the
# board's own SD card, answering the controller over the UART link (cable 14).
import asyncio
from micropython import const
import hal
import system
import supervisor
from console import Console
from version import VERSION
from backupdev import server, commands

_CONSOLE_MS = const(10000)  # check-in deadline of the console task, for the watchdog


async def _main():
    con = Console()
    srv = server.start(con)  # tape library, disks, and the link to the controller (cable 14)
    supervisor.install(con)  # task errors on the console, the watchdog fed
    commands.install(con, srv)
    system.install(con, "backupdev", status=srv.status, needs_sd="the tape library and the disks")
    con.event("boot", role="backupdev", version=VERSION, reset_cause=hal.reset_cause())
    await supervisor.start("console", con.run, _CONSOLE_MS)


def main():
    asyncio.run(_main())
