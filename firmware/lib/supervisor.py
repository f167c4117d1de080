# Task supervision and health, for the watchdog.
# Every long-lived task runs under start(): whatever kills it is reported
# (`task_error`) and the task starts again after a back-off, so one fault never
# stops a board's work for good. A task with a deadline checks in at least
# that often, waiting included (an idle task is healthy, a task stuck in a
# loop is not). The watchdog is fed only while no registered task is overdue;
# a task waiting out its back-off is not overdue: it is handled, not stuck.
import time
import asyncio
from micropython import const

_BACKOFF_MS = const(1000)  # first restart delay; doubles up to _BACKOFF_MAX_MS
_BACKOFF_MAX_MS = const(60000)
_STABLE_MS = const(300000)  # a task that ran this long fails afresh: back-off starts over
_FEED_MS = const(1000)
_WDT_MS = const(8388)  # the RP2040's longest watchdog period

_tasks = {}  # name -> [deadline_ms, last check-in ticks_ms, or None while paused]
_errors = {}  # name -> [count, last exception as text]
_wdt = None
_feeding = True  # False after `selftest watchdog`
_fail = []  # tasks made to fail at their next check-in (`selftest task`)
event = None  # the console's event(): where task_error goes (set by install)


def register(name, deadline_ms):
    _tasks[name] = [deadline_ms, time.ticks_ms()]


def unregister(name):
    _tasks.pop(name, None)


def _touch(name):
    t = _tasks.get(name)
    if t:
        t[1] = time.ticks_ms()


def checkin(name):
    _touch(name)
    if _fail and name in _fail:
        _fail.remove(name)
        raise RuntimeError("selftest: task %s made to fail" % name)


def pause(name):
    """`name` waits on work that another registered task answers for (a backup's
    stager); its next checkin() ends the pause."""
    t = _tasks.get(name)
    if t:
        t[1] = None


def overdue():
    """Names of the registered tasks that missed their deadline."""
    now = time.ticks_ms()
    return [n for n, t in _tasks.items() if t[1] is not None and time.ticks_diff(now, t[1]) > t[0]]


async def wait(ev, name):
    """Wait for an Event or ThreadSafeFlag, checking in as `name` meanwhile."""
    t = _tasks.get(name)
    period = t[0] // 2 if t else 1000
    while True:
        try:
            await asyncio.wait_for_ms(ev.wait(), period)
            checkin(name)
            return
        except asyncio.TimeoutError:
            checkin(name)


# --- supervision --------------------------------------------------------------
def start(name, fn, deadline_ms=0):
    """Run `await fn()` as task `name` for good: restarted after any exception.
    With deadline_ms, `name` is registered and must check in that often."""
    if deadline_ms:
        register(name, deadline_ms)
    return asyncio.create_task(_run(name, fn))


async def _run(name, fn):
    delay = _BACKOFF_MS
    while True:
        t0 = time.ticks_ms()
        try:
            await fn()
            unregister(name)  # finished its job: nothing to watch any more
            return
        except Exception as e:  # CancelledError is not an Exception: stop() still works
            msg = "%s: %s" % (type(e).__name__, e)
            n = _errors.get(name, (0,))[0] + 1
            _errors[name] = [n, msg]
            if event:
                event("task_error", task=name, exception=msg, count=n, restart_in_ms=delay)
            else:  # before install(), or in a host-side test peer
                print("task_error", name, msg)
        if time.ticks_diff(time.ticks_ms(), t0) > _STABLE_MS:
            delay = _BACKOFF_MS
        t = _tasks.get(name)
        step = t[0] // 2 if t else delay
        left = delay
        while left > 0:  # waiting out the back-off is not being stuck
            _touch(name)
            await asyncio.sleep_ms(min(left, step))
            left -= step
        delay = min(delay * 2, _BACKOFF_MAX_MS)


def errors():
    """Last error and error count per task that ever failed, for `status`."""
    return {n: {"count": e[0], "last": e[1]} for n, e in _errors.items()}


# --- the watchdog -------------------------------------------------------------
# (hal imported here only: the link and its host-side test peers use the part above)
def _settings():
    import hal

    return hal.board().get("watchdog", {})


def arm():
    """At every reset (boot.py): arm the watchdog, and feed it for the REPL's
    grace period until the firmware's feeder takes over."""
    import hal

    global _wdt
    hal.reset_cause()  # now, while the rp2 timer still tells a hard reset from a soft one
    _wdt = hal.wdt(_settings().get("timeout_ms", _WDT_MS))
    repl_grace()


def repl_grace():
    # The firmware is not running (yet, or any more: Ctrl-C, mpremote): keep the
    # REPL usable for a while, then let the watchdog reset the board so that a
    # forgotten REPL never stops the schedule for good.
    import hal

    hal.repl_grace(_settings().get("repl_grace_s", 600) * 1000)


async def _feed():
    while True:
        if _feeding and not overdue():
            _wdt.feed()  # type: ignore[union-attr]  # install() arms it before this task starts
        await asyncio.sleep_ms(_FEED_MS)


def install(con):
    """Report task errors on `con`, feed the watchdog, add `selftest ...`."""
    import hal
    import lazycmd

    global event
    event = con.event
    if _wdt is None:  # boot.py did not run (an old boot.py on the flash)
        arm()
    hal.repl_grace(0)  # the firmware feeds from now on
    start("watchdog", _feed)

    def selftests():  # loaded on first use: a board never runs them on its own
        import selftest
        selftest.install(con)

    lazycmd.lazy(con, {"selftest": ("selftest COMMAND ...", "watchdog, task: make the supervision act (`selftest` lists them)")},
                 selftests)


def stop_feeding():
    """`selftest watchdog`: the watchdog is fed no more; returns its period (ms)."""
    global _feeding
    _feeding = False
    return _settings().get("timeout_ms", _WDT_MS)


def fail_once(name):
    """`selftest task`: task `name` fails at its next check-in. Returns the task
    names if there is no such task, else None."""
    if name not in _tasks:
        return sorted(_tasks)
    _fail.append(name)
