package main

import (
	"os"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress is a byte progress bar on stderr: bytes, rate and ETA. It is
// shown only when stderr is a terminal; otherwise every method is a no-op,
// so scripts and logs get no control characters. A nil *progress is valid.
type progress struct {
	bar *progressbar.ProgressBar
}

// newProgress returns a bar for total bytes (-1: unknown, a spinner).
func newProgress(total int64, what string) *progress {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	return &progress{bar: progressbar.DefaultBytes(total, what)}
}

// add counts n more bytes done. Safe for concurrent use.
func (p *progress) add(n int64) {
	if p != nil {
		_ = p.bar.Add64(n) // only fails writing to the terminal
	}
}

// set sets the bytes done and the total.
func (p *progress) set(done, total int64) {
	if p != nil {
		if total != p.bar.GetMax64() {
			p.bar.ChangeMax64(total)
		}
		_ = p.bar.Set64(done)
	}
}

// clear removes the bar from the terminal until its next update, so a
// line printed now does not mix with it.
func (p *progress) clear() {
	if p != nil {
		_ = p.bar.Clear()
	}
}

// finish completes the bar on success.
func (p *progress) finish() {
	if p != nil {
		_ = p.bar.Finish()
	}
}

// abort removes the bar so an error message starts on a clean line.
func (p *progress) abort() {
	if p != nil {
		_ = p.bar.Clear()
		_ = p.bar.Exit()
	}
}
