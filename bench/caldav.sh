#!/usr/bin/env bash
# CalDAV benchmark of BENCHMARKS.md: edusync's initial push and no-change
# cycle against `vdirsyncer sync` of the same events, side by side, each
# into its own fresh Radicale (storage on tmpfs), then Radicale's ceiling
# with a minimal concurrent client (bench/caldav_ceiling.py).
#
# Usage: bench/caldav.sh [STUDENTS] [RUNS]   (needs: python3 -m pip install radicale vdirsyncer;
#                                             cargo build --release -p edusync)
set -euo pipefail
STUDENTS=${1:-20}
RUNS=${2:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${EDUSYNC_BIN:-$ROOT/target/release/edusync}
W=$(mktemp -d /dev/shm/edusync-caldav-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
radicale() { # radicale NAME -> starts a fresh server, prints its port
    local name=$1 port; port=$(free_port)
    mkdir -p "$W/$name"
    printf '[server]\nhosts = 127.0.0.1:%s\n[auth]\ntype = none\n[rights]\ntype = authenticated\n[storage]\nfilesystem_folder = %s\n[web]\ntype = none\n[logging]\nlevel = warning\n' \
        "$port" "$W/$name/col" > "$W/$name/radicale.conf"
    python3 -m radicale --config "$W/$name/radicale.conf" > "$W/$name/log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break; sleep 0.1; done
    echo "$port"
}
secs() { python3 -c "import time; print(time.perf_counter())"; }
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float,sys.argv[1:])):.2f}')" "$@"; }

cd "$W"
"$BIN" generate --out tt.db --students "$STUDENTS" --seed 1 | tail -1
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
EVENTS=$(find vdir -name '*.ics' | wc -l); CALS=$(ls vdir | wc -l)
echo "events: $EVENTS in $CALS calendars"

declare -a E_INIT E_NOOP V_INIT V_NOOP
for run in $(seq "$RUNS"); do
    # edusync
    P=$(radicale "e$run")
    printf 'state = "sqlite://./e%s.db"\n%s\n[[profiles.targets]]\nkind = "caldav"\ncalendar_url = "http://127.0.0.1:%s/{email}/timetable/"\nusername = "edusync"\npassword_env = "BENCH_PW"\n' "$run" "$common" "$P" > "e$run.toml"
    t0=$(secs); BENCH_PW=x "$BIN" sync --config "e$run.toml" --format json > "e$run.json"; t1=$(secs)
    BENCH_PW=x "$BIN" sync --config "e$run.toml" --format json > "e$run-noop.json"; t2=$(secs)
    E_INIT+=("$(python3 -c "print($t1-$t0)")"); E_NOOP+=("$(python3 -c "print($t2-$t1)")")
    grep -q '"failed_ops":0' "e$run.json" || { echo "edusync run failed: $(cat "e$run.json")"; exit 1; }
    # vdirsyncer: one pair per person, one-way in effect ("a wins"), same events.
    P=$(radicale "v$run")
    mkdir -p "v$run/status"
    {
        printf '[general]\nstatus_path = "%s/v%s/status/"\n' "$W" "$run"
        printf '[pair tt]\na = "local"\nb = "dav"\ncollections = ["from a"]\nconflict_resolution = "a wins"\n'
        printf '[storage local]\ntype = "filesystem"\npath = "%s/vdir/"\nfileext = ".ics"\n' "$W"
        printf '[storage dav]\ntype = "caldav"\nurl = "http://127.0.0.1:%s/"\nusername = "bench"\npassword = "x"\n' "$P"
    } > "v$run/config"
    export VDIRSYNCER_CONFIG="$W/v$run/config"
    t0=$(secs); yes | vdirsyncer -v WARNING discover > /dev/null; vdirsyncer -v WARNING sync; t1=$(secs)
    vdirsyncer -v WARNING sync; t2=$(secs)
    V_INIT+=("$(python3 -c "print($t1-$t0)")"); V_NOOP+=("$(python3 -c "print($t2-$t1)")")
    echo "run $run: edusync initial ${E_INIT[-1]} s, no-change ${E_NOOP[-1]} s; vdirsyncer initial ${V_INIT[-1]} s, no-change ${V_NOOP[-1]} s"
done
ei=$(median "${E_INIT[@]}"); en=$(median "${E_NOOP[@]}"); vi=$(median "${V_INIT[@]}"); vn=$(median "${V_NOOP[@]}")
echo "median initial push: edusync $ei s ($(python3 -c "print(f'{$EVENTS/$ei:.0f}')") events/s), vdirsyncer $vi s ($(python3 -c "print(f'{$EVENTS/$vi:.0f}')") events/s), ratio $(python3 -c "print(f'{$vi/$ei:.2f}')")x"
echo "median no-change cycle: edusync $en s, vdirsyncer $vn s, ratio $(python3 -c "print(f'{$vn/$en:.2f}')")x"
P=$(radicale ceiling)
for t in 1 4 8; do echo "radicale ceiling, $t threads x 150 PUTs: $(python3 "$ROOT/bench/caldav_ceiling.py" "http://127.0.0.1:$P" $((150 * t)) "$t")"; done
