#!/usr/bin/env bash
# fuse-latency.sh COMMAND [ARG...]: run COMMAND with the kernel's FUSE
# tracepoints on (fuse_request_send / fuse_request_end, in recent kernels:
# 6.18 has them) and print, per request type, how many the kernel sent to any FUSE
# daemon and how long they took from send to reply. Run it on the same
# workload against pfs and against bench/loopback to see which requests
# pfs answers slower, and by how much in all: the sums are time a
# single-threaded client (tar, sqlite3) waited. Needs root and tracefs.
#
#   bench/fuse-latency.sh tar xf src.tar -C /mnt/pfs
set -euo pipefail

if [ $# -eq 0 ]; then
	echo "usage: $0 COMMAND [ARG...]" >&2
	exit 2
fi
T=/sys/kernel/tracing
if [ ! -d "$T/events" ]; then
	mount -t tracefs nodev "$T" 2>/dev/null || true
fi
if [ ! -d "$T/events/fuse" ]; then
	echo "fuse-latency: no FUSE tracepoints in $T/events (needs root, tracefs and a kernel with the fuse_request_send/end tracepoints)" >&2
	exit 1
fi
out=$(mktemp)
bufsize=$(cat "$T/buffer_size_kb")
stop() {
	echo 0 >"$T/tracing_on"
	echo 0 >"$T/events/fuse/enable"
}
# Resizing empties the buffer, so the old size comes back only at exit,
# after the trace was read.
trap 'stop; echo "$bufsize" >"$T/buffer_size_kb"; rm -f "$out"' EXIT

echo 0 >"$T/tracing_on"
: >"$T/trace"
echo 131072 >"$T/buffer_size_kb" # ~1.5 million requests without overwriting
echo 1 >"$T/events/fuse/enable"
echo 1 >"$T/tracing_on"
rc=0
"$@" || rc=$?
stop
cat "$T/trace" >"$out"
: >"$T/trace"

# Pair each send with its end by (connection, request id). A line reads
#   tar-123 [001] ..... 12.345678: fuse_request_send: connection 52 req 8 opcode 3 (FUSE_GETATTR) len 56
awk '
/fuse_request_(send|end):/ {
	ts = ""
	for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { ts = substr($i, 1, length($i) - 1); break }
	conn = ""; req = ""; op = ""
	for (i = 1; i < NF; i++) {
		if ($i == "connection") conn = $(i + 1)
		if ($i == "req") req = $(i + 1)
		if ($i == "opcode") { op = $(i + 2); gsub(/[()]/, "", op) }
	}
	key = conn " " req
	if ($0 ~ /fuse_request_send:/) { start[key] = ts; kind[key] = op }
	else if (key in start) {
		o = kind[key]; n[o]++; sum[o] += ts - start[key]
		delete start[key]; delete kind[key]
	}
}
END {
	printf "%-22s %9s %9s %9s\n", "request", "count", "total s", "avg us"
	for (o in n) { printf "%-22s %9d %9.3f %9.1f\n", o, n[o], sum[o], sum[o] / n[o] * 1e6; all += n[o]; allsum += sum[o] }
	printf "%-22s %9d %9.3f\n", "all", all, allsum
}' "$out" | {
	read -r header
	echo "$header"
	sort -k3 -nr | awk '$1 == "all" { all = $0; next } { print } END { print all }'
}
if grep -q "LOST EVENTS" "$out"; then
	echo "fuse-latency: the trace buffer overflowed; counts are incomplete" >&2
fi
exit "$rc"
