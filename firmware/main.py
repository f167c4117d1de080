# Entry point on every board: the board file (/board.json) says which role runs.
import gc

# Importing the firmware leaves small holes all over the heap; the buffers the
# link and the backup engine allocate at start-up need contiguous space. Hold a
# block while the modules load, then hand it back just before they allocate.
_hole = bytearray(56 * 1024)
import hal  # noqa: E402
import supervisor  # noqa: E402

if hal.board()["role"] == "controller":
    from controller import app
else:
    from backupdev import app
del _hole
gc.collect()
try:
    app.main()
finally:
    # Ctrl-C (or a crash) left the firmware for the REPL: the watchdog, which
    # nothing can stop, is fed for the grace period, then resets the board.
    supervisor.repl_grace()
