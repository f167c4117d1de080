"""backupctl soak: scheduled backups and restores under random faults on a
fresh virtual board pair, every restore checked by SHA-256 (host_tools/soak.py)."""
import shutil
import sys
import tempfile
import time

from host_tools import soak
from host_tools.sim import client


def register(sub):
    p = sub.add_parser("soak", help="backups and restores under faults drawn from a seed (what `make soak` does)",
                       description=soak.__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=20, help="number of runs (default 20)")
    p.add_argument("--seed", default="1", help="seed of the fault plans (default 1)")
    p.add_argument("--only", type=int, action="append", metavar="I",
                   help="replay only run I of the seed (repeatable)")
    p.add_argument("--size", default="%dK" % (soak.SIZE // 1024),
                   help="source volume size (default %dK: a tape backup spans two cartridges)" % (soak.SIZE // 1024))
    p.add_argument("--keep", action="store_true", help="leave the virtual pair running afterwards")
    p.set_defaults(func=run)


def run(a):
    from host_tools.sim.board import parse_size
    t0 = time.monotonic()
    state = tempfile.mkdtemp(prefix="backupctl-soak-")
    print("soak: seed %s, %d run(s) on a fresh virtual pair in %s" % (a.seed, len(a.only or range(a.runs)), state),
          flush=True)
    client.up(state)
    try:
        s = soak.soak(state, a.seed, a.runs, a.only, parse_size(a.size), out=sys.stdout)
    finally:
        if a.keep:
            print("boards left running: backupctl sim --sim %s status" % state)
        else:
            client.down(state)
            shutil.rmtree(state, ignore_errors=True)
    print()
    print(s.table(time.monotonic() - t0))
    return 1 if any(r["broken"] for r in s.results) else 0
