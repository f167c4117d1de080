"""Turn exceptions into one line a user can act on."""
import serial


def explain(e):
    if isinstance(e, serial.SerialException):
        return "%s (is the board plugged in and the port right? `backupctl ports` lists boards)" % e
    if isinstance(e, TimeoutError):
        return "%s" % e
    return "%s" % e if str(e) else type(e).__name__
