"""Benchmark harness of embedstack: features, fit, materialise, query-weighted refit, serving
and memory against plain SQL + pgvector and the seed workflow (pandas + numpy + scikit-learn),
a refit under a concurrent read/write load of 0.2.1 against 0.3.0, and learned projections
(section `projection`, issue 21: learning cost, materialise at dims => 256, WordSim quality; its
own databases, scales --proj-*, report --proj-results), in one process and one run, with
correctness checks on every comparison.

    make bench-projection [PROJ_ROWS=200000 PROJ_MAT_ROWS=20000]   # the projection section alone

    make bench [ENTITIES=200000 PAIRS=1000000 REPS=3]   # full run, rewrites a section of bench/RESULTS.md
    make bench-smoke                                     # tiny sizes, 1 repetition, a temp file

or directly (the venv of scripts/bench-venv.sh, the cluster of scripts/cluster.sh running):

    $ES_STATE/.venv/bin/python bench/harness/run.py --entities 2000 --pairs 10000 --reps 1 --out /tmp/r.md

Exits 1 when a correctness check fails (never on timings)."""

import argparse
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
import datagen  # noqa: E402
import features  # noqa: E402
import fit  # noqa: E402
import materialize  # noqa: E402
import memory  # noqa: E402
import profiling as perf_profile  # noqa: E402
import projection  # noqa: E402
import refit_load  # noqa: E402
import report  # noqa: E402
import serving  # noqa: E402
import serving_costs  # noqa: E402
from common import Ctx, log  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SECTIONS = ["features", "fit", "materialize", "serving", "memory", "refit_load", "serving_costs", "projection"]


def env_default(name):
    v = os.environ.get(name)
    if v:
        return v
    out = subprocess.run(["bash", "-c", f". '{ROOT}/scripts/env.sh' && echo \"${name}\""],
                         capture_output=True, text=True, check=True)
    return out.stdout.strip()


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--entities", type=int, default=200000)
    p.add_argument("--pairs", type=int, default=1000000)
    p.add_argument("--dims", default="384,768,256", help="model dimensions, comma-separated")
    p.add_argument("--reps", type=int, default=3, help="repetitions of every timed variant")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--db", default="es_bench_harness", help="scratch database (dropped and recreated)")
    p.add_argument("--host", default=None, help="socket dir (default $ES_PGRUN)")
    p.add_argument("--port", default=None, help="default $ES_PGPORT")
    p.add_argument("--user", default="postgres")
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--queries", type=int, default=200, help="queries for recall@10")
    p.add_argument("--exact-queries", type=int, default=10, help="queries checked against SQL exact search")
    p.add_argument("--memory-divisor", type=int, default=4, help="small size for the memory section = full / this")
    p.add_argument("--results", default=None, help="rewrite the harness section of this markdown file (bench/RESULTS.md)")
    p.add_argument("--out", default=None, help="write the report to this file")
    p.add_argument("--command", default=None, help="command line to print in the report")
    p.add_argument("--contention", default="", help="a note on other load during the run")
    p.add_argument("--profile", action="store_true", help="profile fit and the plain SQL fit with perf (extra, untimed runs)")
    p.add_argument("--load-rows", type=int, default=100000, help="refit under load: rows of the source table")
    p.add_argument("--cost-rows", type=int, default=20000,
                   help="serving costs (write cost of a served source, rollback): rows of the source table")
    p.add_argument("--load-pairs", type=int, default=None, help="refit under load: labelled pairs (default: --load-rows)")
    p.add_argument("--load-reps", type=int, default=1, help="refit under load: refits per version (interleaved)")
    p.add_argument("--load-writers", type=int, default=2, help="refit under load: writer threads")
    p.add_argument("--load-readers", type=int, default=2, help="refit under load: reader threads")
    p.add_argument("--load-warmup", type=float, default=10.0, help="refit under load: seconds of load before the refit")
    p.add_argument("--v021-library", default="auto",
                   help="refit under load: the library 0.2.1 runs on: auto (bench/harness/v021-library.sh's build), "
                        "installed, or a path")
    p.add_argument("--library", default="installed",
                   help="the embedstack library the 0.3.0 databases run on: installed, head (a release build of the "
                        "work tree's commit by bench/harness/build-library.sh), or a path; anything but installed is "
                        "reached through pg_proc.probin of the harness's databases, the install script stays the installed one")
    p.add_argument("--v021-build", action="store_true",
                   help="build the 0.2.1 library (a few minutes, once) when it is missing; else 0.2.1 is skipped")
    p.add_argument("--dump", default=None, help="pickle the results here (to re-render with --render-from)")
    p.add_argument("--render-from", default=None, help="only render a dumped run's report (--out / --results)")
    projection.add_args(p)
    a = p.parse_args(argv)
    a.dims = [int(x) for x in a.dims.split(",")]
    a.host = a.host or env_default("ES_PGRUN")
    a.port = a.port or env_default("ES_PGPORT")
    a.sections = [s for s in a.sections.split(",") if s]
    for s in a.sections:
        if s not in SECTIONS:
            p.error(f"unknown section {s}")
    if a.reps < 1:
        p.error("--reps must be >= 1")
    if a.load_reps < 1 or a.load_rows < 10:
        p.error("--load-reps must be >= 1 and --load-rows >= 10")
    return a


class LoadSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.samples = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            with open("/proc/loadavg") as f:
                self.samples.append(float(f.read().split()[0]))
            self.stop.wait(30)


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except Exception:
        return "?"


def library_mtime():
    so = os.path.join(sh("pg_config --pkglibdir") or "/usr/lib/postgresql/15/lib", "embedstack.so")
    return os.path.getmtime(so) if os.path.exists(so) else None


def resolve_library(args):
    """The library to benchmark (None: the installed one)."""
    if args.library == "installed":
        return None
    if args.library == "head":
        out = subprocess.run(["bash", os.path.join(ROOT, "bench", "harness", "build-library.sh"), "HEAD"],
                             stdout=subprocess.PIPE, text=True, check=True).stdout
        return out.strip().splitlines()[-1]
    if not os.path.exists(args.library):
        raise SystemExit(f"--library {args.library} does not exist")
    return os.path.abspath(args.library)


def machine(ctx):
    mem_kb = int(next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal:")))
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    simd = "/".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
    m = (f"{os.cpu_count()} cores ({cpu}; {simd or 'no AVX2'}), {mem_kb / 1024 / 1024:.1f} GiB, "
         f"{platform.system()} {platform.release()}, {sh('. /etc/os-release && echo $PRETTY_NAME')}")
    with ctx.connect("postgres") as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
        settings = dict(conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                                     "('shared_buffers', 'max_parallel_workers_per_gather', "
                                     "'max_parallel_maintenance_workers', 'max_wal_size')").fetchall())
    with ctx.connect() as conn:
        exts = dict(conn.execute("SELECT extname, extversion FROM pg_extension").fetchall())
    libdir = sh("pg_config --pkglibdir") or "/usr/lib/postgresql/15/lib"
    so = os.path.join(libdir, "embedstack.so")
    so_time = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(os.path.getmtime(so))) if os.path.exists(so) else "?"
    if common.is_debug_build(so):
        so_time += ", a DEBUG build"
    if ctx.library:
        so_time += (f"; benchmarked instead on {ctx.library}, a release build"
                    f"{' (DEBUG?)' if common.is_debug_build(ctx.library) else ''} reached through pg_proc.probin")
    head = sh("git rev-parse --short HEAD")
    dirty = sh("git status --porcelain --untracked-files=no")
    import numpy, pandas, sklearn, psycopg  # noqa: E401
    s = (f"PostgreSQL {pg} ({', '.join(f'{k} {v}' for k, v in sorted(settings.items()))}), "
         f"pgvector {exts.get('vector')}, embedstack {exts.get('embedstack')} (embedstack.so installed {so_time}), "
         f"git HEAD {head}{' with uncommitted changes in the work tree' if dirty else ''}; Python "
         f"{platform.python_version()}, numpy {numpy.__version__}, pandas {pandas.__version__}, "
         f"scikit-learn {sklearn.__version__}, psycopg {psycopg.__version__}")
    return m, s


