"""Shared pieces of the benchmark harness: connections, timing with the backend's memory,
binary COPY of pgvector vectors, the correctness-check registry."""

import os
import statistics
import struct
import threading
import time

import numpy as np
import psycopg
import psycopg.copy
from psycopg.generators import copy_to

PGCOPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
PGCOPY_TRAILER = struct.pack(">h", -1)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class CheckFailed(Exception):
    pass


class Ctx:
    """Everything a comparison needs: arguments, connection parameters, the generated data
    (the truth), results collected for the report, and the correctness checks."""

    def __init__(self, args):
        self.args = args
        self.dims = args.dims
        self.results = {}  # section -> dict, filled by the comparisons
        self.checks = []  # (section, name, ok, detail)
        self.notes = []  # free text for the report
        self.truth = None  # datagen.Dataset of the main data size
        self.library = None  # the embedstack library the 0.3.0 databases run on (None: the installed one)

    # -- connections -------------------------------------------------------------------
    def connect(self, dbname=None, autocommit=True):
        return psycopg.connect(
            host=self.args.host,
            port=self.args.port,
            user=self.args.user,
            dbname=dbname or self.args.db,
            autocommit=autocommit,
        )

    # -- checks ------------------------------------------------------------------------
    def check(self, section, name, ok, detail=""):
        ok = bool(ok)
        self.checks.append((section, name, ok, detail))
        log(f"check {'PASS' if ok else 'FAIL'} [{section}] {name}: {detail}")
        return ok

    @property
    def failed(self):
        return [c for c in self.checks if not c[2]]


# -- which library a database runs ------------------------------------------------------
def point_library(conn, path):
    """Points the embedstack C functions of the connected database at another build of the
    library (pg_proc.probin; this database only). The connection that ran CREATE EXTENSION has
    loaded the installed library: close it and use new connections afterwards."""
    # (embedstack.cosine is a C function of every release: 0.3.1 dropped _write, used here before.)
    return conn.execute("UPDATE pg_proc SET probin = %s WHERE probin = (SELECT p.probin FROM pg_proc p "
                        "WHERE p.proname = 'cosine' AND p.pronamespace = 'embedstack'::regnamespace "
                        "AND p.prolang = (SELECT l.oid FROM pg_language l WHERE l.lanname = 'c') LIMIT 1)",
                        (path,)).rowcount


