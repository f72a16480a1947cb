// Command loopback serves a directory with go-fuse's loopback filesystem,
// the baseline that bench/run.sh measures pfs against (bench/README.md).
//
//	loopback [-passthrough=false] [-notify] MOUNTPOINT DIR
//
// As root on Linux 6.9 and later go-fuse hands the kernel each open file's
// backing fd (FUSE passthrough), so reads and writes bypass this process.
// -passthrough=false keeps every byte going through it, as it does in pfs.
// It unmounts on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"
	"time"

	fusefs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

func main() {
	passthrough := flag.Bool("passthrough", true, "let the kernel read and write backing files directly (FUSE passthrough, needs root)")
	notify := flag.Bool("notify", false, `print "ready" on stdout once mounted`)
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [flags] MOUNTPOINT DIR\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 2 {
		flag.Usage()
		os.Exit(2)
	}
	mnt, dir := flag.Arg(0), flag.Arg(1)

	root, err := fusefs.NewLoopbackRoot(dir)
	if err != nil {
		log.Fatalf("loopback: %v", err)
	}
	if !*passthrough {
		root = &noPassthroughNode{root.(*fusefs.LoopbackNode)}
	}
	// A non-nil Options zeroes the timeouts; 1s is what go-fuse's
	// example/loopback and libfuse use.
	sec := time.Second
	server, err := fusefs.Mount(mnt, root, &fusefs.Options{
		EntryTimeout: &sec,
		AttrTimeout:  &sec,
		MountOptions: fuse.MountOptions{FsName: dir, Name: "loopback"},
	})
	if err != nil {
		log.Fatalf("loopback: mount %s: %v", mnt, err)
	}
	if *notify {
		fmt.Println("ready")
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		if err := server.Unmount(); err != nil {
			log.Printf("loopback: unmount %s: %v", mnt, err)
		}
	}()
	server.Wait()
}

// noPassthroughNode is a loopback node whose files never offer their fd
// for passthrough. go-fuse passes an fd through when the file handle
// implements FilePassthroughFder and PassthroughFd reports true
// (go-fuse fs/bridge.go addBackingID).
type noPassthroughNode struct {
	*fusefs.LoopbackNode
}

var (
	_ = (fusefs.NodeOpener)((*noPassthroughNode)(nil))
	_ = (fusefs.NodeCreater)((*noPassthroughNode)(nil))
	_ = (fusefs.NodeWrapChilder)((*noPassthroughNode)(nil))
)

// WrapChild makes every node below the root a noPassthroughNode too.
func (n *noPassthroughNode) WrapChild(ctx context.Context, ops fusefs.InodeEmbedder) fusefs.InodeEmbedder {
	return &noPassthroughNode{ops.(*fusefs.LoopbackNode)}
}

func (n *noPassthroughNode) Open(ctx context.Context, flags uint32) (fusefs.FileHandle, uint32, syscall.Errno) {
	fh, fuseFlags, errno := n.LoopbackNode.Open(ctx, flags)
	return wrapFile(fh), fuseFlags, errno
}

func (n *noPassthroughNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fusefs.Inode, fusefs.FileHandle, uint32, syscall.Errno) {
	ch, fh, fuseFlags, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return ch, wrapFile(fh), fuseFlags, errno
}

// noPassthroughFile is a LoopbackFile that declines passthrough; every
// other file operation is LoopbackFile's.
type noPassthroughFile struct {
	*fusefs.LoopbackFile
}

func (f *noPassthroughFile) PassthroughFd() (int, bool) { return -1, false }

func wrapFile(fh fusefs.FileHandle) fusefs.FileHandle {
	if lf, ok := fh.(*fusefs.LoopbackFile); ok {
		return &noPassthroughFile{lf}
	}
	return fh
}
