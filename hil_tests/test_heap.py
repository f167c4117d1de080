"""The virtual board's heap is a Pico's (host_tools/sim/heapcal.py): the largest
ballast each role starts with, and its free heap while running, are within 10 %
of what a Pico has with the same firmware, never more."""
import pytest

from host_tools.build import load_board
from host_tools.sim import heapcal

pytestmark = pytest.mark.virtual_only("a ballast held from boot needs the virtual boot ROM")


@pytest.mark.parametrize("role", ["controller", "backupdev"])
def test_largest_ballast_and_running_free_are_the_picos(role):
    cfg = load_board(role)
    cfg["name"] = role
    tree = heapcal.flash_tree(cfg)
    heapsize, total = heapcal.heap_for(cfg, tree)
    need = heapcal.need_unix(cfg, tree)
    pico_ballast = heapcal.pico_headroom(role, need)
    board = heapcal.ProbeBoard(cfg, tree)  # its own board: the session's keeps its heap
    try:
        ballast, status = board.largest_ballast(heapsize, total)
        idle = board.boot(heapsize)
    finally:
        board.close()
    print("%s: starts with a %d KiB ballast (Pico estimate %.1f KiB); free running %d, Pico estimate %d"
          % (role, ballast // 1024, pico_ballast / 1024, idle["mem_free"],
             heapcal.pico_free(role, idle["mem_alloc"])))
    assert 0.9 * pico_ballast <= ballast <= pico_ballast
    # Running: the Pico's free heap from the firmware's allocation and the
    # ratio measured on running boards, independent of the start-up fit.
    pico_free = heapcal.pico_free(role, idle["mem_alloc"])
    assert 0.9 * pico_free <= idle["mem_free"] <= pico_free

