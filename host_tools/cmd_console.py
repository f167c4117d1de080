"""backupctl console: an interactive terminal on a board's console."""
import sys

import serial
from serial.tools import miniterm

from host_tools import target


def register(sub):
    p = sub.add_parser("console", help="interactive console of a board (Ctrl-] quits)",
                       description="Opens a board's console. BOARD is `controller` or `backupdev` "
                                   "(virtual boards) or a serial port / USB serial number / pyserial URL. "
                                   "Type `help` there; Ctrl-C breaks into the MicroPython REPL, "
                                   "Ctrl-D in the REPL restarts the firmware. Ctrl-] quits.")
    p.add_argument("board", help="controller, backupdev, or a port")
    p.add_argument("--sim", default=None, metavar="DIR", help="state folder of the virtual boards")
    p.set_defaults(func=run)


def run(a):
    if a.board in ("controller", "backupdev"):
        a.port = None
        port = target.resolve(a, a.board)
    else:
        a.port = a.board
        port = target.resolve(a)
    ser = serial.serial_for_url(port, 115200, do_not_open=True)
    ser.open()
    term = miniterm.Miniterm(ser, echo=False, eol="cr", filters=["direct"])
    term.exit_character = chr(0x1D)
    term.set_rx_encoding("utf-8")
    term.set_tx_encoding("utf-8")
    sys.stderr.write("--- %s on %s; Ctrl-] quits ---\n" % (a.board, port))
    term.start()
    try:
        term.join(True)
    except KeyboardInterrupt:
        pass
    term.join()
    term.close()
    return 0
