#!/usr/bin/python3
"""Time OpenBLAS sgemm through numpy on the shapes lathe's bench printed.

Usage: numpy_sgemm.py LATHE_RESULTS.tsv [MIN_SECONDS]

LATHE_RESULTS.tsv holds the lines of `go run ./internal/cpu/bench`:
name, transA, transB, m, n, k, gflops (tab separated; '#' lines are comments).
For each shape this times numpy.matmul (float32, C overwritten, transposes
as views so OpenBLAS gets the transpose flags) and prints both GFLOP/s and
the ratio lathe/OpenBLAS. It reports which OpenBLAS core/kernel ran.
"""
import ctypes
import os
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


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: numpy_sgemm.py LATHE_RESULTS.tsv [MIN_SECONDS]")
    min_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 0.3
    rows = []
    header = []
    with open(sys.argv[1]) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            if line.startswith("#"):
                header.append(line[1:].strip())
                continue
            name, ta, tb, m, n, k, g = line.split("\t")
            rows.append((name, ta == "true", tb == "true", int(m), int(n), int(k), float(g)))
    print("numpy %s; BLAS: %s" % (np.__version__, openblas_info()))
    print("OPENBLAS_CORETYPE=%s OPENBLAS_L2_SIZE=%s OPENBLAS_NUM_THREADS=%s" % (
        os.environ.get("OPENBLAS_CORETYPE", "(unset)"),
        os.environ.get("OPENBLAS_L2_SIZE", "(unset)"),
        os.environ.get("OPENBLAS_NUM_THREADS", "(unset)")))
    for h in header:
        print(h)
    print("%-32s %6s %6s %6s %9s %9s %6s" % ("shape", "m", "n", "k", "lathe", "openblas", "ratio"))
    worst = {}
    for name, ta, tb, m, n, k, lathe in rows:
        ref = measure(ta, tb, m, n, k, min_seconds)
        ratio = lathe / ref
        group = name.split()[0]
        worst[group] = min(worst.get(group, ratio), ratio)
        print("%-32s %6d %6d %6d %9.1f %9.1f %6.2f" % (name, m, n, k, lathe, ref, ratio))
    print("worst ratio per group: " + ", ".join("%s %.2f" % kv for kv in worst.items()))


if __name__ == "__main__":
    main()
