"""Configuration table 100 and its load flow (Fig. 6): offline validation with the
firmware's own rules, loading (208-213), refusals naming the field, and power
cuts during a load."""
import io
import json
import os
import random
import string
import subprocess
import sys
import time

import pytest

from host_tools import cmd_config
from host_tools.cmd_config import table_rules
from host_tools.console import ConsoleError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "board_configs", "demo-table.toml")


def unique_name():
    return "C" + "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(5))


def backupctl(*args):
    return subprocess.run([sys.executable, "-m", "host_tools.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def toml_table(a, b, flag="0b01", ch_b="uart0", start_b="SUN 03:30:00", extra=""):
    return """\
channel_flag = %s
catch_up = true

[volumes]
names = ["%s", "%s"]

[[backup]]
volume = "%s"
channel = "uart0"
address = 0
device_volume = "SSC001"
start = "02:00:00"

[[backup]]
volume = "%s"
channel = "%s"
address = 1
device_volume = "BKD001"
start = "%s"
%s""" % (flag, a, b, a, b, ch_b, start_b, extra)


def table(names, start_b="SUN 03:30:00", catch_up=True):
    return {"channel_flag": 1, "catch_up": catch_up, "volumes": {"names": list(names)},
            "backup": [{"volume": names[0], "channel": "uart0", "address": 0, "device_volume": "SSC001",
                        "start": "02:00:00"},
                       {"volume": names[1], "channel": "uart0", "address": 1, "device_volume": "BKD001",
                        "start": start_b}]}


@pytest.fixture
def board(controller):
    """(console, two fresh volume names). Table 100 in force before the test is
    loaded again afterwards, then the volumes are deleted."""
    before = controller.call("config show")
    names = [unique_name(), unique_name()]
    for n in names:
        controller.call("vol create %s --size 16K" % n)
    yield controller, names
    controller.sync()
    if controller.call("config show")["sha256"] != before["sha256"]:
        cmd_config.load(controller, table_rules.check(before["table"]), out=io.StringIO())
    for n in names:
        controller.call("vol delete %s --yes" % n, check=False)


def config_errors(con, since):
    return [ev for t, ev in con.events if t >= since and ev.get("event") == "config_error"]


# --- offline -------------------------------------------------------------------

def test_demo_table_validates_offline_and_says_what_it_cannot_check():
    r = backupctl("config", "validate", DEMO)
    assert r.returncode == 0, r.stderr
    assert "volumes exist" in r.stdout and "only the board knows" in r.stdout
    t = cmd_config.check_file(DEMO)
    # the demo: VOL001 to the tape library at address 0 starting with SSC001, VOL002
    # to the disk BKD001 at address 1, both on uart0 (flag 102 = 1)
    assert (t["channel_flag"], t["catch_up"], t["volumes"]) == (1, True, {"count": 2, "names": ["VOL001", "VOL002"]})
    assert [(e["volume"], e["channel"], e["address"], e["device_volume"]) for e in t["backup"]] == \
        [("VOL001", "uart0", 0, "SSC001"), ("VOL002", "uart0", 1, "BKD001")]


BAD_TOML = [
    # (what, file text, field named in the error)
    ("channel not in bit map", toml_table("AAA001", "AAA002", ch_b="uart1"), "backup[1].channel"),
    ("bit set for a channel the board lacks", toml_table("AAA001", "AAA002", flag="0b11"), "channel_flag"),
    ("target not among the volumes", toml_table("AAA001", "AAA002").replace('volume = "AAA002"',
                                                                           'volume = "AAA003"'), "backup[1].volume"),
    ("bad time", toml_table("AAA001", "AAA002", start_b="25:00:00"), "backup[1].start"),
    ("unquoted time", toml_table("AAA001", "AAA002").replace('"02:00:00"', "02:00:00"), "backup[0].start"),
    ("bad name", toml_table("AAA001", "AA/002"), "volumes.names[1]"),
    ("duplicate entry", toml_table("AAA001", "AAA002").replace('volume = "AAA002"', 'volume = "AAA001"'),
     "backup[1].volume"),
    ("typo in a key", toml_table("AAA001", "AAA002").replace("address = 1", "adress = 1"), "backup[1].adress"),
    ("truncated", toml_table("AAA001", "AAA002").rsplit("start", 1)[0], "backup[1].start"),
]


@pytest.mark.parametrize("what,text,field", BAD_TOML, ids=[c[0] for c in BAD_TOML])
def test_validate_refuses_naming_the_field(tmp_path, what, text, field):
    f = tmp_path / "t.toml"
    f.write_text(text)
    r = backupctl("config", "validate", str(f))
    assert r.returncode == 1
    assert ("%s: %s:" % (f, field)) in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_validate_refuses_broken_files(tmp_path):
    cut = tmp_path / "cut.toml"
    text = toml_table("AAA001", "AAA002")
    cut.write_text(text[:-6])  # in the middle of the last string
    r = backupctl("config", "validate", str(cut))
    assert r.returncode == 1 and "not valid TOML" in r.stderr, r.stderr
    assert "ends at line %d: is it truncated?" % text.count("\n") in r.stderr, r.stderr
    latin = tmp_path / "latin.toml"
    latin.write_bytes(toml_table("AAA001", "AAA002").encode() + b"# caf\xe9\n")
    r = backupctl("config", "validate", str(latin))
    assert r.returncode == 1 and "not UTF-8" in r.stderr, r.stderr


# --- on the board ----------------------------------------------------------------

def test_valid_table_loads_reboots_and_show_returns_it(board, tmp_path):
    con, (a, b) = board
    f = tmp_path / "t.toml"
    f.write_text(toml_table(a, b))
    r = backupctl("config", "load", str(f), "--port", con.port)
    assert r.returncode == 0, r.stderr
    assert "212" in r.stdout and "213" in r.stdout
    con.sync()
    shown = con.call("config show")
    want = cmd_config.check_file(str(f))
    assert shown["table"] == want
    assert shown["sha256"] == cmd_config.table_sha(want)
    assert shown["boot"] == {"result": "applied"}  # only a boot that applied a pending table says so
    r = backupctl("config", "show", "--json", "--port", con.port)
    assert json.loads(r.stdout) == want
    r = backupctl("config", "show", "--port", con.port)
    assert "SSC001" in r.stdout and "SUN 03:30:00" in r.stdout
    with pytest.raises(ConsoleError, match="in table 100 in force"):
        con.call("vol delete %s --yes" % a)


def test_firmware_refuses_each_invalid_table_and_keeps_the_old_one(board):
    con, (a, b) = board
    old = table_rules.check(table([a, b]))
    cmd_config.load(con, old, out=io.StringIO())
    good = table_rules.canonical_json(table([a, b], start_b="MON 01:00:00")).encode()
    missing = unique_name()
    def bad(change):
        t = table([a, b])
        change(t)
        return json.dumps(t).encode()

    cases = [
        ("channel not in bit map", bad(lambda t: t["backup"][1].update(channel="uart1")), "backup[1].channel"),
        ("bit for a channel the board lacks", bad(lambda t: t.update(channel_flag=3)), "channel_flag"),
        ("volume not on the SD card", bad(lambda t: t["volumes"]["names"].append(missing)), "volumes.names[2]"),
        ("bad time", bad(lambda t: t["backup"][1].update(start="MON 24:00:00")), "backup[1].start"),
        ("bad name", bad(lambda t: t["backup"][1].update(device_volume="BKD.01")), "backup[1].device_volume"),
        ("duplicate entry", bad(lambda t: t["backup"][1].update(volume=a)), "backup[1].volume"),
        ("truncated", good[:-30], "table"),
        ("not UTF-8", good.replace(b"BKD001", b"BKD\xff01"), "table"),
    ]
    for what, data, field in cases:
        since = time.monotonic()
        with pytest.raises(ConsoleError) as e:
            cmd_config.send(con, data)
        assert ("step 208: %s:" % field) in str(e.value), what
        con.pump(0.1)
        ev = config_errors(con, since)
        assert [(x["step"], x["field"]) for x in ev] == [(208, field)], what
        shown = con.call("config show")
        assert shown["table"] == old and shown["sha256"] == cmd_config.table_sha(old), what
    # a piece lost on the way (207), then a valid table still loads
    con.call("config begin %d %d" % (len(good), 0))
    with pytest.raises(ConsoleError, match="step 207: table: piece at byte 10"):
        con.call("config data 10 QUJD")
    assert con.call("config show")["table"] == old


def test_boot_refuses_a_table_whose_volume_vanished_before_the_reboot(board, monkeypatch):
    """Step 213: the board checks a pending table again when it boots; a volume
    deleted between the commit and the reboot makes it refuse, and the old table stays."""
    con, (a, b) = board
    old = con.call("config show")
    real_send = cmd_config.send

    def send_then_delete(c, data):
        reply = real_send(c, data)
        c.call("vol delete %s --yes" % b)  # in the 100 ms between the commit's reply and the reboot
        return reply

    monkeypatch.setattr(cmd_config, "send", send_then_delete)
    with pytest.raises(cmd_config.ConfigError, match=r"step 213: volumes.names\[1\]: volume %s does not exist" % b):
        cmd_config.load(con, table_rules.check(table([a, b])), out=io.StringIO())
    shown = con.call("config show")
    assert shown["sha256"] == old["sha256"]
    assert shown["boot"]["step"] == 213


@pytest.mark.virtual_only("cuts the board's power")
def test_power_cut_during_load_leaves_old_or_new_table(board, sim):
    con, (a, b) = board
    tables = [table_rules.check(table([a, b])), table_rules.check(table([a, b], start_b="*:20:00", catch_up=False))]
    cmd_config.load(con, tables[0], out=io.StringIO())
    shas = [cmd_config.table_sha(t) for t in tables]

    def cut(after):
        """Stage the other table, send the commit, cut the power `after` seconds
        later (None: before the commit; "reply": once the commit is answered).
        Returns (index of the table in force before, index after the reboot)."""
        now = shas.index(con.call("config show")["sha256"])
        cmd_config.stage(con, cmd_config.table_bytes(tables[1 - now]))
        if after == "reply":
            t0 = time.monotonic()
            con.call("config commit")
            commit_s.append(time.monotonic() - t0)
        elif after is not None:
            con.send_line("#k config commit")
            time.sleep(after)
        sim.power("controller", "off")
        t_on = time.monotonic()
        sim.power("controller", "on")
        con.wait_event("boot", since=t_on, timeout=15)
        con.sync()
        shown = con.call("config show")
        assert shown["sha256"] in shas, "a table that is neither the old nor the new one"
        assert shown["table"] == tables[shas.index(shown["sha256"])]
        boot = shown["boot"] or {}
        # the only error a cut may leave: a load cut short before its verify, reported as such
        assert boot.get("result") != "error" or boot["step"] == 209, boot
        outcomes.append("new" if shas.index(shown["sha256"]) != now else "cut in 209" if boot else "old")
        return now, shas.index(shown["sha256"])

    commit_s = []  # how long the board takes to answer a commit (208-210)
    outcomes = []
    # the two ends of the window are certain
    before, after = cut(None)
    assert after == before, "a table not yet committed must not be in force"
    before, after = cut("reply")
    assert after != before, "a committed (verified) table must be in force after the next boot"
    # in between: half the cuts within the commit's own time (the flash writes),
    # half anywhere up to after the reboot that applies the table
    for i in range(22):
        cut(random.uniform(0, 1.5 * commit_s[0]) if i % 2 else random.uniform(0, 0.4))
    print("power cuts during config load (commit answered in %.1f ms): %s"
          % (commit_s[0] * 1000, ", ".join("%d %s" % (outcomes.count(k), k) for k in sorted(set(outcomes)))))
