# Console commands whose code loads on first use: a stand-in per first word
# (`link`, `backup`, `restore` ...) installs the real commands, then runs the
# line with them. Until then their code takes no heap.
import gc
from console import CmdError, UsageError


def packed(load):
    # Run load() (imports) collecting every 4 KiB, as main.py does at boot:
    # the new code fills the holes at the bottom of the heap instead of
    # spreading over the big free block later buffers need.
    gc.collect()
    gc.threshold(4096)
    try:
        return load()
    finally:
        gc.threshold(-1)


def lazy(con, words, load):
    # words: {first word: (usage, help)} shown by `help` until load() has
    # installed the real commands (which may reuse a word, as `restore` does).
    stand = []

    async def run(word, args):
        if stand:
            packed(load)
            for w, fn in stand:
                if con._cmds[w][0] is fn:
                    del con._cmds[w]  # "word sub" commands answer from now on
            del stand[:]
        (fn, usage, _), rest = con._find([word] + args)
        try:
            res = fn(rest)
            return (await res) if hasattr(res, "send") else res
        except UsageError as e:  # the command's own usage, not the stand-in's
            raise CmdError("%s (usage: %s)" % (e, usage))

    for w, (usage, help) in words.items():
        def fn(args, w=w):
            return run(w, args)
        con.command(w, usage, help)(fn)
        stand.append((w, fn))
