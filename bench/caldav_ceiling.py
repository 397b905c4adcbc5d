#!/usr/bin/env python3
"""Radicale's ceiling: PUTs per second with a minimal client, same events.

Pushes every event of a vdir (one directory per calendar, one .ics per
event: what edusync's vdir target writes) into a fresh Radicale, so the
calendars and their sizes are exactly those of the comparison. THREADS
threads, each with one keep-alive connection (http.client), take calendars
from a queue: MKCALENDAR, then PUT each event with If-None-Match: * and
nothing else (no listing, no retries, no state). Prints one line:
`threads=<t> puts=<n> seconds=<s> puts_per_s=<r>`.

Usage: caldav_ceiling.py URL_BASE VDIR THREADS
  URL_BASE like http://127.0.0.1:5232 (calendars are made under /ceiling/)
"""
import base64
import http.client
import os
import queue
import sys
import threading
import time
import urllib.parse

base, vdir, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = urllib.parse.urlsplit(base)
auth = "Basic " + base64.b64encode(b"ceiling:x").decode()

# Read everything before the clock starts: the client costs nothing but HTTP.
cals = []
for name in sorted(os.listdir(vdir)):
    d = os.path.join(vdir, name)
    if not os.path.isdir(d):
        continue
    items = []
    for f in sorted(os.listdir(d)):
        if f.endswith(".ics"):
            with open(os.path.join(d, f), "rb") as fh:
                items.append((f, fh.read()))
    cals.append((urllib.parse.quote(name, safe="@."), items))
# Biggest calendars first, so no thread is left with a long tail alone.
cals.sort(key=lambda c: -len(c[1]))
work = queue.Queue()
for c in cals:
    work.put(c)


def request(c, method, path, body=None, headers=None):
    h = {"Authorization": auth}
    h.update(headers or {})
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    r.read()
    return r.status


def worker(out, k):
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
    n = 0
    while True:
        try:
            name, items = work.get_nowait()
        except queue.Empty:
            break
        cal = f"/ceiling/{name}/"
        s = request(c, "MKCALENDAR", cal)
        assert s in (201, 200), (cal, s)
        for f, body in items:
            s = request(c, "PUT", cal + urllib.parse.quote(f),
                        body, {"If-None-Match": "*", "Content-Type": "text/calendar"})
            assert s in (201, 204), (cal, f, s)
            n += 1
    out[k] = n


c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
assert request(c, "MKCOL", "/ceiling/") in (201, 200, 405)
c.close()
out = [0] * threads
ts = [threading.Thread(target=worker, args=(out, k)) for k in range(threads)]
t0 = time.perf_counter()
for t in ts:
    t.start()
for t in ts:
    t.join()
secs = time.perf_counter() - t0
n = sum(out)
print(f"threads={threads} puts={n} seconds={secs:.2f} puts_per_s={n / secs:.1f}")
