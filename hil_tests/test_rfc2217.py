"""Issue 6: boards on another machine, reached as rfc2217:// URLs. ser2net (the
Debian package `make test` installs) serves the session's virtual boards on
loopback; the console, `backupctl flash`, the HIL plugin's --controller-port /
--backupdev-port and `make hil` all work through it."""
import os
import shutil
import socket
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest

from host_tools import ROOT
from host_tools.console import BoardConsole

pytestmark = pytest.mark.virtual_only("serves the session's virtual boards through ser2net")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ser2net_exe():
    exe = shutil.which("ser2net", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if exe:
        return exe
    if os.geteuid() == 0 or os.environ.get("CI"):
        pytest.fail("ser2net is not installed: run `make sysdeps` (apt-get install ser2net)")
    pytest.skip("ser2net is not installed: sudo apt-get install ser2net (or make sysdeps as root)")


@pytest.fixture(scope="module")
def urls(sim, tmp_path_factory):
    """{role: rfc2217 URL} of the session's boards, served by ser2net on loopback."""
    exe = _ser2net_exe()
    d = tmp_path_factory.mktemp("ser2net")
    ports = {role: _free_port() for role in ("controller", "backupdev")}
    conf = ["%YAML 1.1", "---"]
    for role, port in ports.items():
        conf += ["connection: &%s" % role,
                 "  accepter: telnet(rfc2217),tcp,127.0.0.1,%d" % port,
                 "  connector: serialdev,%s,115200n81,local" % sim.port(role),
                 "  options:",
                 "    kickolduser: true"]
    (d / "ser2net.yaml").write_text("\n".join(conf) + "\n")
    log = open(d / "ser2net.log", "wb")
    # -n: stay in the foreground (ours to stop); -u: no UUCP lock files left behind.
    proc = subprocess.Popen([exe, "-n", "-u", "-c", str(d / "ser2net.yaml"), "-P", str(d / "ser2net.pid")],
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        for port in ports.values():
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None, (d / "ser2net.log").read_text()
                    assert time.monotonic() < deadline, "ser2net does not listen on %d" % port
                    time.sleep(0.1)
        # ser2net does not acknowledge DTR/RTS changes on a device without modem
        # lines (a pty); pyserial must not wait for that (MicroPython needs none).
        yield {role: "rfc2217://127.0.0.1:%d?ign_set_control" % port for role, port in ports.items()}
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_console_commands_work_on_both_boards_over_rfc2217(urls):
    for role in ("controller", "backupdev"):
        with BoardConsole(urls[role]) as con:
            v = con.sync()
            assert v["role"] == role
            assert "status" in con.call("help")["commands"]
            assert con.call("status")["role"] == role
            r = con.call("frobnicate", check=False)
            assert not r["ok"] and "unknown command" in r["error"]


def test_ctrl_c_and_back_over_rfc2217(urls):
    with BoardConsole(urls["controller"]) as con:
        con.sync()
        con.ser.write(b"\x03")
        con.pump(1.0)
        assert any(b"KeyboardInterrupt" in ln for ln in con.lines[-10:])
        assert con.sync()["role"] == "controller"


def _make(*args):
    # -o: never rebuild .venv here, whatever the timestamps say.
    return subprocess.run(["make", "-s", "-o", ".venv/.installed", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


# A board test that holds on a virtual board behind a URL (test_both_boards_answer_version
# expects a real Pico's heap once ports are given).
HIL_SELECTION = "test_unknown_and_bad_commands_get_one_error_each"


def test_make_hil_flashes_and_tests_boards_given_as_urls(urls, tmp_path):
    junit = tmp_path / "junit.xml"
    r = _make("hil", "CONTROLLER=" + urls["controller"], "BACKUPDEV=" + urls["backupdev"],
              "HIL_JUNIT=" + str(junit), "PYTEST_ARGS=-k " + HIL_SELECTION)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "controller answers: firmware" in r.stdout and "backupdev answers: firmware" in r.stdout
    suite = ET.parse(junit).getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("1", "0", "0")
    case = suite.find("testcase")
    assert case.get("name") == HIL_SELECTION and case.find("skipped") is None


def test_make_hil_without_both_boards_says_how_to_name_them():
    r = _make("hil", "CONTROLLER=/dev/ttyACM0")
    assert r.returncode != 0
    assert "make hil CONTROLLER=<port|serial|url> BACKUPDEV=<port|serial|url>" in r.stderr
