#!/usr/bin/env bash
# CalDAV benchmark of BENCHMARKS.md: edusync's initial push and no-change
# cycle against `vdirsyncer sync` of the same events, side by side in one
# run, then Radicale's ceiling for those same events with a minimal client
# (bench/caldav_ceiling.py). Each run, each client gets a fresh Radicale
# (same version, same config, storage in the same tmpfs directory), so
# neither pays for the other's calendars.
#
# Usage: bench/caldav.sh [STUDENTS] [RUNS]
#   needs: python3 -m pip install radicale vdirsyncer; cargo build --release -p edusync
#   SERVER=xandikos (default radicale): the same two clients against Xandikos
#   (pip xandikos, git-backed storage, --autocreate); no ceiling is measured
#   there and the events stored are counted from each client's own report.
#   CEILING_THREADS="8" (default; e.g. "4 8 16"): thread counts tried for the
#   ceiling, which is the best of them. Each costs a full push per run;
#   CEILING_THREADS=none skips the ceiling.
set -euo pipefail
STUDENTS=${1:-10}
RUNS=${2:-3}
SERVER=${SERVER:-radicale}
CEILING_THREADS=${CEILING_THREADS:-8}
[ "$SERVER" = radicale ] && [ "$CEILING_THREADS" != none ] || CEILING_THREADS=""
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EDUSYNC_BIN:-$ROOT/target/release/edusync}
W=$(mktemp -d /dev/shm/edusync-caldav-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# start_radicale NAME: a fresh server with storage in $W/NAME; sets PORT and RPID.
start_radicale() {
    local name=$1
    PORT=$(free_port)
    mkdir -p "$W/$name"
    printf '[server]\nhosts = 127.0.0.1:%s\n[auth]\ntype = none\n[rights]\ntype = authenticated\n[storage]\nfilesystem_folder = %s\n[web]\ntype = none\n[logging]\nlevel = warning\n' \
        "$PORT" "$W/$name/col" > "$W/$name/radicale.conf"
    python3 -m radicale --config "$W/$name/radicale.conf" > "$W/$name/log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && return; sleep 0.1; done
    echo "radicale $name did not start: $(cat "$W/$name/log")" >&2; exit 1
}
# start_xandikos NAME: the same for Xandikos.
start_xandikos() {
    local name=$1
    PORT=$(free_port)
    mkdir -p "$W/$name"
    python3 -m xandikos.web --autocreate --no-detect-systemd -l 127.0.0.1 -p "$PORT" -d "$W/$name/col" > "$W/$name/log" 2>&1 &
    RPID=$!
    PIDS+=("$RPID")
    for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT),0.2)" 2>/dev/null && return; sleep 0.1; done
    echo "xandikos $name did not start: $(cat "$W/$name/log")" >&2; exit 1
}
start_server() { if [ "$SERVER" = radicale ]; then start_radicale "$1"; else start_xandikos "$1"; fi; }
stop_radicale() { kill "$RPID" 2>/dev/null || true; wait "$RPID" 2>/dev/null || true; }
# stored NAME: events stored by that server (its .ics files, not its cache)
stored() {
    if [ "$SERVER" = radicale ]; then find "$W/$1/col" -name '*.ics' -not -path '*/.Radicale.cache/*' | wc -l
    else echo "$EVENTS"; fi   # Xandikos keeps events in git objects; trust the clients' reports
}
now() { echo "$EPOCHREALTIME"; }
sub() { python3 -c "print(f'{$1 - $2:.3f}')"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1:])):.3f}')" "$@"; }

cd "$W"
echo "edusync: $("$BIN" --version); $SERVER $(python3 -c "import $SERVER as m; print(getattr(m, 'VERSION', getattr(m, '__version__', '?')))"); $(vdirsyncer --version 2>&1 | head -1)"
"$BIN" generate --out tt.db --students "$STUDENTS" --seed 1 2>/dev/null | tail -1
common='[[profiles]]
name = "teaching"
timezone = "Europe/London"
[profiles.source]
url = "sqlite://./tt.db"
[profiles.window]
past_days = 3650
future_days = 3650
[profiles.guard]
max_delete_percent = 100'
# The same events as a vdir, for vdirsyncer (written by edusync's vdir target).
printf 'state = "sqlite://./vdir-state.db"\n%s\n[[profiles.targets]]\nkind = "vdir"\npath = "./vdir"\n' "$common" > vdir.toml
"$BIN" sync --config vdir.toml --format json > /dev/null
EVENTS=$(find vdir -name '*.ics' | wc -l); CALS=$(find vdir -mindepth 1 -maxdepth 1 -type d | wc -l)
echo "events: $EVENTS in $CALS calendars"

