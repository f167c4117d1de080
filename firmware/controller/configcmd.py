# The `config ...` commands of the configuration-setting flow (configflow.py):
# loaded on first use (lib/lazycmd.py), since a table is loaded rarely.
import asyncio
from binascii import a2b_base64, crc32
import hal
import table_rules
from console import CmdError, UsageError, arg_int
from controller import table100


def _text(t, sha, boot):
    v = t["volumes"]
    flag = t["channel_flag"]
    chans = [c for i, c in enumerate(table_rules.CHANNELS) if flag >> i & 1]
    rows = ["table 100 in force (sha256 %s)" % sha[:16],
            "  101 volumes: %s (110 = %d)" % (" ".join(v["names"]) or "none", v["count"]),
            "  102 channel flag: %d (%s)" % (flag, ", ".join(chans) or "no channel"),
            "  catch_up: %s" % ("yes" if t["catch_up"] else "no"),
            "  103 backup entries: %d" % len(t["backup"])]
    if t["backup"]:
        rows.append("      120 volume  121 channel  122 address  123 device volume  124 start")
        for e in t["backup"]:
            rows.append("      %-10s  %-11s  %-11d  %-17s  %s" % (e["volume"], e["channel"], e["address"],
                                                                e["device_volume"], e["start"]))
    if boot:
        rows.append("  last boot: " + " ".join("%s=%s" % kv for kv in sorted(boot.items())))
    return "\n".join(rows)


def install(con, check, busy):
    """Adds the config commands. check(table): step 208 (configflow.py). busy: () ->
    a backup or restore is running (a commit would reboot the board under it)."""
    staged = {}  # the table being taken in: buf, crc, got

    def fail(step, field, reason):
        # 211: the error goes out as an event too, for whoever watches the board
        staged.clear()
        con.event("config_error", step=step, field=field, reason=reason)
        raise CmdError("step %d: %s: %s (the table in force is unchanged)" % (step, field, reason))

    @con.command("config begin", "config begin LENGTH CRC32", "start taking in table 100 (JSON, LENGTH bytes)")
    def _begin(args):
        if len(args) != 2:
            raise UsageError("give LENGTH and CRC32")
        n = arg_int(args[0], "LENGTH")
        if not 0 < n <= table_rules.MAX_TABLE_BYTES:
            raise UsageError("LENGTH must be 1-%d" % table_rules.MAX_TABLE_BYTES)
        staged.clear()
        staged.update(buf=bytearray(n), crc=arg_int(args[1], "CRC32"), got=0)
        return {"length": n}

    @con.command("config data", "config data OFFSET BASE64", "the next piece of the table")
    def _data(args):
        if len(args) != 2:
            raise UsageError("give OFFSET and BASE64")
        if not staged:
            raise CmdError("no table being taken in: `config begin` first")
        off = arg_int(args[0], "OFFSET")
        if off != staged["got"]:
            fail(207, "table", "piece at byte %d, expected byte %d (a line was lost)" % (off, staged["got"]))
        try:
            piece = a2b_base64(args[1])
        except ValueError:
            fail(207, "table", "piece at byte %d is not base64" % off)
        buf = staged["buf"]
        if off + len(piece) > len(buf):
            fail(207, "table", "more than the %d bytes announced" % len(buf))
        buf[off:off + len(piece)] = piece
        staged["got"] = off + len(piece)
        return {"received": staged["got"]}

    @con.command("config commit", "config commit", "check (208), write and verify (209, 210), reboot (212)")
    def _commit(args):
        if args:
            raise UsageError("config commit takes no arguments")
        if not staged:
            raise CmdError("no table being taken in: `config begin` first")
        if busy and busy():
            # the table taken in is kept: commit again once the run has ended
            raise CmdError("a backup or restore is running: config commit would reboot the board under it; "
                           "commit again when it has ended (the table in force is unchanged)")
        buf, got = staged["buf"], staged["got"]
        if got != len(buf):
            fail(207, "table", "got %d of %d bytes (truncated transfer)" % (got, len(buf)))
        if crc32(buf) != staged["crc"]:
            fail(207, "table", "CRC-32 mismatch: the table was damaged on the way")
        staged.clear()
        try:
            table = check(table_rules.parse(buf))
            table100.store(table_rules.canonical_json(table).encode())
        except table_rules.TableError as e:
            fail(208, e.field, e.reason)
        except table100.StepError as e:
            fail(e.step, e.field, e.reason)
        asyncio.create_task(_reboot())
        return {"sha256": table100.sha256(table), "rebooting": True,
                "text": "table 100 checked (208), written and verified (209, 210); rebooting to apply it (212)"}

    @con.command("config show", "config show", "table 100 in force, and what the last boot did with it (213)")
    def _show(args):
        if args:
            raise UsageError("config show takes no arguments")
        t = table100.current()
        sha = table100.sha256(t)
        boot = table100.boot_result()
        return {"table": t, "sha256": sha, "boot": boot, "text": _text(t, sha, boot)}


async def _reboot():
    await asyncio.sleep_ms(100)  # let the reply reach the host first
    hal.reset()
