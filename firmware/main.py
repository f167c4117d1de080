# Entry point on every board: the board file (/board.json) says which role runs.
import hal

if hal.board()["role"] == "controller":
    from controller import app
else:
    from backupdev import app
app.main()
