#!/usr/bin/env python3
"""Whether strangers scraping /metrics can stall the manager (issue 17, item 2): opens N listening
TCP sockets (in holder processes, 19,000 each), runs 4 scrapers as nobody in a loop, then times
the replacement of a killed worker and `lab status`. Usage, as root:
metrics_stall.py EXAMPLES_DIR [N]."""
import subprocess, sys, time, socket, re, threading, os, signal, resource
bindir = sys.argv[1]
N = int(sys.argv[2]) if len(sys.argv) > 2 else 120000
holders = []
PER = 19000
for h in range((N + PER - 1) // PER):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        held = []
        for i in range(h * PER, min(N, (h + 1) * PER)):
            s = socket.socket(); s.bind((f"127.{1 + i // 40000}.{(i // 200) % 200}.{1 + i % 200}", 0)); s.listen(1); held.append(s)
        os.write(w, b"k"); os.close(w)
        time.sleep(100000); os._exit(0)
    os.close(w); os.read(r, 1); os.close(r)
    holders.append(pid)
lines_in_tcp = sum(1 for _ in open("/proc/net/tcp"))
t = time.monotonic(); open("/proc/net/tcp").read(); read_s = time.monotonic() - t
pidf = "/tmp/fig/lab.pid"
p = subprocess.Popen([f"{bindir}/lab", "--foreground", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--workers", "2", "--pid-file", pidf], stderr=subprocess.PIPE, text=True, pass_fds=())
lines = []
threading.Thread(target=lambda: [lines.append(l) for l in p.stderr], daemon=True).start()
mport = None
while mport is None:
    for l in lines:
        m = re.search(r"GET /metrics answered here addr=127.0.0.1:(\d+)", l)
        if m: mport = int(m.group(1))
    time.sleep(0.05)
time.sleep(1)
def kids():
    out = subprocess.run(["ps", "--ppid", str(p.pid), "-o", "pid="], capture_output=True, text=True).stdout.split()
    return [int(x) for x in out]
import encodings.idna
def scraper():
    os.setgid(65534); os.setuid(65534)
    while True:
        try:
            c = socket.socket(); c.connect(("127.0.0.1", mport)); c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n"); c.recv(100); c.close()
        except Exception: pass
scrapers = []
for _ in range(4):
    pid = os.fork()
    if pid == 0:
        scraper(); os._exit(0)
    scrapers.append(pid)
time.sleep(2)
results = []
for round in range(3):
    before = kids()
    victim = before[0]
    t0 = time.monotonic(); os.kill(victim, signal.SIGKILL)
    while True:
        k = kids()
        if len(k) >= 2 and victim not in k: break
        time.sleep(0.002)
    respawn = time.monotonic() - t0
    t0 = time.monotonic(); st = subprocess.run([f"{bindir}/lab", "status", "--pid-file", pidf], capture_output=True, text=True); status_s = time.monotonic() - t0
    results.append((respawn, status_s, st.returncode))
    time.sleep(1)
for pid in scrapers + holders: os.kill(pid, signal.SIGKILL)
p.send_signal(signal.SIGTERM); p.wait(10)
print(f"{N} listening TCP sockets ({lines_in_tcp} lines of /proc/net/tcp, one read {read_s:.2f} s), 4 scrapers as nobody:")
for r, s, rc in results:
    print(f"  kill -9 of a worker -> replaced after {r*1000:.0f} ms; `lab status` took {s:.2f} s (exit {rc})")
