package engine

import (
	"fmt"
	"runtime"
	"syscall"
)

// Limits on configuration values; Validate rejects anything outside them.
const (
	DefaultChunkSize = 4 << 20
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 64 << 20
	MaxWorkers       = 256
)

// DefaultConfig returns the settings used when the user gives none: 4 MiB
// chunks, no compression, one worker per CPU, and a memory cap of 1/16 of
// RAM kept between 64 MiB and 1 GiB.
func DefaultConfig(dir string) Config {
	return Config{
		Dir:     dir,
		Workers: runtime.NumCPU(),
		Memory:  defaultMemory(),
	}
}

func defaultMemory() int64 {
	var si syscall.Sysinfo_t
	mem := int64(256 << 20)
	if syscall.Sysinfo(&si) == nil {
		mem = int64(si.Totalram) * int64(si.Unit) / 16
	}
	return min(max(mem, 64<<20), 1<<30)
}

// Validate reports the first setting that cannot work, in words a user of
// the CLI understands.
func (c Config) Validate() error {
	if c.Dir == "" {
		return fmt.Errorf("%w: store directory not set", ErrInvalid)
	}
	if c.ChunkSize != 0 {
		if c.ChunkSize < MinChunkSize || c.ChunkSize > MaxChunkSize {
			return fmt.Errorf("%w: chunk size %d: must be between 64KiB and 64MiB", ErrInvalid, c.ChunkSize)
		}
		if c.ChunkSize&(c.ChunkSize-1) != 0 {
			return fmt.Errorf("%w: chunk size %d: must be a power of two", ErrInvalid, c.ChunkSize)
		}
	}
	switch c.Compression {
	case "", "none", "zstd":
	default:
		return fmt.Errorf("%w: compression %q: must be none or zstd", ErrInvalid, c.Compression)
	}
	if c.Workers < 1 || c.Workers > MaxWorkers {
		return fmt.Errorf("%w: workers %d: must be between 1 and %d", ErrInvalid, c.Workers, MaxWorkers)
	}
	chunk := c.ChunkSize
	if chunk == 0 {
		chunk = DefaultChunkSize
	}
	if c.Memory < 2*chunk {
		return fmt.Errorf("%w: memory %d: must be at least two chunks (%d bytes)", ErrInvalid, c.Memory, 2*chunk)
	}
	return nil
}

// fixedOverhead is what the process needs beyond the chunk cap and the
// registry's budget: the Go runtime, goroutine stacks, FUSE request
// buffers (go-fuse keeps a few MaxWrite-sized ones) and the zstd codecs.
const fixedOverhead = 48 << 20

// ProcessMemory is the memory the whole process should stay within for
// this configuration: the chunk cap, the registry's budget and a fixed
// overhead (which covers the few idle buffers kept for reuse, see
// freeBufs). The CLI hands it to the Go runtime as its soft limit
// (debug.SetMemoryLimit), so garbage is collected before RSS grows past it.
func (c Config) ProcessMemory() int64 {
	return c.Memory + registryMemory(c.Memory) + fixedOverhead
}