E_INIT=(); E_NOOP=(); V_INIT=(); V_NOOP=(); CEIL=()
for run in $(seq "$RUNS"); do
    # edusync: initial push into an empty server, then a no-change cycle.
    start_server "e$run"
    printf 'state = "sqlite://./e%s.db"\n%s\n[[profiles.targets]]\nkind = "caldav"\ncalendar_url = "http://127.0.0.1:%s/{email}/timetable/"\nusername = "edusync"\npassword_env = "BENCH_PW"\n' "$run" "$common" "$PORT" > "e$run.toml"
    t0=$(now); BENCH_PW=x "$BIN" sync --config "e$run.toml" --format json > "e$run.json"; t1=$(now)
    BENCH_PW=x "$BIN" sync --config "e$run.toml" --format json > "e$run-noop.json"; t2=$(now)
    grep -q '"failed_ops":0' "e$run.json" || { echo "edusync run failed: $(cat "e$run.json")"; exit 1; }
    grep -q '"create":0,"update":0,"delete":0,' "e$run-noop.json" || { echo "edusync no-change cycle did something: $(cat "e$run-noop.json")"; exit 1; }
    [ "$(stored "e$run")" -eq "$EVENTS" ] || { echo "edusync stored $(stored "e$run") of $EVENTS events"; exit 1; }
    E_INIT+=("$(sub "$t1" "$t0")"); E_NOOP+=("$(sub "$t2" "$t1")")
    stop_radicale

    # vdirsyncer: one pair, one collection per person ("from a"), one-way in
    # effect ("a wins", nothing changes on b), same events.
    start_server "v$run"
    mkdir -p "v$run/status"
    {
        printf '[general]\nstatus_path = "%s/v%s/status/"\n' "$W" "$run"
        printf '[pair tt]\na = "local"\nb = "dav"\ncollections = ["from a"]\nconflict_resolution = "a wins"\n'
        printf '[storage local]\ntype = "filesystem"\npath = "%s/vdir/"\nfileext = ".ics"\n' "$W"
        printf '[storage dav]\ntype = "caldav"\nurl = "http://127.0.0.1:%s/"\nusername = "bench"\npassword = "x"\n' "$PORT"
    } > "v$run/config"
    export VDIRSYNCER_CONFIG="$W/v$run/config"
    # The initial push includes `discover` (it makes the calendars, as
    # edusync's first cycle does); it asks before each, hence `yes`.
    t0=$(now); { yes || true; } | vdirsyncer -v WARNING discover > "v$run/discover.log" 2>&1; vdirsyncer -v WARNING sync; t1=$(now)
    vdirsyncer -v WARNING sync; t2=$(now)
    [ "$(stored "v$run")" -eq "$EVENTS" ] || { echo "vdirsyncer stored $(stored "v$run") of $EVENTS events"; exit 1; }
    V_INIT+=("$(sub "$t1" "$t0")"); V_NOOP+=("$(sub "$t2" "$t1")")
    stop_radicale

    # Radicale's ceiling for the same events, best over CEILING_THREADS.
    best=0
    for t in $CEILING_THREADS; do
        start_radicale "c$run-$t"
        line=$(python3 "$ROOT/bench/caldav_ceiling.py" "http://127.0.0.1:$PORT" "$W/vdir" "$t")
        echo "  ceiling: $line"
        [ "$(stored "c$run-$t")" -eq "$EVENTS" ] || { echo "ceiling stored $(stored "c$run-$t") of $EVENTS events"; exit 1; }
        stop_radicale; rm -rf "$W/c$run-$t"
        r=${line##*puts_per_s=}
        best=$(python3 -c "print(max($best, $r))")
    done
    [ -z "$CEILING_THREADS" ] || CEIL+=("$best")
    rm -rf "$W/e$run" "$W/v$run/col"
    echo "run $run: edusync initial ${E_INIT[-1]} s, no-change ${E_NOOP[-1]} s; vdirsyncer initial ${V_INIT[-1]} s, no-change ${V_NOOP[-1]} s; ceiling $best PUTs/s"
done
ei=$(median "${E_INIT[@]}"); en=$(median "${E_NOOP[@]}"); vi=$(median "${V_INIT[@]}"); vn=$(median "${V_NOOP[@]}")
if [ -n "$CEILING_THREADS" ]; then cl=$(median "${CEIL[@]}"); else cl=0; fi
echo "== $STUDENTS students, $EVENTS events in $CALS calendars, medians of $RUNS runs"
if [ -n "$CEILING_THREADS" ]; then
    echo "ceiling (best of threads $CEILING_THREADS): $cl PUTs/s"
    echo "initial push: edusync $ei s ($(python3 -c "print(f'{$EVENTS/$ei:.1f}')") events/s, $(python3 -c "print(f'{100*$EVENTS/$ei/$cl:.0f}')")% of ceiling), vdirsyncer $vi s ($(python3 -c "print(f'{$EVENTS/$vi:.1f}')") events/s, $(python3 -c "print(f'{100*$EVENTS/$vi/$cl:.0f}')")% of ceiling); edusync/vdirsyncer $(python3 -c "print(f'{$vi/$ei:.2f}')")x"
else
    echo "initial push: edusync $ei s ($(python3 -c "print(f'{$EVENTS/$ei:.1f}')") events/s), vdirsyncer $vi s ($(python3 -c "print(f'{$EVENTS/$vi:.1f}')") events/s); edusync/vdirsyncer $(python3 -c "print(f'{$vi/$ei:.2f}')")x"
fi
echo "no-change cycle: edusync $en s, vdirsyncer $vn s; vdirsyncer/edusync $(python3 -c "print(f'{$vn/$en:.1f}')")x"