def is_debug_build(path):
    """True when the shared library carries DWARF debug info (a debug build: pgrx's `cargo pgrx
    test` installs one), None when that cannot be told."""
    import subprocess
    try:
        out = subprocess.run(["readelf", "-S", "-W", path], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return ".debug_info" in out


def loaded_libraries(pid):
    """The embedstack libraries mapped by a backend (from /proc: we run on the server's machine)."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return sorted({line.split()[-1] for line in f if "embedstack" in line.split()[-1]})
    except OSError:
        return []


# -- memory of a process ---------------------------------------------------------------
def proc_status_kb(pid, field):
    """VmHWM / VmRSS (kB) of a process from /proc (we run as root on the server's machine)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except FileNotFoundError:
        return None
    return None


def reset_self_hwm():
    """Resets this process's VmHWM (Linux: writing 5 to clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


class RssSampler:
    """Samples VmRSS of a process every `interval` seconds in a thread: the peak of a phase of a
    long operation (VmHWM only gives the peak of the whole life of the process)."""

    def __init__(self, pid, interval=0.2):
        self.pid = pid
        self.interval = interval
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            kb = proc_status_kb(self.pid, "VmRSS")
            if kb is not None:
                self.samples.append((time.time(), kb))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def peak_between(self, t0, t1):
        vals = [kb for t, kb in self.samples if t0 <= t <= t1]
        return max(vals) if vals else None


class WorkerSampler:
    """Counts the parallel workers of a backend (pg_stat_activity.leader_pid) every `interval`
    seconds from a connection of its own: how many workers an index build really got."""

    def __init__(self, ctx, pid, interval=0.25):
        self.ctx = ctx
        self.pid = pid
        self.interval = interval
        self.max_workers = 0
        self.samples = []  # (time, workers)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        with self.ctx.connect("postgres") as conn:
            while not self._stop.is_set():
                n = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE leader_pid = %s", (self.pid,)).fetchone()[0]
                self.samples.append((time.time(), n))
                self.max_workers = max(self.max_workers, n)
                self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def max_between(self, t0, t1):
        return max((n for t, n in self.samples if t0 <= t <= t1), default=0)


class Measured:
    def __init__(self):
        self.seconds = None
        self.t0 = None
        self.t1 = None
        self.backend_hwm_kb = None  # VmHWM of the backend that ran the operation
        self.client_hwm_kb = None  # VmHWM of this (client) process, for the seed workflow
        self.client_rss_before_kb = None
        self.sampler = None
        self.phases = {}  # name -> seconds
        self.value = None  # what the operation returned
        self.workers = None  # WorkerSampler (sample_workers)


def measure(ctx, fn, setup=(), sample_rss=False, client_memory=False, sample_workers=False):
    """Runs fn(conn) on a fresh connection (autocommit) after the `setup` statements; times it
    and reads the backend's VmHWM before closing. Returns a Measured."""
    m = Measured()
    with ctx.connect() as conn:
        pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]
        for s in setup:
            conn.execute(s)
        if client_memory:
            m.client_rss_before_kb = proc_status_kb("self", "VmRSS")
            reset_self_hwm()
        sampler = RssSampler(pid) if sample_rss else None
        workers = WorkerSampler(ctx, pid) if sample_workers else None
        for x in (sampler, workers):
            if x:
                x.__enter__()
        try:
            m.t0 = time.time()
            m.value = fn(conn)
            m.t1 = time.time()
        finally:
            for x in (sampler, workers):
                if x:
                    x.__exit__(None, None, None)
        m.workers = workers
        m.seconds = m.t1 - m.t0
        m.backend_hwm_kb = proc_status_kb(pid, "VmHWM")
        if client_memory:
            # growth of this process's peak over its RSS before (the harness keeps the generated data)
            m.client_hwm_kb = proc_status_kb("self", "VmHWM") - (m.client_rss_before_kb or 0)
        m.sampler = sampler
    return m


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# -- binary COPY of vectors ------------------------------------------------------------
def row_dtype(columns):
    """A big-endian structured dtype for one binary COPY row of fixed-size columns.
    columns: list of (name, kind, dim) with kind in int4 / int8 / float8 / vector."""
    fields = [("nfields", ">i2")]
    for name, kind, dim in columns:
        fields.append((name + "_len", ">i4"))
        if kind == "int4":
            fields.append((name, ">i4"))
        elif kind == "int8":
            fields.append((name, ">i8"))
        elif kind == "float8":
            fields.append((name, ">f8"))
        elif kind == "vector":
            fields.append((name + "_dim", ">i2"))
            fields.append((name + "_unused", ">i2"))
            fields.append((name, ">f4", (dim,)))
        else:
            raise ValueError(kind)
    return np.dtype(fields)


def _field_len(kind, dim):
    return {"int4": 4, "int8": 8, "float8": 8}.get(kind, 4 + 4 * (dim or 0))


def encode_rows(columns, arrays, start, stop):
    """Binary COPY bytes of rows [start, stop) (no header)."""
    dt = row_dtype(columns)
    n = stop - start
    rec = np.empty(n, dtype=dt)
    rec["nfields"] = len(columns)
    for (name, kind, dim), arr in zip(columns, arrays):
        rec[name + "_len"] = _field_len(kind, dim)
        if kind == "vector":
            rec[name + "_dim"] = dim
            rec[name + "_unused"] = 0
        rec[name] = arr[start:stop]
    return rec.tobytes()


class FlushingWriter(psycopg.copy.LibpqWriter):
    """A COPY writer that hands libpq 1 MB at a time and waits until each is sent. psycopg's own
    writer leaves a large write (tens of MB of vectors) in libpq's output buffer, and libpq
    shifts the unsent rest of that buffer after every partial send: while the server is busier
    than the client (toast, WAL, checkpoints) the client spent its CPU on those shifts and loaded
    ~225 rows/s of 22.5 kB instead of thousands (measured with py-spy: 93 % in put_copy_data).
    Built on psycopg 3.2's writer interface (LibpqWriter, generators.copy_to), which
    requirements.txt pins."""

    PIECE = 1 << 20

    def write(self, data):
        view = memoryview(data)
        for i in range(0, len(view), self.PIECE):
            self.connection.wait(copy_to(self._pgconn, view[i:i + self.PIECE], flush=True))


def copy_from_stdin(cur, statement):
    """cur.copy(statement) for COPY ... FROM STDIN, with the FlushingWriter."""
    return cur.copy(statement, writer=FlushingWriter(cur))


def copy_in(conn, table, column_names, columns, arrays, chunk_rows=20000):
    """COPY table (column_names) FROM STDIN (FORMAT binary) from numpy arrays."""
    n = len(arrays[0])
    with conn.cursor() as cur:
        with copy_from_stdin(cur, f"COPY {table} ({', '.join(column_names)}) FROM STDIN (FORMAT binary)") as cp:
            cp.write(PGCOPY_HEADER)
            for s in range(0, n, chunk_rows):
                cp.write(encode_rows(columns, arrays, s, min(n, s + chunk_rows)))
            cp.write(PGCOPY_TRAILER)


def copy_out(conn, query, columns):
    """Runs COPY (query) TO STDOUT (FORMAT binary) and parses the fixed-size rows with numpy.
    Returns a structured array (big-endian fields named as the columns). Every value must be
    non-NULL and each vector of the declared dimension (checked)."""
    chunks = []
    with conn.cursor() as cur:
        with cur.copy(f"COPY ({query}) TO STDOUT (FORMAT binary)") as cp:
            for data in cp:
                chunks.append(bytes(data))
    buf = b"".join(chunks)
    del chunks
    if not buf.startswith(PGCOPY_HEADER[:11]):
        raise CheckFailed("unexpected binary COPY header")
    ext = struct.unpack(">i", buf[15:19])[0]
    off = 19 + ext
    dt = row_dtype(columns)
    body = len(buf) - off - 2
    if body % dt.itemsize != 0:
        raise CheckFailed(f"binary COPY rows are not of the fixed size {dt.itemsize} (NULLs or other dimensions?)")
    n = body // dt.itemsize
    rec = np.frombuffer(buf, dtype=dt, count=n, offset=off)
    for name, kind, dim in columns:
        if not np.all(rec[name + "_len"] == _field_len(kind, dim)):
            raise CheckFailed(f"column {name}: unexpected value length in binary COPY")
    return rec


def vec_text(v):
    return "[" + ",".join(repr(float(x)) for x in v) + "]"


def fmt_s(x):
    if x is None or x != x:
        return "–"
    if x >= 100:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    return f"{x:.3f}"


def fmt_int(x):
    if x is None or x != x:
        return "–"
    return f"{int(round(x)):,}"


def fmt_mb(kb):
    if kb is None:
        return "–"
    return f"{kb / 1024:,.0f} MB"
