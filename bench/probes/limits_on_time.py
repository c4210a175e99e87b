#!/usr/bin/env python3
"""How soon a limit acts once crossed (issue 17, item 1): request_timeout with 1, 2 and 4 classic
workers, and max_rss with heartbeat timeouts on and off. Usage: limits_on_time.py EXAMPLES_DIR
(target/release/examples, or an older build's, to compare)."""
import subprocess, sys, time, socket, re, threading, os, signal
bindir = sys.argv[1]
def start(name, args):
    p = subprocess.Popen([f"{bindir}/{name}", "--foreground", "--listen", "127.0.0.1:0"] + args, stderr=subprocess.PIPE, text=True)
    lines = []
    def rd():
        for l in p.stderr: lines.append((time.monotonic(), l))
    threading.Thread(target=rd, daemon=True).start()
    port = None
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        for _, l in lines:
            m = re.search(r"listening addr=127.0.0.1:(\d+)", l)
            if m: port = int(m.group(1))
        if port and any("pool ready" in l for _, l in lines): break
        time.sleep(0.05)
    return p, lines, port
def wait_line(lines, text, timeout):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for t, l in list(lines):
            if text in l: return t, l
        time.sleep(0.02)
    return None, None
def stop(p):
    os.killpg(os.getpgid(p.pid), signal.SIGKILL) if False else p.send_signal(signal.SIGTERM); p.wait(10)
# classic deadline
for w in ["1", "2", "4"]:
    p, lines, port = start("lab_classic", ["--workers", w, "--request-timeout", "1s", "--heartbeat-timeout", "10s", "--graceful-timeout", "1s"])
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"sleep 20000\n")
    t, l = wait_line(lines, "request past request_timeout", 25)
    age = re.search(r"request_age=(\S+)", l).group(1) if l else "never (25 s)"
    print(f"lab_classic --workers {w} --request-timeout 1s --heartbeat-timeout 10s, 'sleep 20000': killed at request_age={age}")
    stop(p)
# max_rss
for hb in ["30s", "off"]:
    p, lines, port = start("lab", ["--workers", "1", "--max-spare", "1", "--max-children", "2", "--max-rss", "64M", "--heartbeat-timeout", hb])
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"GET /alloc/100 HTTP/1.1\r\nHost: x\r\n\r\n"); s.recv(1000)
    t0 = time.monotonic()
    t, l = wait_line(lines, "worker over max_rss", 40)
    print(f"lab --workers 1 --max-spare 1 --max-children 2 --max-rss 64M --heartbeat-timeout {hb}, GET /alloc/100: retired after " + (f"{t - t0:.1f} s" if t else "never (40 s)"))
    stop(p)
