# Runs at every reset, soft resets included (main.py does not run after a soft
# reset from the raw REPL, which is what mpremote does): it arms the watchdog
# with the REPL's grace period, so mpremote and people can work in the REPL and
# a forgotten REPL still ends in a reset that runs the firmware (and its
# schedule) again; and it mounts /sd for mpremote as well as the firmware.
import supervisor
import system

supervisor.arm()
system.mount_sd()
