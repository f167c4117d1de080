# The controller's end of the link (cable 14), which the backup engine uses,
# and the `link ...` console commands, loaded on first use: their code
# (controller/linkdiag.py) would otherwise hold heap all the time.
import hal
import lazycmd
from link import Link
from devcmd import PAYLOAD_MAX


def connect():
    # The UART link to the backup device board: its rings are allocated here.
    return Link(hal.uart(0), payload_max=PAYLOAD_MAX, baud=hal.board()["uart0"]["baud"])


def start(con, link):
    # Run the link and add the `link` commands.
    link.start()

    def load():
        from controller import linkdiag
        linkdiag.install(con, link)

    lazycmd.lazy(con, {"link": ("link COMMAND ...", "device commands by hand, board to board (`link` lists them)")},
                 load)
