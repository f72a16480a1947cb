// Package proc answers questions about other processes from /proc, for
// the commands that wait for a pfs daemon they did not start.
package proc

import (
	"bytes"
	"fmt"
	"os"
)

// Alive reports whether process pid exists and has not exited. A process
// that exited stays a zombie until its parent reaps it; a pfs daemon's
// parent is init, which may take its time (1.4-1.7 s on the Firecracker
// VMs pfs is benchmarked on), so a zombie counts as gone.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	state, ok := State(pid)
	return ok && state != 'Z' && state != 'X'
}

// State returns the state letter of process pid (R, S, D, Z, ...) and
// whether the process exists.
func State(pid int) (byte, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	// "pid (comm) S ...": the state follows the last ')', as comm may
	// hold one.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return '?', true
	}
	return b[i+2], true
}
