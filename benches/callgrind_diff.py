#!/usr/bin/env python3
"""Where two builds' instructions per request differ, by crate and by
function, from the four callgrind files of benches/instructions.sh.

    callgrind_diff.py OUT      # OUT holds callgrind.{build,before}.{N,2N}

Why: the total moves by several percent between two runs of the same
binary. How often tokio (or async-io) polls a task and parks depends on
timing, and valgrind changes the timing from run to run; the functions
that do a request's own work (parsing, framing, the core) count the same
to a few instructions. A change of 1-2% shows in its own functions, and a
difference that sits in the runtime's crates is that noise
(docs/BENCHMARKS.md, run 24).
"""

import collections
import glob
import re
import subprocess
import sys

LINE = re.compile(r"\s*([\d,]+) \([ \d.]+%\)\s+(\S.*)")
REGISTRY = re.compile(r"/(?:registry/src/[^/]+|rust/deps)/([^/]+?)-\d[^/]*/")
# A workspace crate's file, with the checkout's path or relative to it.
WORKSPACE = re.compile(r"^(?:/[^:]*/)?([a-z][a-z0-9-]*)/src/[^:]*\.rs:")


def crate_of(place):
    """The crate (or library) whose source lines a `file:function` line of
    callgrind_annotate counts: for code inlined across crates, the crate it
    was written in, not the function's."""
    m = REGISTRY.search(place)
    if m:
        return m.group(1)
    if place.startswith("/rustc/"):
        return "std"
    m = WORKSPACE.match(place)
    if m:
        return m.group(1)
    if ".so" in place or place.startswith("./"):
        return "libc and ld.so"
    return "other"


def counts(path):
    """Instructions by `file:function`, own cost only, binary paths dropped
    so that two builds' names match."""
    out = subprocess.run(
        ["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path],
        capture_output=True, text=True, check=True,
    ).stdout
    by = collections.Counter()
    for line in out.splitlines():
        m = LINE.match(line)
        if m and "PROGRAM TOTALS" not in line:
            name = re.sub(r" \[[^\]]*\]$", "", m.group(2))
            by[name] += int(m.group(1).replace(",", ""))
    return by


def per_request(out, label):
    """Instructions a request by function: the longer run minus the shorter,
    divided by the requests between them."""
    files = sorted(
        glob.glob(f"{out}/callgrind.{label}.*"), key=lambda f: int(f.rsplit(".", 1)[1])
    )
    if len(files) != 2:
        sys.exit(f"want two callgrind.{label}.N files in {out}, found {len(files)}")
    (short, n), (long, m) = [(f, int(f.rsplit(".", 1)[1])) for f in files]
    a, b = counts(short), counts(long)
    return {k: (b[k] - a[k]) / (m - n) for k in set(a) | set(b)}


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    build, before = per_request(out, "build"), per_request(out, "before")
    names = set(build) | set(before)
    crates = collections.Counter()
    for k in names:
        crates[crate_of(k)] += build.get(k, 0) - before.get(k, 0)
    print("difference a request by source crate (build - before), largest first:")
    for crate, d in sorted(crates.items(), key=lambda kv: -abs(kv[1]))[:12]:
        print(f"  {d:+8.0f}  {crate}")
    print("largest differences by function (before, build, difference):")
    rows = sorted(names, key=lambda k: -abs(build.get(k, 0) - before.get(k, 0)))
    for k in rows[:20]:
        b0, b1 = before.get(k, 0), build.get(k, 0)
        function = k.split(":", 1)[-1]
        print(f"  {b0:8.0f} {b1:8.0f} {b1 - b0:+8.0f}  {function[:110]}")


if __name__ == "__main__":
    main()
