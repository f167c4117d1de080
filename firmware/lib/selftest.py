# The `selftest ...` commands of lib/supervisor.py, loaded on first use
# (lib/lazycmd.py): they make the supervision act, which a board never needs
# on its own.
import supervisor
from console import CmdError


def install(con):
    @con.command("selftest watchdog", "selftest watchdog",
                 "stop feeding the watchdog: the board must reset within 9 s")
    def _selftest(args):
        ms = supervisor.stop_feeding()
        return {"text": "watchdog no longer fed: the board resets within %d ms" % ms, "feeding": False}

    @con.command("selftest task", "selftest task NAME",
                 "make a task fail once: it is reported and restarted")
    def _selftest_task(args):
        names = supervisor.fail_once(args[0]) if len(args) == 1 else supervisor.fail_once(None)
        if names is not None:
            raise CmdError("selftest task needs one of: %s" % ", ".join(names))
        return {"text": "task %s fails at its next check-in" % args[0], "task": args[0]}
