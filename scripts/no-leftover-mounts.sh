#!/usr/bin/env bash
# Fails if a pfs mount (fstype fuse.pfs) is left under DIR (default
# ${TMPDIR:-/tmp}, where the tests mount), as gocryptfs's test.bash does.
# A leftover mount means a test or the unmount path leaks mounts.
# Mounts elsewhere (say ~/pfs from `make run`) are not the tests' and are
# ignored.
set -euo pipefail

dir=$(realpath -m "${1:-${TMPDIR:-/tmp}}")
# mountinfo: field 5 is the mount point; the fstype follows the "-".
leftover=$(awk -v dir="$dir" '{
	for (i = 7; i <= NF; i++) if ($i == "-") break
	if ($(i+1) == "fuse.pfs" && (index($5, dir "/") == 1 || $5 == dir)) print $5 " (store " $(i+2) ")"
}' /proc/self/mountinfo)

if [ -n "$leftover" ]; then
	echo "no-leftover-mounts: pfs mounts left under $dir:" >&2
	while IFS= read -r line; do echo "  $line"; done <<<"$leftover" >&2
	echo "unmount them with: bin/pfs unmount --lazy MOUNTPOINT" >&2
	exit 1
fi