def main(argv):
    args = parse_args(argv)
    if args.render_from:
        return render_only(args)
    ctx = Ctx(args)
    ctx.library = resolve_library(args)
    t_start = time.time()
    load = LoadSampler()
    load.start()
    meta = {"command": args.command or " ".join(shlex.quote(x) for x in [sys.executable] + sys.argv),
            "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_start)),
            "contention": args.contention}
    log(f"harness: {args.entities:,} entities x dims {args.dims}, {args.pairs:,} pairs, {args.reps} reps, "
        f"database {args.db}, sections {args.sections}"
        + (f"; refit under load: {args.load_rows:,} rows, {args.load_reps} refit(s) per version"
           if "refit_load" in args.sections else ""))

    with ctx.connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {args.db} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {args.db}")
    with ctx.connect() as conn:
        conn.execute("CREATE EXTENSION embedstack CASCADE")
        if ctx.library:
            log(f"{common.point_library(conn, ctx.library)} C functions of {args.db} point at {ctx.library}")
    with ctx.connect() as conn:
        conn.execute("SELECT embedstack.l2_normalize('[1]'::vector)")
        libs = common.loaded_libraries(conn.info.backend_pid)
        want = ctx.library or "/embedstack.so"
        if not (len(libs) == 1 and libs[0].endswith(want)):
            raise SystemExit(f"database {args.db} loads {libs}, not {want}")
    meta["machine"], meta["software"] = machine(ctx)
    if common.is_debug_build(ctx.library or os.path.join(sh("pg_config --pkglibdir"), "embedstack.so")):
        ctx.notes.append("The benchmarked embedstack library is a DEBUG build: its timings are not representative.")
        log("WARNING: the benchmarked embedstack library is a debug build (--library head builds a release one)")
    so_start = library_mtime()

    t = time.time()
    ctx.truth = datagen.Dataset(args.entities, args.pairs, args.dims, args.seed).generate()
    meta["gen_s"] = time.time() - t
    with ctx.connect() as conn:
        meta["load_s"], sizes = ctx.truth.load(conn)
        meta["items_size"] = sizes[0]
        conn.execute("SELECT embedstack.create_model_set('bench', 'items', 'id', %s::name[])",
                     ([f"m{m + 1}" for m in range(len(args.dims))],))

    modules = {"features": features, "fit": fit, "materialize": materialize, "serving": serving, "memory": memory,
               "refit_load": refit_load, "serving_costs": serving_costs, "projection": projection,
               "profile": perf_profile}
    ctx.meta = meta
    for name in SECTIONS + ["profile"]:
        if name == "profile" and not (args.profile and "fit" in ctx.results):
            continue
        if name != "profile" and name not in args.sections:
            continue
        if name == "serving" and "materialize" not in ctx.results:
            ctx.check(name, "section needs the materialize section", False, "skipped")
            continue
        t = time.time()
        log(f"== section {name}")
        try:
            modules[name].run(ctx)
        except Exception as e:  # a failed section is a failed check; the others still run
            traceback.print_exc()
            ctx.check(name, "section ran to the end", False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        log(f"== section {name} done in {time.time() - t:.1f} s")

    load.stop.set()
    t_end = time.time()
    meta["finished"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t_end))
    so_end = library_mtime()
    if so_end != so_start:
        # Backends started after the reinstall load the new library; the scratch databases keep
        # the SQL of the install script they were created with.
        note = (f"The installed embedstack.so was replaced during this run (now dated "
                f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(so_end)) if so_end else 'gone'}): "
                + ("this run's databases used --library's build throughout, so it did not affect them."
                   if ctx.library else "sections that ran after that used the new library."))
        ctx.notes.append(note)
        log(note)
    meta["wall"] = f"{(t_end - t_start) / 60:.1f} min"
    meta["load_mean"] = sum(load.samples) / max(1, len(load.samples))
    meta["load_max"] = max(load.samples or [0])
    if args.dump:
        dump(ctx, meta, args.dump)
    text = report.render(ctx, meta)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
        log(f"report written to {args.out}")
    if args.results:
        report.write_section(args.results, text)
        log(f"section rewritten in {args.results}")
    if not args.out and not args.results:
        print(text)
    gl, _ = report.goals(ctx)
    for gname, val, target, met in gl:
        log(f"goal {'met    ' if met else 'NOT met'} {gname}: {'–' if val is None else f'{val:.3f}'} (target {target})")
    failed = ctx.failed
    print(f"harness: {len(ctx.checks) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


class _Truth:
    FIELDS = ("n", "n_pairs", "dims", "seed", "true_w", "true_b0", "noise_sd")


def dump(ctx, meta, path):
    import pickle
    t = _Truth()
    for f in _Truth.FIELDS:
        setattr(t, f, getattr(ctx.truth, f))
    with open(path, "wb") as f:
        pickle.dump({"args": ctx.args, "results": ctx.results, "checks": ctx.checks, "notes": ctx.notes,
                     "truth": t, "meta": meta}, f)
    log(f"results dumped to {path}")


def render_only(args):
    import pickle
    with open(args.render_from, "rb") as f:
        saved = pickle.load(f)
    ctx = Ctx(saved["args"])
    ctx.results, ctx.checks, ctx.notes, ctx.truth = saved["results"], saved["checks"], saved["notes"], saved["truth"]
    meta = saved["meta"]
    if args.contention:
        meta["contention"] = args.contention
    text = report.render(ctx, meta)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    if args.results:
        report.write_section(args.results, text)
    if not args.out and not args.results:
        print(text)
    return 1 if ctx.failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
