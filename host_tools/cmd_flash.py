"""backupctl flash: put the firmware, or MicroPython itself, on a board."""
import argparse
import os

from host_tools import flash_real, target, uf2
from host_tools.build import ROLES, load_board
from host_tools.sim import client
from host_tools.sim.board import VirtualBoard


def register(sub):
    p = sub.add_parser(
        "flash", help="put the firmware (or MicroPython) on a board",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="--board BOARD --port PORT copies the firmware to a running MicroPython board over its\n"
                    "console (mpremote): only files whose SHA-256 differs are sent, modules compiled by\n"
                    "mpy-cross unless --py; a Pico also gets the SD card driver. Then the board is reset\n"
                    "and must answer `version`. Without --port: the running virtual board of that role.\n\n"
                    "--virtual BOARD rebuilds a virtual board's LittleFS flash image from firmware/ and\n"
                    "resets the board if it is running.\n\n"
                    "--micropython FILE.uf2 installs MicroPython on a Pico in BOOTSEL mode (hold BOOTSEL\n"
                    "while plugging it in, or run `backupctl bootloader PORT`).")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--board", metavar="BOARD",
                      help="controller, backupdev or a board .toml file: flash the board at --port")
    what.add_argument("--virtual", metavar="BOARD", choices=ROLES,
                      help="rebuild the flash image of the virtual board of this role")
    what.add_argument("--micropython", metavar="FILE.uf2", help="install MicroPython from this RPI_PICO .uf2")
    target.add_port_args(p)
    form = p.add_mutually_exclusive_group()
    form.add_argument("--mpy", dest="mpy", action="store_true", default=None,
                      help="send modules compiled by mpy-cross (the default)")
    form.add_argument("--py", dest="mpy", action="store_false", default=None,
                      help="send modules as source: the board compiles them at boot, which needs more heap")
    p.add_argument("--drive", metavar="DIR", help="with --micropython: where the RPI-RP2 drive is mounted "
                                                  "(default: found among the mounted drives)")
    p.set_defaults(func=run)


def run(a):
    if a.drive and not a.micropython:
        raise SystemExit("backupctl flash: --drive goes with --micropython")
    if a.mpy is not None and not a.board:
        raise SystemExit("backupctl flash: --mpy/--py go with --board")
    if a.micropython:
        return run_micropython(a)
    if a.board:
        port = a.port or target.resolve(a, load_board(a.board)["role"])
        flash_real.flash(port, a.board, mpy=a.mpy is not False)
        return 0
    return run_virtual(a)


def run_micropython(a):
    blocks = uf2.validate_uf2(a.micropython)
    print("copying %s (%d KiB) to the RPI-RP2 drive; the Pico then restarts as MicroPython (up to 30 s)"
          % (a.micropython, blocks // 2))
    port = uf2.install_micropython(a.micropython, drive=a.drive)
    print("MicroPython runs on %s; next: backupctl flash --board controller|backupdev --port %s" % (port, port))
    return 0


def run_virtual(a):
    state = a.sim or client.default_state_dir()
    if client.running(state):
        res = client.call(state, "flash", board=a.virtual)
        changed = res["changed"]
        print("flashed %s (%d files changed), board reset" % (a.virtual, len(changed)))
    else:
        # The image as the simulator writes it (.mpy or not, stale files removed).
        board = VirtualBoard(a.virtual, a.virtual, state, uart_path=None)
        os.makedirs(board.dir, exist_ok=True)
        try:
            changed = board.flash()
        finally:
            board.close()
        print("wrote %s (%d files changed); `backupctl sim up` boots it"
              % (os.path.join(board.dir, "flash.img"), len(changed)))
    for p in changed:
        print("  " + p)
    return 0
