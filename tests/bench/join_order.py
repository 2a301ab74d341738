#!/usr/bin/env python3
"""Joins one at a time (connect to response head), and the positions of the slow ones: a stall
at the same join in every run points at the kernel (BENCHMARKS.md, "Joining").
Usage: join_order.py SSE_HUB_BINARY N [hub flags...]"""
import socket, time, sys, subprocess, os
bin_, n = sys.argv[1], int(sys.argv[2]); extra = sys.argv[3:]
s=socket.socket(); s.bind(("127.0.0.1",0)); port=s.getsockname()[1]; s.close()
hub = subprocess.Popen([bin_, "--bind", f"127.0.0.1:{port}", "--jwt-key", "bench-key-0123456789abcdef0123456789abcdef", "--allow-anonymous", "--data-dir", "none", "--tick-interval", "0", "--max-subscribers", "30000", "--max-subscribers-per-ip", "30000", "--workers", "2", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
for _ in range(100):
    try: socket.create_connection(("127.0.0.1", port)).close(); break
    except OSError: time.sleep(0.05)
time.sleep(0.3)
socks=[]; lat=[]
req=f"GET {os.environ.get('SUBPATH','/.well-known/mercure?topic=%2Fbench')} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode()
for i in range(n):
    t0=time.perf_counter()
    c=socket.socket(); c.bind((f"127.0.0.{1+i%16}",0)); c.connect(("127.0.0.1",port)); c.sendall(req)
    buf=b""
    while b"\r\n\r\n" not in buf: buf+=c.recv(4096)
    lat.append((time.perf_counter()-t0)*1000); socks.append(c)
hub.terminate(); hub.wait()
srt=sorted(lat); print("p50 %.3f p99 %.3f max %.3f" % (srt[n//2], srt[int(n*0.99)], srt[-1]))
slow=[(i, round(l,2)) for i,l in enumerate(lat) if l > max(2.0, srt[int(n*0.99)])]
print("slow joins (index, ms):", slow[:40])
