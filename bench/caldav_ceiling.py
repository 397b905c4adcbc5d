#!/usr/bin/env python3
"""Radicale's ceiling: PUTs per second with a minimal client.

N threads, each with one keep-alive connection (http.client), PUT distinct
small events with If-None-Match: * into one calendar per thread, nothing
else. Prints one line: `puts=<n> seconds=<s> puts_per_s=<r>`.

Usage: caldav_ceiling.py URL_BASE EVENTS THREADS
  URL_BASE like http://127.0.0.1:5232 (calendars are made under /ceiling-<k>/)
"""
import base64
import http.client
import sys
import threading
import time
import urllib.parse

base, total, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u = urllib.parse.urlsplit(base)
auth = "Basic " + base64.b64encode(b"edusync:x").decode()
run = str(int(time.time()))


def conn():
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def event(uid):
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//ceiling//EN\r\nBEGIN:VEVENT\r\n"
        f"UID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:20260105T090000Z\r\n"
        "DTEND:20260105T100000Z\r\nSUMMARY:CHEM2041 Organic Chemistry lecture\r\n"
        "LOCATION:Room 1.14\\, Chemistry Building\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )


def worker(k, n, out):
    c = conn()
    cal = f"/ceiling-{run}-{k}/cal/"
    for path, method in ((f"/ceiling-{run}-{k}/", "MKCOL"), (cal, "MKCALENDAR")):
        c.request(method, path, headers={"Authorization": auth})
        c.getresponse().read()
    t0 = time.perf_counter()
    for i in range(n):
        c.request(
            "PUT",
            f"{cal}e{i}.ics",
            body=event(f"{run}-{k}-{i}").encode(),
            headers={"Authorization": auth, "If-None-Match": "*", "Content-Type": "text/calendar"},
        )
        r = c.getresponse()
        r.read()
        assert r.status in (201, 204), r.status
    out[k] = (t0, time.perf_counter())


per = total // threads
out = [None] * threads
ts = [threading.Thread(target=worker, args=(k, per, out)) for k in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
start = min(o[0] for o in out)
end = max(o[1] for o in out)
n = per * threads
print(f"puts={n} seconds={end - start:.2f} puts_per_s={n / (end - start):.0f}")
