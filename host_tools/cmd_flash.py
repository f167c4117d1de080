"""backupctl flash: put the firmware on a board."""
import os

from host_tools.build import deploy_tree, load_board
from host_tools.sim import client
from host_tools.vboard import flashimg


def register(sub):
    p = sub.add_parser("flash", help="put the firmware on a board",
                       description="--virtual BOARD rebuilds a virtual board's LittleFS flash image from "
                                   "firmware/ (files that did not change are kept, like the rest of the "
                                   "filesystem) and resets the board if it is running.")
    p.add_argument("--virtual", metavar="BOARD", choices=("controller", "backupdev"),
                   help="flash the virtual board of this role")
    p.add_argument("--sim", default=None, metavar="DIR", help="state folder of the virtual boards")
    p.set_defaults(func=run)


def run(a):
    if not a.virtual:
        raise SystemExit("backupctl flash: give --virtual controller|backupdev")
    state = a.sim or client.default_state_dir()
    if client.running(state):
        res = client.call(state, "flash", board=a.virtual)
        changed = res["changed"]
        print("flashed %s (%d files changed), board reset" % (a.virtual, len(changed)))
    else:
        img = os.path.join(state, a.virtual, "flash.img")
        os.makedirs(os.path.dirname(img), exist_ok=True)
        cfg = load_board(a.virtual)
        cfg["name"] = a.virtual
        tree = deploy_tree(a.virtual)
        changed = flashimg.write_tree(img, tree)
        print("wrote %s (%d files changed); `backupctl sim up` boots it" % (img, len(changed)))
    for p in changed:
        print("  " + p)
    return 0
