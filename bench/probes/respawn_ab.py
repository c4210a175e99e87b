#!/usr/bin/env python3
"""Respawn after kill -9 of two builds, interleaved (200 kills each): the new child seen in /proc.
Usage: respawn_ab.py HELLO_A HELLO_B (run it both ways round)."""
import subprocess, time, os, signal, sys, re, threading, statistics
def start(binary):
    p = subprocess.Popen([binary, "--foreground", "--listen", "127.0.0.1:0", "--workers", "2"], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return p
def kids(pid):
    try:
        return set(int(x) for x in open(f"/proc/{pid}/task/{pid}/children").read().split())
    except Exception:
        return set()
def once(p):
    before = kids(p.pid)
    victim = min(before)
    t0 = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    while True:
        k = kids(p.pid)
        new = k - before
        if new:
            return (time.perf_counter() - t0) * 1000
        time.sleep(0.0001)
bins = sys.argv[1:]
procs = [start(b) for b in bins]
res = {b: [] for b in bins}
for i in range(200):
    for b, p in zip(bins, procs):
        res[b].append(once(p))
        time.sleep(0.02)
for p in procs:
    p.send_signal(signal.SIGTERM); p.wait()
for b in bins:
    r = sorted(res[b])
    print(f"{b}: median {statistics.median(r):.3f} ms  p90 {r[int(len(r)*0.9)]:.3f} ms")
