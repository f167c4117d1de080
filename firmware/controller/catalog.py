# The backup catalog on the controller's SD card: one JSON record per run
# (/sd/catalog/NNNN.json), replaced whole with atomic.write so that a power cut
# leaves the old or the new record. A record in state "running" carries the
# checkpoint a restarted backup resumes from (like NDMP's restartable backups).
import os
import json
import atomic
import system

DIR = "/sd/catalog"


def _path(rid):
    return "%s/%04d.json" % (DIR, rid)


class Catalog:
    def __init__(self):
        if system.sd_error is None:
            self.open()
        system.on_sd_mount(self.open)  # a card inserted later

    def open(self):
        try:
            os.mkdir(DIR)
        except OSError:
            pass
        for fn in os.listdir(DIR):
            if fn.endswith(".tmp"):  # a save cut short by a reset
                atomic.recover(DIR + "/" + fn[:-4])

    def ids(self):
        system.need_sd()
        return sorted(int(fn[:-5]) for fn in os.listdir(DIR) if fn.endswith(".json"))

    def get(self, rid):
        try:
            with open(_path(rid)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def save(self, rec):
        atomic.write(_path(rec["id"]), json.dumps(rec))

    def new(self, **fields):
        ids = self.ids()
        fields["id"] = (ids[-1] + 1) if ids else 1
        self.save(fields)
        return fields

    def records(self):
        for rid in self.ids():
            rec = self.get(rid)
            if rec:
                yield rec

    def unfinished(self):
        return [r for r in self.records() if r.get("result") == "running"]

    def last_start(self, entry, volume):
        # start time (seconds since 2000) of the newest run of this entry, for catch-up
        t = None
        for r in self.records():
            if r.get("entry") == entry and r.get("volume") == volume:
                t = r["start"] if t is None or r["start"] > t else t
        return t
