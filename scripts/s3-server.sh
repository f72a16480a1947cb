#!/usr/bin/env bash
# s3-server.sh: a local S3 server (versitygw, posix backend) for the tests of
# chunkstore/backend/s3.
#
#   eval "$(scripts/s3-server.sh start)"   # start it, export PFS_S3_*
#   go test ./chunkstore/backend/s3
#   scripts/s3-server.sh env               # print the exports again
#   scripts/s3-server.sh stop              # stop it, remove its data
#
# start installs versitygw into $(go env GOPATH)/bin (or GOBIN) if it is not
# found, listens on a free loopback port, and prints only the export line on
# stdout; progress goes to stderr. State (pid, log, data) lives in
# $PFS_S3_STATE, default ${TMPDIR:-/tmp}/pfs-s3-server. stop kills only the
# pid recorded there.
set -euo pipefail

readonly VERSITYGW_VERSION=v1.8.0
readonly STATE=${PFS_S3_STATE:-${TMPDIR:-/tmp}/pfs-s3-server}
readonly ACCESS=${PFS_S3_ACCESS_KEY:-pfsadmin}
readonly SECRET=${PFS_S3_SECRET_KEY:-pfsadminsecret}

log() { echo "s3-server: $*" >&2; }
die() { log "$@"; exit 1; }

# find_versitygw prints the path of versitygw, installing it if needed.
find_versitygw() {
	local bin gobin
	if bin=$(command -v versitygw); then
		echo "$bin"
		return
	fi
	command -v go >/dev/null || die "versitygw not found and no go to install it"
	gobin=$(go env GOBIN)
	[[ -n $gobin ]] || gobin="$(go env GOPATH | cut -d: -f1)/bin"
	if [[ ! -x $gobin/versitygw ]]; then
		log "installing versitygw $VERSITYGW_VERSION into $gobin"
		GOBIN=$gobin go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION" >&2
	fi
	[[ -x $gobin/versitygw ]] || die "versitygw not in $gobin after go install"
	echo "$gobin/versitygw"
}

# running succeeds if the recorded pid is a live versitygw.
running() {
	local pid
	[[ -f $STATE/pid ]] || return 1
	pid=$(<"$STATE/pid")
	[[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q versitygw
}

# port_free succeeds if nothing listens on 127.0.0.1:$1.
port_free() {
	! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

cmd_env() {
	[[ -f $STATE/env ]] || die "not started (no $STATE/env)"
	cat "$STATE/env"
}

cmd_start() {
	if running; then
		log "already running, pid $(<"$STATE/pid")"
		cmd_env
		return
	fi
	local bin port pid endpoint try i
	bin=$(find_versitygw)
	mkdir -p "$STATE"
	rm -rf "$STATE/data"
	mkdir -m 0700 "$STATE/data"
	for try in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		port_free "$port" || continue
		endpoint=127.0.0.1:$port
		nohup "$bin" --access "$ACCESS" --secret "$SECRET" --port "$endpoint" --quiet \
			posix "$STATE/data" >"$STATE/log" 2>&1 &
		pid=$!
		echo "$pid" >"$STATE/pid"
		for ((i = 0; i < 100; i++)); do # up to 20 s
			if curl -s -o /dev/null --max-time 1 "http://$endpoint/"; then
				echo "export PFS_S3_ENDPOINT=$endpoint PFS_S3_ACCESS_KEY=$ACCESS PFS_S3_SECRET_KEY=$SECRET" >"$STATE/env"
				log "versitygw pid $pid on $endpoint, data in $STATE/data"
				cmd_env
				return
			fi
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.2
		done
		log "attempt $try on port $port failed:"
		cat "$STATE/log" >&2
		kill "$pid" 2>/dev/null || true
		rm -f "$STATE/pid"
	done
	die "could not start versitygw"
}

cmd_stop() {
	if ! running; then
		log "not running"
		rm -f "$STATE/pid" "$STATE/env"
		return
	fi
	local pid i
	pid=$(<"$STATE/pid")
	kill "$pid"
	for ((i = 0; i < 50; i++)); do # up to 5 s
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -9 "$pid"
	fi
	rm -rf "$STATE/pid" "$STATE/env" "$STATE/data"
	log "stopped pid $pid"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
env) cmd_env ;;
*) die "usage: $0 start|stop|env" ;;
esac
