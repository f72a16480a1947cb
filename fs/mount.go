// Package fs serves an engine over FUSE. It is the only package that
// imports go-fuse: each kernel request becomes one engine call, and engine
// errors become errnos in one place (toErrno).
//
// The kernel does most of POSIX for us, because the mount uses
// default_permissions: it checks mode bits and ownership for every uid,
// applies the umask to new files, and clears setuid/setgid on write and
// chown by sending a SETATTR (go-fuse does not ask for
// FUSE_HANDLE_KILLPRIV). This package adds what only the file system can
// know: owners of new files from the caller, setgid directory inheritance,
// and directory listings that page through the engine instead of loading
// a directory at once.
//
// # Interrupts
//
// Requests ignore FUSE_INTERRUPT: each handler drops the cancellation of
// its context (uninterruptible) before calling the engine. The kernel
// sends an interrupt for any signal that arrives while a process waits on
// a request, and go-fuse cancels the context. Honouring it would turn
// harmless signals into EINTR from open, write or rename on a regular
// file, which programs do not expect and SA_RESTART does not retry; every
// Go program gets such signals all the time (SIGURG, for goroutine
// preemption). Worse, an interrupted Create could commit the file and
// still report EINTR. A fatal signal needs no help from us: the kernel
// stops waiting for the reply and the process dies, as NFS does since it
// dropped the "intr" option. The engine's work then finishes unobserved.
package fs

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/pfs-project/pfs/engine"
)

// Options configures Mount.
type Options struct {
	ReadOnly   bool
	AllowOther bool         // let users other than the mounter in (needs user_allow_other for non-root)
	Debug      bool         // log every FUSE request and reply (go-fuse debug logging)
	FsName     string       // source shown in /proc/mounts and df, e.g. the store dir
	Logger     *slog.Logger // nil means slog.Default()
}

// Server is a mounted file system.
type Server struct {
	srv        *fuse.Server
	mountpoint string
}

const (
	// cacheTimeout is how long the kernel may trust entries, attributes
	// and negative lookups. Only this mount changes the store (the store
	// lock keeps other writers out, offline commands included) and the
	// kernel updates or invalidates what its own requests change: a
	// create, unlink or rename invalidates the directory, a write the
	// size, a link or unlink the inode's nlink (hard links share one
	// kernel inode). Nothing is left to expire, so the timeout is long,
	// as virtiofs does for a directory no one else shares (cache=always).
	// A short one costs a LOOKUP round trip per file for every ls -l or
	// stat of a tree not touched within it.
	cacheTimeout = time.Hour

	// maxWrite is the largest READ and WRITE request: 1 MiB, the kernel's
	// maximum, so one request carries a quarter of a default chunk.
	maxWrite = 1 << 20

	// blockSize is st_blksize and the statfs block size.
	blockSize = 4096
)

