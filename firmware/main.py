# Entry point on every board: the board file (/board.json) says which role runs.
import gc

# Importing the firmware makes garbage (code being loaded, names being
# built); collected only when the heap is full, it would leave the modules
# scattered over the whole heap with small holes between them. Collecting
# every few KiB during the imports keeps them packed at the bottom, so the
# buffers the app allocates first and the heap left after them are each in
# one piece.
gc.collect()
gc.threshold(4096)
import hal  # noqa: E402
import supervisor  # noqa: E402

if hal.board()["role"] == "controller":
    from controller import app
else:
    from backupdev import app  # type: ignore[no-redef]  # one of the two roles
gc.threshold(-1)
gc.collect()
try:
    app.main()
finally:
    # Ctrl-C (or a crash) left the firmware for the REPL: the watchdog, which
    # nothing can stop, is fed for the grace period, then resets the board.
    supervisor.repl_grace()
