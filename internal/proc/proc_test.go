package proc

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestAliveZombie: a process that exited but was not reaped yet (a pfs
// daemon waiting for init to reap it) no longer counts as alive; a running
// one does, and so does this process.
func TestAliveZombie(t *testing.T) {
	running := exec.Command("sleep", "30")
	if err := running.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = running.Process.Kill()
		_ = running.Wait()
	})
	if !Alive(running.Process.Pid) {
		t.Error("a running process is not alive")
	}
	if !Alive(os.Getpid()) {
		t.Error("this process is not alive")
	}

	exited := exec.Command("true")
	if err := exited.Start(); err != nil {
		t.Fatal(err)
	}
	pid := exited.Process.Pid
	t.Cleanup(func() { _ = exited.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		state, ok := State(pid)
		if !ok {
			t.Fatalf("process %d gone before it was reaped", pid)
		}
		if state == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not exit (state %c)", pid, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if Alive(pid) {
		t.Errorf("process %d exited (a zombie, not reaped) but counts as alive", pid)
	}
	if Alive(0) || Alive(-1) {
		t.Error("pid 0 or -1 counts as alive")
	}
}
