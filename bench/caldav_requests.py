#!/usr/bin/env python3
"""What one request of each kind a sync client can use to see whether a
calendar changed costs Radicale, per calendar (BENCHMARKS.md, "CalDAV").

Starts its own Radicale (storage on tmpfs), fills NCAL calendars with NEV
small events each, then times, over all calendars one after another on one
keep-alive connection (median of 3 passes): a full sync-collection REPORT,
a sync-collection from the token it gave (nothing changed), PROPFIND
Depth: 1 of getetag (a full ETag listing), and PROPFIND Depth: 0 of
CS:getctag, of DAV:sync-token and of DAV:resourcetype (the cost of any
request at all).

Usage: python3 bench/caldav_requests.py [NCAL] [NEV]   (default 16 170)
"""
import http.client, os, re, shutil, socket, statistics, subprocess, sys, tempfile, time

ncal = int(sys.argv[1]) if len(sys.argv) > 1 else 16
nev = int(sys.argv[2]) if len(sys.argv) > 2 else 170
sock = socket.socket(); sock.bind(("127.0.0.1", 0)); port = sock.getsockname()[1]; sock.close()
work = tempfile.mkdtemp(prefix="edusync-caldav-requests.", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
conf = os.path.join(work, "radicale.conf")
with open(conf, "w") as f:
    f.write(f"[server]\nhosts = 127.0.0.1:{port}\n[auth]\ntype = none\n[rights]\ntype = authenticated\n"
            f"[storage]\nfilesystem_folder = {work}/col\n[web]\ntype = none\n[logging]\nlevel = warning\n")
server = subprocess.Popen([sys.executable, "-m", "radicale", "--config", conf],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close(); break
        except OSError:
            time.sleep(0.1)
    c = http.client.HTTPConnection("127.0.0.1", port)
    AUTH = {"Authorization": "Basic ZWR1c3luYzp4"}

    def req(method, path, body=None, headers=None):
        h = dict(AUTH); h.update(headers or {})
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        return r.status, r.read()

    EV = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:bench\r\nBEGIN:VEVENT\r\nUID:{u}\r\nDTSTAMP:20260101T000000Z\r\n"
          "DTSTART:20261001T{h:02d}0000Z\r\nDTEND:20261001T{h:02d}3000Z\r\nSUMMARY:Lecture {u}\r\n"
          "LOCATION:Room 1\r\nX-EDUSYNC-MARKER:teaching/{u}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    for i in range(ncal):
        req("MKCOL", f"/p{i}/"); req("MKCALENDAR", f"/p{i}/timetable/")
        for j in range(nev):
            s, _ = req("PUT", f"/p{i}/timetable/e{j}.ics", EV.format(u=f"e{i}-{j}", h=j % 24),
                       {"Content-Type": "text/calendar", "If-None-Match": "*"})
            assert s in (201, 204), s
    XML = {"Content-Type": "application/xml"}
    SC = ('<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token>'
          '<d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>')
    PF = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:cs="http://calendarserver.org/ns/">'
          '<d:prop>{}</d:prop></d:propfind>')
    tokens = {}

    def each(method, body, depth=None, keep=False):
        def run():
            for i in range(ncal):
                h = dict(XML)
                if depth is not None:
                    h["Depth"] = depth
                s, d = req(method, f"/p{i}/timetable/", body(i), h)
                assert s == 207, (s, d[:200])
                if keep:
                    tokens[i] = re.search(rb"sync-token>([^<]+)<", d).group(1).decode()
        return run

    cases = [
        ("REPORT sync-collection, full", each("REPORT", lambda i: SC.format(""), keep=True)),
        ("REPORT sync-collection from its token (no change)", each("REPORT", lambda i: SC.format(tokens[i]))),
        ("PROPFIND Depth: 1 getetag (ETag listing)", each("PROPFIND", lambda i: PF.format("<d:getetag/>"), "1")),
        ("PROPFIND Depth: 0 CS:getctag", each("PROPFIND", lambda i: PF.format("<cs:getctag/>"), "0")),
        ("PROPFIND Depth: 0 DAV:sync-token", each("PROPFIND", lambda i: PF.format("<d:sync-token/>"), "0")),
        ("PROPFIND Depth: 0 DAV:resourcetype", each("PROPFIND", lambda i: PF.format("<d:resourcetype/>"), "0")),
    ]
    print(f"radicale, {ncal} calendars of {nev} events; ms per calendar, median of 3 passes")
    for name, run in cases:
        times = []
        for _ in range(3):
            t = time.perf_counter(); run(); times.append(time.perf_counter() - t)
        print(f"{name}: {statistics.median(times) * 1000 / ncal:.1f} ms")
finally:
    server.kill(); server.wait(); shutil.rmtree(work, ignore_errors=True)
