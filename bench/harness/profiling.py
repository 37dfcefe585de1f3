"""Optional (--profile): where the time goes, for the goals' notes. One extra, untimed run each of
embedstack.fit and of the plain-SQL fit (serial) under `perf record -a`, then the backend
process's samples (its fit threads included) by shared object and symbol."""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from common import log
from fit import SERIAL, plain_sql_fit

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$")


def perf_profile(ctx, fn, setup=(), top=12):
    with ctx.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for s in setup:
            conn.execute(s)
        fd, data = tempfile.mkstemp(prefix="es-bench-perf-", suffix=".data")
        os.close(fd)
        p = subprocess.Popen(["perf", "record", "-a", "-F", "499", "-o", data, "--", "sleep", "3600"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        t = time.time()
        fn(conn)
        seconds = time.time() - t
        p.send_signal(signal.SIGINT)
        p.wait()
    out = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "--pid", str(pid),
                          "--percentage", "relative", "--sort", "dso,symbol", "--percent-limit", "1"],
                         capture_output=True, text=True).stdout
    os.unlink(data)
    rows = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            sym = re.sub(r"(\s+-)+\s*$", "", m.group(3)).strip()
            rows.append((float(m.group(1)), m.group(2), sym if len(sym) <= 70 else sym[:67] + "..."))
    by_dso = {}
    for pct, dso, _ in rows:
        by_dso[dso] = by_dso.get(dso, 0.0) + pct
    return {"seconds": seconds, "top": rows[:top], "by_dso": sorted(by_dso.items(), key=lambda x: -x[1])}


def run(ctx):
    if not shutil.which("perf"):
        ctx.notes.append("(no `perf` on this machine: no profile)")
        return
    k = len(ctx.truth.dims)
    res = {}
    res["embedstack.fit"] = perf_profile(
        ctx, lambda c: c.execute("SELECT id FROM embedstack.fit('bench', 'pairs', 'a', 'b', 'y')").fetchone())
    log(f"profile: embedstack.fit {res['embedstack.fit']['seconds']:.1f} s")
    res["plain SQL fit, serial"] = perf_profile(ctx, lambda c: c.execute(plain_sql_fit(k)).fetchone(), setup=SERIAL)
    log(f"profile: plain SQL fit {res['plain SQL fit, serial']['seconds']:.1f} s")
    ctx.results["profile"] = res
