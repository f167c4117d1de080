"""A short soak (host_tools/soak.py, `make soak` runs the long one) on a pair
of its own, so that no fault or table it sets is left to the other tests:
two runs of seed 1 chosen for their faults: a controller power cut during a
tape backup spanning two cartridges (just after its mount_request for the
second cartridge: the resumed run found that cartridge in the drive while its
checkpoint still named the first, and ended at 607), and the backup device
board restarting during the restore of one."""
import io
import re
import time

import pytest

from host_tools import soak
from host_tools.sim import client

PLANS = (("power_controller", "backup"), ("power_backupdev", "restore"))


@pytest.mark.virtual_only("needs a virtual pair of its own with power control and wire faults")
def test_short_soak_has_no_silent_loss_and_every_run_ends_reported(tmp_path):
    runs = [soak.find("1", kind, phase, "tape") for kind, phase in PLANS]
    state = str(tmp_path / "pair")
    client.up(state)
    out = io.StringIO()
    t0 = time.monotonic()
    try:
        s = soak.soak(state, "1", only=runs, out=out)
    finally:
        client.down(state)
    table = s.table(time.monotonic() - t0)
    print(out.getvalue() + "\n" + table)
    assert s.silent_losses() == 0, table
    assert not [r["broken"] for r in s.results if r["broken"]], table
    assert [r["fault"] for r in s.results] == [k for k, _ in PLANS], table  # each fault was injected
    cut = s.results[0]
    assert cut["outcome"] == "normal" and cut["resumed"], "the run cut by the power cut did not resume:\n" + table
    for r in s.results:  # ended normally and restored identically, or ended abnormally saying why
        assert (r["outcome"] == "normal" and r["restore"].startswith(("ok", "error", "cut"))
                and not r["loss"]) or (r["outcome"] == "abnormal" and r["step"] and r["reason"]), r
    assert re.search(r"^silent losses +0$", table, re.M), table


class _Recorder:
    """Stands in for a Soak: records the simulator requests a fault makes."""

    def __init__(self, supported):
        self.supported = set(supported)
        self.calls = []

    def sim(self, cmd, **kw):
        self.calls.append(dict(kw, cmd=cmd))

    def note(self, text):
        pass


def test_sd_and_rtc_faults_use_the_daemon_requests_or_are_skipped_without_them():
    """The soak's SD and RTC faults are the daemon's `sd` and `rtc` requests
    (COMMON daemon API); a simulator without them skips those faults, saying so."""
    seen = {}
    for kind in ("sd_errors", "sd_eject", "rtc_nack"):
        p = soak.plan("1", soak.find("1", kind, "backup", "tape"))
        rec = _Recorder({"sd", "rtc"})
        f = soak.Fault(rec, p)
        f.step([{"event": "backup_step"}] * p["at"])
        f.clear()
        seen[kind] = [(c["cmd"], c["action"], sorted(set(c) - {"cmd", "action", "board"})) for c in rec.calls]
        if kind.startswith("sd"):
            assert all(c["board"] == p["board"] for c in rec.calls)
        none = _Recorder(())
        g = soak.Fault(none, p)
        g.step([{"event": "backup_step"}] * p["at"])
        g.clear()
        assert none.calls == [] and not g.injected and "no `%s` command" % kind[:3].strip("_") in g.skipped
    assert seen == {"sd_errors": [("sd", "errors", ["read_rate", "write_rate"]), ("sd", "clear", [])],
                    "sd_eject": [("sd", "eject", []), ("sd", "insert", [])],
                    "rtc_nack": [("rtc", "nack", ["n"]), ("rtc", "clear", [])]}
