package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo (proc(5)).
type mountEntry struct {
	Point  string // mount point
	FSType string // e.g. "fuse.pfs"
	Source string // for pfs: the absolute store directory
}

// pfsFSType is what the kernel shows for a pfs mount: package fs names
// the FUSE filesystem "pfs", and cmd_mount sets the source to the store.
const pfsFSType = "fuse.pfs"

// readMounts parses /proc/self/mountinfo.
func readMounts() ([]mountEntry, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var ms []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+3 || len(fields) < 5 {
			continue
		}
		ms = append(ms, mountEntry{
			Point:  unescapeMount(fields[4]),
			FSType: fields[sep+1],
			Source: unescapeMount(fields[sep+2]),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	return ms, nil
}

// findMount returns the topmost mount at mountpoint mnt, if any.
func findMount(mnt string) (mountEntry, bool, error) {
	ms, err := readMounts()
	if err != nil {
		return mountEntry{}, false, err
	}
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Point == mnt {
			return ms[i], true, nil
		}
	}
	return mountEntry{}, false, nil
}

// unescapeMount undoes the octal escapes (\040 for space, \011, \012,
// \134) the kernel uses in mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
