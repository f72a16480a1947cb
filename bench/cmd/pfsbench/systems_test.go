package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestPidAliveZombie: a process that exited but was not reaped yet (a pfs
// daemon waiting for init to reap it) no longer counts as alive; a running
// one does.
func TestPidAliveZombie(t *testing.T) {
	running := exec.Command("sleep", "30")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = running.Process.Kill()
		_ = running.Wait()
	})
	if !pidAlive(running.Process.Pid) {
		t.Error("a running process is not alive")
	}

	exited := exec.Command("true")
	if err := exited.Start(); err != nil {
		t.Fatal(err)
	}
	pid := exited.Process.Pid
	t.Cleanup(func() { _ = exited.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for !isZombie(t, pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exit", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if pidAlive(pid) {
		t.Errorf("process %d exited (a zombie, not reaped) but counts as alive", pid)
	}
	if pidAlive(0) || pidAlive(-1) {
		t.Error("pid 0 or -1 counts as alive")
	}
}

func isZombie(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
