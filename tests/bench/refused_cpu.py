#!/usr/bin/env python3
"""Hub CPU (its threads' schedstat) for 200 refused QUERY subscriptions of heavy templates.
Usage: refused_cpu.py SSE_HUB_BINARY count|peraddr [hub flags...] (BENCHMARKS.md, "Joining")"""
import socket, time, sys, subprocess, os, glob, http.client, urllib.parse
bin_, mode = sys.argv[1], sys.argv[2]; extra = sys.argv[3:]
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
hub = subprocess.Popen([bin_, "--bind", f"127.0.0.1:{port}", "--jwt-key", "bench-key-0123456789abcdef0123456789abcdef", "--allow-anonymous", "--data-dir", "none", "--tick-interval", "0", "--max-subscribers-per-ip", "1", "--workers", "2", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.05)
def cpu():
    t=0
    for f in glob.glob(f"/proc/{hub.pid}/task/*/schedstat"):
        t+=int(open(f).read().split()[0])
    return t
def wide(tag): return "/w%d/{%s}" % (tag, ",".join("v%d*" % i for i in range(32)))
if mode == "count":   # 65 heavy templates: over --max-topics 64
    body = urllib.parse.urlencode([("topic", wide(i)) for i in range(65)])
else:                 # per-address limit: one held subscriber, then 28 heavy templates (within budget)
    hold = socket.create_connection(("127.0.0.1", port)); hold.sendall(f"GET /.well-known/mercure?topic=%2Fx HTTP/1.1\r\nHost: x\r\n\r\n".encode()); hold.recv(100)
    body = urllib.parse.urlencode([("topic", wide(i)) for i in range(28)])
conn = http.client.HTTPConnection("127.0.0.1", port)
statuses = {}
time.sleep(0.3)
c0 = cpu()
for i in range(200):
    conn.request("QUERY", "/.well-known/mercure", body=body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse(); r.read(); statuses[r.status] = statuses.get(r.status, 0) + 1
    if r.getheader("Connection", "").lower() == "close": conn.close(); conn = http.client.HTTPConnection("127.0.0.1", port)
c1 = cpu()
hub.terminate(); hub.wait()
print(f"{mode}: statuses {statuses}, hub CPU {(c1-c0)/1e6:.1f} ms for 200 = {(c1-c0)/200/1e3:.0f} us each")
