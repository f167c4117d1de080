# The controller's end of the link (cable 14), which the backup engine uses,
# and the `link ...` console commands, loaded on first use: their code
# (controller/linkdiag.py) would otherwise hold heap all the time.
import hal
from link import Link
from console import CmdError, UsageError
from devcmd import PAYLOAD_MAX


def connect():
    # The UART link to the backup device board: its rings are allocated here.
    return Link(hal.uart(0), payload_max=PAYLOAD_MAX, baud=hal.board()["uart0"]["baud"])


def start(con, link):
    # Run the link and add the `link` command that loads the real ones.
    link.start()

    @con.command("link", "link COMMAND ...", "device commands by hand, board to board (`link` lists them)")
    async def _first(args):
        from controller import linkdiag
        linkdiag.install(con, link)
        del con._cmds["link"]  # the real `link ...` commands answer from now on
        (fn, usage, _), rest = con._find(["link"] + args)
        try:
            res = fn(rest)
            return (await res) if hasattr(res, "send") else res
        except UsageError as e:  # the command's own usage, not this stand-in's
            raise CmdError("%s (usage: %s)" % (e, usage))
