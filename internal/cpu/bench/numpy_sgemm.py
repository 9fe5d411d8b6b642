#!/usr/bin/python3
"""Time lathe's Sgemm and OpenBLAS sgemm (through numpy) side by side.

Usage: numpy_sgemm.py LATHE_BENCH_BINARY [MIN_SECONDS [ROUNDS [REGEXP]]]

LATHE_BENCH_BINARY is the built ./internal/cpu/bench program. Its -list
output gives the shapes (name, transA, transB, m, n, k, tab separated).
For each round and shape, this runs the binary on that shape alone
(-only I) and then times numpy.matmul on it (float32, C overwritten,
transposes as views so OpenBLAS gets the transpose flags), so both sides
see the same machine load; it keeps the best GFLOP/s of each over the
rounds and prints both and the ratio lathe/OpenBLAS. It reports which
OpenBLAS core (kernel) ran. The environment of this script applies to
OpenBLAS only: lathe's binary gets OPENBLAS_* removed and GOMAXPROCS set.
"""
import ctypes
import os
import re
import subprocess
import sys
import time

import numpy as np


def openblas_info():
    """Return a description of the BLAS numpy uses and its core type."""
    parts = []
    try:
        from threadpoolctl import threadpool_info  # optional
        for lib in threadpool_info():
            if lib.get("internal_api") == "openblas":
                parts.append("%s %s arch=%s threads=%s" % (
                    lib.get("filepath"), lib.get("version"),
                    lib.get("architecture"), lib.get("num_threads")))
    except ImportError:
        pass
    if not parts:
        # Find the loaded OpenBLAS in this process and ask it directly.
        with open("/proc/self/maps") as maps:
            libs = sorted({l.split()[-1] for l in maps if "blas" in l.lower() and ".so" in l})
        for path in libs:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix in ("openblas_", "scipy_openblas_", "scipy_openblas64_"):
                fn = getattr(lib, prefix + "get_corename", None)
                if fn is None:
                    continue
                fn.restype = ctypes.c_char_p
                threads = getattr(lib, prefix + "get_num_threads", None)
                nt = threads() if threads else "?"
                parts.append("%s core=%s threads=%s" % (path, fn().decode(), nt))
                break
    return "; ".join(parts) or "unknown BLAS (no openblas_get_corename found)"


def operands(ta, tb, m, n, k, rng):
    a = rng.random((k, m) if ta else (m, k), dtype=np.float32) - 0.5
    b = rng.random((n, k) if tb else (k, n), dtype=np.float32) - 0.5
    return (a.T if ta else a), (b.T if tb else b), np.empty((m, n), dtype=np.float32)


def measure(ta, tb, m, n, k, min_seconds):
    rng = np.random.default_rng(1)
    a, b, c = operands(ta, tb, m, n, k, rng)
    np.matmul(a, b, out=c)  # warm up
    best = float("inf")
    start = time.perf_counter()
    reps = 0
    while reps < 3 or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2.0 * m * n * k / best / 1e9


def lathe_run(binary, args, threads, min_seconds):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENBLAS_")}
    env["GOMAXPROCS"] = str(threads)
    out = subprocess.run([binary, "-mintime", "%dms" % int(min_seconds * 1000)] + args,
                         env=env, check=True, capture_output=True, text=True).stdout
    rows, header = [], []
    for line in out.splitlines():
        if line.startswith("#"):
            header.append(line[1:].strip())
        elif line:
            name, ta, tb, m, n, k, g = line.split("\t")
            rows.append((name, ta == "true", tb == "true", int(m), int(n), int(k), float(g)))
    return rows, header


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: numpy_sgemm.py LATHE_BENCH_BINARY [MIN_SECONDS [ROUNDS [REGEXP]]]")
    binary = sys.argv[1]
    min_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    pattern = re.compile(sys.argv[4] if len(sys.argv) > 4 else "")
    threads = int(os.environ.get("OPENBLAS_NUM_THREADS", "2"))
    shapes, header = lathe_run(binary, ["-list"], threads, min_seconds)
    print("numpy %s; BLAS: %s" % (np.__version__, openblas_info()))
    print("OpenBLAS env: OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s OPENBLAS_NUM_THREADS=%s" % (
        os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        os.environ.get("OPENBLAS_L2_SIZE", "(unset)"),
        os.environ.get("OPENBLAS_NUM_THREADS", "(unset)")))
    for h in header:
        print(h)
    print("best of %d interleaved rounds, each at least %.2fs per shape and side" % (rounds, min_seconds))
    best_l, best_o = {}, {}
    for _ in range(rounds):
        for i, (name, ta, tb, m, n, k, _g) in enumerate(shapes):
            if not pattern.search(name):
                continue
            (row,), _ = lathe_run(binary, ["-only", str(i)], threads, min_seconds)
            best_l[i] = max(best_l.get(i, 0.0), row[6])
            best_o[i] = max(best_o.get(i, 0.0), measure(ta, tb, m, n, k, min_seconds))
    print("%-32s %6s %6s %6s %9s %9s %6s" % ("shape", "m", "n", "k", "lathe", "openblas", "ratio"))
    worst = {}
    for i, (name, ta, tb, m, n, k, _g) in enumerate(shapes):
        if i not in best_l:
            continue
        ratio = best_l[i] / best_o[i]
        group = name.split()[0]
        worst[group] = min(worst.get(group, ratio), ratio)
        print("%-32s %6d %6d %6d %9.1f %9.1f %6.2f" % (name, m, n, k, best_l[i], best_o[i], ratio))
    print("worst ratio per group (GFLOP/s lathe / OpenBLAS): " +
          ", ".join("%s %.2f" % kv for kv in worst.items()))


if __name__ == "__main__":
    main()
