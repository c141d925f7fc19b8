# shellcheck shell=bash
# Shared by demo.sh and bench.sh. Source it from the repository root.

# shellcheck disable=SC2034 # GREEN is for the scripts that source this
if [ -t 1 ]; then BOLD=$'\e[1m' GREEN=$'\e[32m' RED=$'\e[31m' RESET=$'\e[0m'; else BOLD='' GREEN='' RED='' RESET=''; fi
step() { printf '\n%s==> %s%s\n' "$BOLD" "$*" "$RESET"; }
die() { printf '%serror:%s %s\n' "$RED" "$RESET" "$*" >&2; exit 1; }

# start_worker DIR [FLAG...]: start bin/bettertest worker on a free loopback port
# with a fresh token in DIR/token and its artifacts in DIR/data. Sets WORKER_URL and WORKER_PID; the worker's
# log goes to DIR/worker.log. Waits for the worker's "listening" line on its
# stderr pipe: an event, not a poll.
start_worker() {
	local dir=$1 line fd
	shift
	(umask 077 && head -c 32 /dev/urandom | base64 >"$dir/token")
	mkfifo "$dir/stderr"
	bin/bettertest worker --listen 127.0.0.1:0 --token-file "$dir/token" --data-dir "$dir/data" "$@" 2>"$dir/stderr" &
	WORKER_PID=$!
	exec {fd}<"$dir/stderr"
	WORKER_URL=
	while IFS= read -r line <&"$fd"; do
		printf '%s\n' "$line" >>"$dir/worker.log"
		case $line in *"msg=listening "*)
			WORKER_URL=http://$(sed -n 's/.* addr=\([^ ]*\).*/\1/p' <<<"$line")
			break
			;;
		esac
	done
	[ -n "$WORKER_URL" ] || die "the worker did not start: $(cat "$dir/worker.log")"
	cat <&"$fd" >>"$dir/worker.log" & # keep draining so the worker never blocks on its log
	exec {fd}<&-
}

# stop_worker: SIGTERM, then wait for a clean exit.
stop_worker() {
	kill -TERM "$WORKER_PID" 2>/dev/null || return 0
	wait "$WORKER_PID" || die "the worker exited with status $?"
}
