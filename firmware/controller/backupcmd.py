# Console commands of the backup engine, scheduler, catalog, restore and verify.
import isotime
from console import CmdError, UsageError, arg_int, opts
from lazycmd import packed
from ds3231 import from_seconds
from controller.engine import BackupError


LIST_LAST = 10  # runs `backup list` shows unless told otherwise
_LIST_KEYS = ("id", "entry", "volume", "tapes", "start", "end", "state", "bytes", "sha256", "reason")


def _restorer():
    # restore.py is loaded by the first restore or verify, not by backups
    from controller.restore import Restorer
    return Restorer


def _iso(t):
    return isotime.fmt(from_seconds(t)) if t is not None else None


def install(con, engine, sched, vols, catalog):

    def newer(v, rec):
        # Volume v changed after backup rec read it (JP 6-168080's guard). The
        # backed-up volume itself: its update time is not the one the run started
        # from, so a change in the second the run ended, or after the DS3231 was
        # set back, counts too. Another volume (or an older record): updated
        # after the run ended.
        if v.name == rec["volume"] and "updated" in rec:
            return v.updated != rec["updated"]
        return v.updated > rec["end"]

    def current_or_stale(rec):
        # stale: the volume changed after the backup
        if rec.get("result") != "ok":
            return rec.get("result")
        try:
            v = vols.open(rec["volume"])
        except Exception:
            return "volume gone"
        return "stale" if newer(v, rec) else "current"

    def show(rec):
        d = dict(rec)
        for k in ("start", "end", "updated"):
            d[k] = _iso(d.get(k))
        d["state"] = current_or_stale(rec)
        d["tapes"] = [s["name"] for s in rec.get("sections", [])]
        return d

    def get(args):
        if len(args) < 1:
            raise UsageError("give a backup id (see backup list)")
        rec = catalog.get(arg_int(args[0], "backup id"))
        if rec is None:
            raise CmdError("no backup %s: `backup list` shows the ids" % args[0])
        return rec

    @con.command("backup run", "backup run ENTRY", "start the backup of table 100 entry ENTRY now")
    def _run(args):
        if len(args) != 1:
            raise UsageError("give the entry number")
        try:
            sched.run_now(arg_int(args[0], "entry"))
        except ValueError as e:
            raise CmdError(str(e))
        return {"queued": int(args[0])}

    @con.command("backup table", "backup table", "backup information table 140 of each device address")
    def _table(args):
        rows = [engine.table(a).as_dict() for a in sorted(engine.tables)]
        return {"tables": rows, "text": "\n".join(
            "addr %(address)d: 151 disk=%(d)d 152 MT=%(m)d 142 checked=%(142_checked)d 143 current=%(143_current)s "
            "144 mount wait=%(144_mount_wait)d" % dict(r, d=r["141"]["151_disk"], m=r["141"]["152_mt"])
            for r in rows) or "no backup has run since boot"}

    @con.command("backup list", "backup list [--last N]",
                 "the catalog: the newest runs (%d unless --last), each current or stale" % LIST_LAST)
    def _list(args):
        # One reply holds the rows, built in one piece on the heap: a catalog
        # that grows by a run a day would not fit (at ~7 KB a reply can already
        # fail), so the newest N, each with what the list shows (`backup show
        # ID` has the rest); "count" says how many runs there are.
        pos, kw = opts(args, values=("last",))
        if pos:
            raise UsageError("no arguments expected")
        n = arg_int(kw.get("last", str(LIST_LAST)), "--last")
        if n < 1:
            raise UsageError("--last must be at least 1")
        ids = catalog.ids()
        rows = []
        for rid in ids[-n:]:
            rec = catalog.get(rid)
            if rec:
                d = show(rec)
                rows.append({k: d.get(k) for k in _LIST_KEYS if k in d})
        text = "\n".join(
            "%4d entry %s %s -> %s  %s  %s  %s bytes" % (r["id"], r["entry"], r["volume"], ",".join(r["tapes"]),
                                                         r["start"], r["state"], r["bytes"]) for r in rows)
        if len(ids) > len(rows):
            text += "\n(%d older runs: backup list --last N, backup show ID)" % (len(ids) - len(rows))
        return {"backups": rows, "count": len(ids), "text": text or "no backups yet"}

    @con.command("backup show", "backup show ID", "one catalog record")
    def _show(args):
        d = show(get(args))
        d["run"] = d["id"]  # a tool's reply carries its own "id" (the command's) in place of the record's
        return d

    @con.command("backup status", "backup status", "what runs now and when each entry starts next")
    def _status(args):
        busy = engine.busy
        return {"running": busy and {"id": busy["id"], "volume": busy["volume"], "chunk": busy["chunk"]},
                "queued": sched.queued(),
                "next": {str(i): _iso(t) for i, t in sched.due.items()},
                "results": {str(i): r for i, r in sched.results.items()}}

    async def _read(args, write):
        pos, kw = opts(args, flags=("force",), values=("to",))
        rec = get(pos)
        if rec.get("result") != "ok":
            raise CmdError("backup %d did not end normally (%s): nothing to read" % (rec["id"], rec.get("result")))
        target = None
        if write:
            name = kw.get("to", rec["volume"])
            try:
                target = vols.open(name)
            except Exception as e:
                raise CmdError(str(e))
            if target.size < rec["bytes"]:
                raise CmdError("%s holds %d bytes, backup %d has %d" % (name, target.size, rec["id"], rec["bytes"]))
            if newer(target, rec) and target.updated != target.created and not kw.get("force"):
                raise CmdError("%s changed at %s, after backup %d ended at %s: restoring would lose newer data; "
                               "add --force to do it anyway" % (name, _iso(target.updated), rec["id"],
                                                                _iso(rec["end"])))
        restorer = packed(_restorer)(con, engine)
        try:
            sha = await restorer.run(rec, target)
        except BackupError as e:
            raise CmdError("step %s: %s" % (e.step, e.reason))
        ok = sha == rec["sha256"]
        con.event("restore_ended" if write else "verify_ended", run=rec["id"], ok=ok, sha256=sha)
        if not ok:
            raise CmdError("SHA-256 mismatch: read %s, backup recorded %s" % (sha, rec["sha256"]))
        return {"run": rec["id"], "sha256": sha, "match": True, "bytes": rec["bytes"],
                "to": target.name if target else None}

    @con.command("restore", "restore ID [--to VOLUME] [--force]", "write backup ID back into a volume")
    async def _restore(args):
        return await _read(args, True)

    @con.command("verify", "verify ID", "read backup ID back and check its SHA-256")
    async def _verify(args):
        return await _read(args, False)