// Mount mounts e at mountpoint and returns once the kernel has finished
// the mount (go-fuse WaitMount), so the caller may signal readiness. Serve
// runs in the background until Unmount or an external umount; Wait blocks
// until then. The caller closes the engine after Wait returns.
func Mount(e *engine.Engine, mountpoint string, opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	errLog.Store(log)

	// go-fuse logs through the standard log package: mount fallbacks,
	// handler panics and, with Debug, every request. All of it is wanted
	// when it appears, so it goes to the logger at Warn.
	goFuseLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)

	f := &fsys{e: e, log: log}
	root := &Node{fsys: f, ino: engine.RootIno}

	timeout := cacheTimeout
	mo := fuse.MountOptions{
		Name:       "pfs", // fs type "fuse.pfs"
		FsName:     opts.FsName,
		AllowOther: opts.AllowOther,
		Debug:      opts.Debug,
		Logger:     goFuseLog,

		// The kernel checks permissions against the mode bits we report,
		// for every uid, so the engine never has to.
		Options: []string{"default_permissions"},

		// Larger requests mean fewer round trips per chunk. go-fuse sets
		// max_read to the same value.
		MaxWrite: maxWrite,
		// Ask for readahead up to one default chunk. The kernel caps it
		// at the bdi's read_ahead_kb (128 KiB), which setReadAhead raises
		// after mounting.
		MaxReadAhead: readAheadKB << 10,
		// pfs answers reads from its own buffers, never from a file
		// descriptor, so go-fuse's splice path never applies; left on, it
		// first writes each reply's header into a pipe, then gives up
		// (and, for 1 MiB reads, logs a warning per read).
		DisableSplice: true,
		// Background requests are readahead and async writes; the
		// default of 12 starves the engine's worker pool on big copies.
		MaxBackground: 64,

		// Locks stay in the kernel: without FUSE_POSIX_LOCKS and
		// FUSE_FLOCK_LOCKS the kernel keeps fcntl and flock locks locally,
		// which is correct for a file system with one mount.
		EnableLocks: false,

		// The kernel leaves dropping setuid and capabilities on write,
		// truncate and chown to pfs (killPrivFS) instead of asking for
		// security.capability before every write.
		ExtraCapabilities: fuse.CAP_HANDLE_KILLPRIV_V2,

		// pfs is the only writer of its store, and every change to a
		// file's bytes goes through this mount's page cache (the kernel
		// drops the pages a truncate cuts itself), so it need not drop a
		// file's cached pages whenever its mtime moves. With that automatic invalidation, a database
		// lost its cached pages at every commit (its own writes move the
		// mtime) and read them back through the daemon.
		ExplicitDataCacheControl: true,

		// As root, mount(2) directly: fusermount3 may not be installed.
		// Not strict, so a non-root caller falls back to fusermount.
		DirectMount: os.Geteuid() == 0,
	}
	if opts.ReadOnly {
		// "ro" is a superblock flag the kernel parses for both mount(2)
		// and fusermount; the engine refuses writes too.
		mo.Options = append(mo.Options, "ro")
	}

	rawFS := fusefs.NewNodeFS(root, &fusefs.Options{
		MountOptions: mo,
		// fusefs.Mount with non-nil Options zeroes every timeout, so each
		// is set here.
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		// Mode 0000 must stay 0000; go-fuse would otherwise report 0644.
		NullPermissions: true,
		RootStableAttr:  &fusefs.StableAttr{Ino: uint64(engine.RootIno)},
		Logger:          goFuseLog,
	})
	// As fusefs.Mount, with killPrivFS between the server and the nodes.
	srv, err := withSpareProc(func() (*fuse.Server, error) {
		return fuse.NewServer(&killPrivFS{RawFileSystem: rawFS}, mountpoint, &mo)
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	go srv.Serve()
	if err := srv.WaitMount(); err != nil {
		_ = srv.Unmount()
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if err := setReadAhead(mountpoint, readAheadKB); err != nil {
		log.Debug("fs: could not raise the kernel read-ahead; sequential reads will be slower", "err", err)
	}
	return &Server{srv: srv, mountpoint: mountpoint}, nil
}

// procsBase is GOMAXPROCS as the process started, before any mount
// raised it.
var procsBase = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })

// withSpareProc runs newServer (fuse.NewServer) so that the Go runtime
// gets one P more than go-fuse has /dev/fuse readers. go-fuse sizes that
// pool from GOMAXPROCS when the server is made (fuseReaders). Between
// requests each reader sits in read(2) holding a P, and when every P is
// held so, the runtime's sysmon takes one back at every tick and keeps
// polling at its shortest interval (20 µs): under a stream of small
// requests that made a quarter of the daemon's CPU samples, and each of
// those wake-ups is a hypervisor exit on a VM. With a P to spare it
// leaves the readers alone. Measured on the benchmark's 2-core VM,
// untarring the Go tree: daemon CPU 14.4-15.6 -> 11.2-12.7 s, context
// switches -25 %, 16-17 s -> 13-14 s; two spare Ps did worse than one.
// Every mount of a process sizes from the GOMAXPROCS it started with.
func withSpareProc(newServer func() (*fuse.Server, error)) (*fuse.Server, error) {
	base := procsBase()
	runtime.GOMAXPROCS(base)
	defer runtime.GOMAXPROCS(max(base, fuseReaders(base)+1))
	return newServer()
}

// fuseReaders is how many goroutines go-fuse lets read /dev/fuse for a
// GOMAXPROCS of procs (fuse.NewServer).
func fuseReaders(procs int) int { return min(max(procs, 2), 16) }

// Wait blocks until the file system is unmounted.
func (s *Server) Wait() { s.srv.Wait() }

// Unmount unmounts the file system; Wait then returns. It fails with
// EBUSY while files are open on the mount.
func (s *Server) Unmount() error {
	if err := s.srv.Unmount(); err != nil {
		return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
	}
	return nil
}

// fsys is the state shared by all nodes of one mount.
type fsys struct {
	e   *engine.Engine
	log *slog.Logger
}

// uninterruptible returns ctx without its cancellation. Every request
// handler starts with it; see "Interrupts" in the package comment.
func uninterruptible(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// readAheadKB is the kernel read-ahead pfs asks for: one default chunk, so
// the kernel keeps a whole chunk's worth of requests in flight while the
// engine prefetches the next chunks. Measured on a 2-core VM: 128 KiB
// (the kernel default) gave ~290 MB/s cold sequential reads, 4 MiB ~420.
const readAheadKB = 4096

// setReadAhead raises the read-ahead of the mount's backing device info.
// The kernel takes the smaller of FUSE's max_readahead and the bdi default
// (128 KiB), so only the sysfs knob can raise it; it needs root.
func setReadAhead(mountpoint string, kb int) error {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return err
	}
	path := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	return os.WriteFile(path, []byte(strconv.Itoa(kb)), 0o644)
}
