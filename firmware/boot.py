# Runs at every reset, soft resets included (main.py does not run after a soft
# reset from the raw REPL), so /sd is there for mpremote as well as the firmware.
import system

system.mount_sd()
