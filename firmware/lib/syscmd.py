# The `rtc ...` and `sd ...` console commands of lib/system.py, loaded on
# first use (lib/lazycmd.py): a board runs for weeks without either.
import os
import isotime
import system
from console import CmdError, UsageError, arg_int


def install(con, rtc, on_rtc_set, needs_sd):
    def _need_rtc():
        if rtc is None:
            raise CmdError("this board has no DS3231 (timer 130)")
        return rtc

    @con.command("rtc get", "rtc get", "read the DS3231 calendar clock")
    def _rtc_get(args):
        r = _need_rtc()
        return {"time": isotime.fmt(r.datetime()), "lost_power": r.lost_power(),
                "temperature": r.temperature()}

    @con.command("rtc set", "rtc set YYYY-MM-DDTHH:MM:SS", "set the DS3231 calendar clock")
    def _rtc_set(args):
        r = _need_rtc()
        if len(args) != 1:
            raise UsageError("rtc set needs one ISO time")
        try:
            t = isotime.parse(args[0])
        except ValueError as e:
            raise UsageError(str(e))
        r.set_datetime(t)
        if on_rtc_set:
            on_rtc_set()  # the scheduler re-plans against the new time
        return {"time": isotime.fmt(r.datetime())}

    @con.command("sd info", "sd info", "SD card size and free space")
    def _sd_info(args):
        sd = system._sd
        if system.sd_error is not None or sd is None:  # (the second test tells the type checker)
            raise CmdError("no SD card: %s; not running: %s" % (system.sd_error, needs_sd))
        st = os.statvfs("/sd")
        return {"block_size": st[0], "blocks": st[2], "free_blocks": st[3],
                "total_bytes": st[0] * st[2], "free_bytes": st[0] * st[3],
                "card_sectors": sd.sectors, "crc": sd.crc, "last_error": sd.error}

    @con.command("sd bench", "sd bench [KIB]", "SD read/write KiB/s (a scratch file) and the driver's CRC cost")
    async def _sd_bench(args):
        system.need_sd()
        import sdbench
        kib = arg_int(args[0], "KIB") if args else 128
        if not 4 <= kib <= 4096:
            raise UsageError("KIB must be 4-4096")
        d = await sdbench.run(system._sd, kib)
        d["text"] = "write %(write_kib_s)d KiB/s, read %(read_kib_s)d KiB/s (files); driver read %(driver_read_kib_s)d" \
            " KiB/s, %(driver_read_nocrc_kib_s)d without CRC check; CRC16 %(crc16_us_per_block)d us/block" % d
        return d
