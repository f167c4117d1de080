"""The virtual board's heap is a Pico's (host_tools/sim/heapcal.py): the largest
ballast each role starts with is within 10 % of what a Pico has with the same
firmware, and its free heap while running close to it; never more."""
import pytest

from host_tools.build import load_board
from host_tools.sim import heapcal

pytestmark = pytest.mark.virtual_only("a ballast held from boot needs the virtual boot ROM")

# The controller's free heap on a Pico while it backs up, restores and lists
# its catalog must not fall below what it reached, 81-83 KiB estimated, less
# run-to-run noise (the landed firmware had 70.6 KB). Issue 11 asks for 96 KiB,
# not reached yet: `make bench` prints the figures against that goal.
MIN_FREE_PICO = 78 * 1024


@pytest.mark.parametrize("role", ["controller", "backupdev"])
def test_largest_ballast_and_running_free_are_the_picos(role):
    cfg = load_board(role)
    cfg["name"] = role
    tree = heapcal.flash_tree(cfg)
    heapsize, total = heapcal.heap_for(cfg, tree)
    pico_ballast = heapcal.pico_headroom(role, heapcal.firmware_use(cfg, tree)["need"])
    board = heapcal.ProbeBoard(cfg, tree)  # its own board: the session's keeps its heap
    try:
        ballast, _ = board.largest_ballast(heapsize, total)
        idle = board.boot(heapsize)
    finally:
        board.close()
    # Running: the Pico's free heap from the firmware's allocation and the
    # ratio measured on running boards, independent of the start-up fit.
    pico_free = heapcal.pico_free(role, idle["mem_alloc"])
    print("%s: starts with a %d KiB ballast (Pico estimate %.1f KiB); free running %d, Pico estimate %d"
          % (role, ballast // 1024, pico_ballast / 1024, idle["mem_free"], pico_free))
    assert 0.9 * pico_ballast <= ballast <= pico_ballast
    assert idle["mem_free"] <= pico_free
    if role == "controller":  # the board whose heap is tight: its running figure must be close as well
        # The start-up fit binds; running, the two ratios fitted on the landed
        # firmware have drifted apart as start-up got leaner (88.7 % measured):
        # within 15 % until they are refitted on a Pico with this firmware.
        assert 0.85 * pico_free <= idle["mem_free"]

def test_controller_heap_during_backup_restore_and_list_leaves_room_on_a_pico():
    from host_tools.bench_heap import heap_figures
    f = heap_figures()["controller"]  # its own pair: a table, a tape and volumes of its own
    pico = {k: heapcal.pico_free("controller", f["mem_total"] - f[k])
            for k in ("free_after_boot", "min_free_backup", "min_free_restore", "min_free_list")}
    print("controller on a Pico (estimate): %s; largest block %d" % (
        ", ".join("%s %.1f KiB" % (k, v / 1024) for k, v in pico.items()), f["largest_block"]))
    assert f["largest_block"] >= 48 * 1024
    for k in ("min_free_backup", "min_free_restore", "min_free_list"):
        assert pico[k] >= MIN_FREE_PICO, k


def test_commands_loaded_on_first_use_answer_like_the_others(controller):
    # `link ...`, `backup ...`, `restore` and `verify` load their code on first
    # use (lib/lazycmd.py): the first line gets the real command's answer.
    for line, words in (("link", "link needs one of"), ("backup", "backup needs one of"),
                        ("verify", "(usage: verify ID)"), ("backup show", "(usage: backup show ID)"),
                        ("link tur 99", "address must be 0-15 (usage: link tur ADDR)")):
        r = controller.call(line, check=False)
        assert not r["ok"] and words in r["error"], (line, r)
    text = controller.call("help")["text"]
    assert "backup list [--last N]" in text and "link tur ADDR" in text
    assert "backup COMMAND" not in text  # the stand-ins are gone
