# Task health, for the watchdog: every long-lived task registers a deadline and
# checks in at least that often, waiting included (an idle task is healthy, a
# task stuck in a loop or dead is not). The watchdog is fed only while no
# registered task is overdue.
import time
import asyncio

_tasks = {}  # name -> [deadline_ms, last check-in ticks_ms]


def register(name, deadline_ms):
    _tasks[name] = [deadline_ms, time.ticks_ms()]


def unregister(name):
    _tasks.pop(name, None)


def checkin(name):
    t = _tasks.get(name)
    if t:
        t[1] = time.ticks_ms()


def overdue():
    """Names of the registered tasks that missed their deadline."""
    now = time.ticks_ms()
    return [n for n, t in _tasks.items() if time.ticks_diff(now, t[1]) > t[0]]


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
