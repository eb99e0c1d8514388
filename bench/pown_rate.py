#!/usr/bin/env python3
"""bench/pown_rate.py - the coin store's throughput target, measured: a
data directory of 64 x 16 coins made here, raidad (2 workers, default
worker_threads) started with fdatasync slowed by bench/slow_fdatasync.so
(2 ms, SLOW_FDATASYNC_US), and bench/pown_rate (64 connections) powning
for 5 s. Run from a build folder:  python3 ../bench/pown_rate.py
Environment: POWN_CONNECTIONS=64 POWN_SECONDS=5 POWN_WORKERS=2."""
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "tests", "integration"))
from raidatest import Daemon, workdir  # noqa: E402
from coinstest import make_data_dir, random_coins  # noqa: E402

conns = int(os.environ.get("POWN_CONNECTIONS", "64"))
secs = os.environ.get("POWN_SECONDS", "5")
work = workdir()
subprocess.run(["cc", "-O2", "-o", f"{work}/pown_rate", f"{here}/pown_rate.c", "-lz"], check=True)
subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", f"{work}/slow.so",
                f"{here}/slow_fdatasync.c", "-ldl"], check=True)
root = os.path.join(work, "coins")
coins = make_data_dir(root, random_coins([(1, i * 61) for i in range(conns * 16)]))
with open(f"{work}/coins.txt", "w") as f:
    for (den, sn), an in coins.items():
        f.write(f"{den} {sn} {an.hex()}\n")
os.environ["LD_PRELOAD"] = f"{work}/slow.so"
d = Daemon({"data_dir": root, "worker_processes": int(os.environ.get("POWN_WORKERS", "2"))},
           log_level="notice")
d.start()
del os.environ["LD_PRELOAD"]
try:
    subprocess.run([f"{work}/pown_rate", str(d.port), f"{work}/coins.txt", str(conns), secs],
                   check=True)
finally:
    d.stop()
