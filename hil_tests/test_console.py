"""Issue 9: the console as a person types on it (people mode: echo and a prompt).
Backspace, DEL and Ctrl-U edit the line; Ctrl-C breaks into the MicroPython
REPL without running the half-typed line, and Ctrl-D brings the firmware back."""
import time

import pytest

BOARDS = ("controller", "backupdev")


@pytest.fixture(params=BOARDS)
def con(request):
    c = request.getfixturevalue(request.param)
    c.role = request.param
    yield c
    c.ser.write(b"\x15")  # whatever the test left half typed
    c.sync()


def _people(con):
    """Switch to people mode; returns the board's uptime, to prove later that it never rebooted."""
    up = con.call("status")["uptime_s"]
    con.call("mode text")
    _until(con, b"> ")  # the prompt that follows the reply
    return up


def _until(con, end, timeout=10):
    deadline = time.monotonic() + timeout
    out = con._buf
    con._buf = b""
    while not out.endswith(end):
        assert time.monotonic() < deadline, "no %r from the board; got %r" % (end, out[-300:])
        out += con.ser.read(con.ser.in_waiting or 1)
    return out


def _type(con, keys, one_by_one=True):
    """Type `keys` (Enter included) as a person or as a paste; returns the
    echo and the reply up to the next prompt."""
    if one_by_one:
        for k in keys:
            con.ser.write(bytes((k,)))
            con.ser.flush()
            time.sleep(0.01)
    else:
        con.ser.write(keys)
    return _until(con, b"\n> ")


def _still_in_firmware(con, up_before, since):
    con.call("mode json")
    assert con.call("status")["uptime_s"] >= up_before
    assert not [e for t, e in con.events if t >= since and e.get("event") == "boot"]


@pytest.mark.parametrize("one_by_one", (True, False), ids=("typed", "pasted"))
def test_backspace_del_and_ctrl_u_edit_the_line(con, one_by_one):
    t0 = time.monotonic()
    up = _people(con)
    # the report of issue 9: this killed both boards
    out = _type(con, b"vers\x08\x08rsion\r", one_by_one)
    assert b"vers\b \b\b \brsion" in out  # each erased character is rubbed out on the screen
    assert b"role: " + con.role.encode() in out
    out = _type(con, b"statux\x7fs\r", one_by_one)
    assert b"uptime_s: " in out and b"error: " not in out
    # Ctrl-U drops the whole line: the reboot is never run
    out = _type(con, b"reboot now\x15version\r", one_by_one)
    assert b"\b \b" * 10 in out
    assert b"role: " in out and b"rebooting" not in out
    # Backspace on an empty line does nothing; a two-byte character is erased whole
    out = _type(con, b"\x08\x7f\x08ver\xc3\xa9\x08sion\r", one_by_one)
    assert b"role: " in out and b"error: " not in out
    # an erased line is an empty line: no reply, just the prompt
    out = _type(con, b"help\x08\x08\x08\x08\r", one_by_one)
    assert out.endswith(b"\r\n> ") and b"commands" not in out and b"error: " not in out
    _still_in_firmware(con, up, t0)


def test_ctrl_c_mid_line_breaks_into_the_repl_and_runs_nothing(con):
    _people(con)
    con.ser.write(b"reboot")
    _until(con, b"reboot")  # echoed: the board has the half line
    con.ser.write(b"\x03")
    out = _until(con, b">>> ")
    assert b"KeyboardInterrupt" in out and b"rebooting" not in out
    # the REPL is usable
    con.ser.write(b"print(6 * 7)\r")
    out = _until(con, b">>> ")
    assert b"42" in out
    # Ctrl-D: soft reset, the firmware runs again (and the half line never ran)
    con.ser.write(b"\x04")
    out = _until(con, b"> ", timeout=20)
    assert b"boot" in out and b"rebooting" not in out
    con.sync()
    assert con.call("version")["role"] == con.role
