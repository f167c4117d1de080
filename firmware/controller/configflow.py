# The service processor's configuration-setting flow (Fig. 6) on the console.
# The host sends table 100 as JSON in base64 pieces (206/207: take in the
# settings: `config begin`, `config data`); `config commit` checks it (208), has
# table100 write and verify it (209, 210) and reboots the board (212), whose boot
# applies it (213). Every failure is reported (211) as a config_error event
# naming the step and the field, and leaves the table in force as it was. The
# commands themselves (configcmd.py) load on first use; table 100 is loaded here
# at boot, for the scheduler.
import hal
import lazycmd
import tablebase
from controller import table100


def install(con, store, busy=None):
    """Loads table 100 at boot (213) and adds the config commands. store: the
    VolumeStore, whose volumes step 208 checks table 100 against. busy: () -> a
    backup or restore is running (a commit would reboot the board under it)."""
    uarts = [c for c in tablebase.CHANNELS if c in hal.board()]

    def check(table):
        import table_rules  # loaded at boot (table100.boot) and by the config commands only
        return table_rules.check(table, store.names(), uarts)

    res = table100.boot(check)
    if res and res["result"] == "applied":
        con.event("config_applied", sha256=table100.sha256(table100.current()))
    elif res:
        con.event("config_error", **res)

    def commands():
        from controller import configcmd
        configcmd.install(con, check, busy)

    lazycmd.lazy(con, {"config": ("config COMMAND ...", "begin, data, commit, show: table 100 (`config` lists them)")},
                 commands)
