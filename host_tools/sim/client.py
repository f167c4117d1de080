"""Start, stop and command the simulator daemon from the host."""
import json
import os
import socket
import subprocess
import sys
import time

from host_tools import ROOT


class SimError(RuntimeError):
    pass


def default_state_dir():
    return os.environ.get("BACKUPCTL_SIM") or os.path.join(ROOT, ".sim")


def call(state_dir, cmd, timeout=30, **kw):
    path = os.path.join(state_dir, "control.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        raise SimError("no virtual boards running in %s: start them with `backupctl sim up`" % state_dir)
    with s:
        kw["cmd"] = cmd
        s.sendall(json.dumps(kw).encode() + b"\n")
        reply = json.loads(recv_line(s))
    if not reply.get("ok"):
        raise SimError(reply.get("error"))
    return reply["result"]


def recv_line(sock, limit=None):
    """One JSON line of the control protocol (request or reply); ValueError
    past `limit` bytes."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if limit and len(data) > limit:
            raise ValueError("request longer than %d bytes" % limit)
    return data


def running(state_dir):
    try:
        call(state_dir, "status", timeout=5)
        return True
    except (SimError, OSError, ValueError):
        return False


def up(state_dir, baud=921600, boards=None, timeout=30):
    """Start the daemon (detached) unless already running; returns its status."""
    state_dir = os.path.abspath(state_dir)
    if running(state_dir):
        return call(state_dir, "status")
    os.makedirs(state_dir, exist_ok=True)
    from host_tools.sim import heapcal
    from host_tools.sim.daemon import BOARDS
    heapcal.warm(boards or {b: b for b in BOARDS})  # here: the daemon must come up within `timeout`
    args = [sys.executable, "-m", "host_tools.sim.daemon", state_dir, "--baud", str(baud)]
    for name, bf in (boards or {}).items():
        args += ["--board", "%s=%s" % (name, bf)]
    log = open(os.path.join(state_dir, "daemon.log"), "ab")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True, cwd=ROOT)
    log.close()
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            with open(os.path.join(state_dir, "daemon.log"), "rb") as f:
                tail = f.read()[-2000:].decode(errors="replace")
            raise SimError("simulator failed to start:\n" + tail)
        if running(state_dir):
            return call(state_dir, "status")
        time.sleep(0.1)
    proc.kill()
    raise SimError("simulator did not come up within %d s" % timeout)


def down(state_dir, timeout=15):
    """Stop the daemon and wait until it has exited; True if one was running."""
    pidfile = os.path.join(state_dir, "daemon.pid")
    try:
        with open(pidfile) as f:
            pid = int(f.read())
    except (OSError, ValueError):
        pid = None
    try:
        call(state_dir, "down", timeout=5)
    except (SimError, OSError):
        if pid is None:
            return False
    end = time.monotonic() + timeout
    while pid and time.monotonic() < end:
        try:
            # reap it if this process started it (pytest does), else just probe
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
        time.sleep(0.05)
    if pid:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return True
