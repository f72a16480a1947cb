#!/usr/bin/env bash
# make bench: pfs against the disk, go-fuse's loopback and gocryptfs, on one
# disk in one run (bench/README.md). Installs fio, gocryptfs, sqlite3 and
# fuse3 with apt-get when they are missing, builds the loopback and the
# harness into bin/, and runs bench/cmd/pfsbench.
#
#   QUICK=1       1 round, 256 MiB files, 5 s fio runs, a tenth of the tree (under 4 minutes)
#   ROUNDS=N      rounds (default 3; 1 with QUICK)
#   FIO_RUNTIME=D each fio run, e.g. 30s (default 8s; 5s with QUICK; W4d half, at least 5s)
#   SYSTEMS=a,b   systems to run, of native,loopback-pt,loopback,pfs,pfs-64M,pfs-s3,gocryptfs
#                 (default: all but pfs-s3)
#   BENCH_DIR=D   where the systems' files go, on the disk to measure (default /var/tmp)
#   PFS_BIN=P     the pfs binary (default bin/pfs, built here if missing)
#   KEEP=1        keep the work dir (stores, daemon logs) afterwards
#
# It fails only if something breaks, never on a ratio or a missed target.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}

if [ "$(id -u)" != 0 ]; then
	echo "bench: run as root: cold runs drop the page cache (/proc/sys/vm/drop_caches) and FUSE passthrough needs CAP_SYS_ADMIN" >&2
	exit 1
fi

# need COMMAND PACKAGE: install PACKAGE with apt-get if COMMAND is missing.
apt_updated=
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "bench: $1 is missing: install package $2" >&2
		exit 1
	fi
	echo "bench: installing $2"
	if [ -z "$apt_updated" ]; then
		apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}
need fio fio
need gocryptfs gocryptfs
need sqlite3 sqlite3
need fusermount3 fuse3
if [ ! -c /dev/fuse ]; then
	echo "bench: /dev/fuse is missing (load the fuse module: modprobe fuse)" >&2
	exit 1
fi

# pfs-s3 keeps its parts in versitygw, an S3 server from the Go module proxy.
if [[ ",${SYSTEMS:-}," == *,pfs-s3,* ]]; then
	if ! command -v versitygw >/dev/null 2>&1 && [ ! -x "$("$GO" env GOPATH)/bin/versitygw" ]; then
		echo "bench: installing versitygw"
		"$GO" install github.com/versity/versitygw/cmd/versitygw@v1.8.0
	fi
fi

pfs_bin=${PFS_BIN:-bin/pfs}
if [ -z "${PFS_BIN:-}" ] && [ ! -x "$pfs_bin" ]; then
	"$GO" build -o "$pfs_bin" ./cmd/pfs
fi
"$GO" build -o bin/pfs-loopback ./bench/loopback
"$GO" build -o bin/pfsbench ./bench/cmd/pfsbench

args=(-pfs "$pfs_bin" -loopback bin/pfs-loopback)
if [ "${QUICK:-0}" = 1 ]; then args+=(-quick); fi
if [ -n "${ROUNDS:-}" ]; then args+=(-rounds "$ROUNDS"); fi
if [ -n "${FIO_RUNTIME:-}" ]; then args+=(-fio-runtime "$FIO_RUNTIME"); fi
if [ -n "${SYSTEMS:-}" ]; then args+=(-systems "$SYSTEMS"); fi
if [ -n "${BENCH_DIR:-}" ]; then args+=(-dir "$BENCH_DIR"); fi
if [ "${KEEP:-0}" = 1 ]; then args+=(-keep); fi
exec bin/pfsbench "${args[@]}"
