package main

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/pfs-project/pfs/engine"
)

func newGetCmd(g *globals) *cobra.Command {
	var ef engineFlags
	cmd := &cobra.Command{
		Use:   "get [flags] ID|PATH [OUTPUT]",
		Short: "Copy a file out of the store",
		Long: `Copy a file, named by its file ID (as printed by put and ls) or its path in
the store, to OUTPUT (default: its base name in the current directory; a
directory: into it; -: stdout).

Every part is checked against its MD5. The data goes to a temporary file
next to OUTPUT, which is fsynced and renamed to OUTPUT only after the whole
file was read; on an error the temporary file is removed and the error
names the damaged part and offset. With OUTPUT - the bytes before the error
have already been written.`,
		Example: `  pfs get /photo.jpg
  pfs get 0b7e4f3c-9c1d-4f7e-8a51-3c1e2d9f4a10 restored.bin
  pfs get /backup/a.bin - | sha256sum`,
		Args: rangeArgs(1, 2, "ID|PATH and an optional OUTPUT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := ""
			if len(args) == 2 {
				out = args[1]
			}
			return runGet(cmd.Context(), g, &ef, args[0], out)
		},
	}
	ef.add(cmd.Flags(), false)
	return cmd
}

func runGet(ctx context.Context, g *globals, ef *engineFlags, arg, out string) error {
	e, err := openStore(ctx, g, openOptions{holder: "pfs get", readOnly: true, flags: ef})
	if err != nil {
		return err
	}
	return closeStore(e, get(ctx, e, arg, out))
}

func get(ctx context.Context, e *engine.Engine, arg, out string) error {
	a, p, err := lookup(ctx, e, arg)
	if err != nil {
		return fmt.Errorf("get %w", err)
	}
	if !isRegular(a) {
		return fmt.Errorf("get %s: not a regular file", p)
	}
	name := path.Base(p)
	if name == "/" || name == "." {
		name = a.ID.String()
	}
	switch fi, err := os.Stat(out); {
	case out == "-":
		return getStdout(ctx, e, a, p)
	case out == "":
		out = name
	case err == nil && fi.IsDir():
		out = filepath.Join(out, name)
	}

	dir := filepath.Dir(out)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("get %s: output directory %s: %w", p, dir, unwrapPathError(err))
	} else if !fi.IsDir() {
		return fmt.Errorf("get %s: output directory %s: not a directory", p, dir)
	}
	tmp, err := os.CreateTemp(dir, tempName(filepath.Base(out), "get")+"-*")
	if err != nil {
		return fmt.Errorf("get %s: %w", p, err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	bar := newProgress(int64(a.Size), "get")
	if err := copyOut(ctx, e, a, p, bar, func(b []byte, off int64) error {
		// Skip zero blocks: the temporary file is new, so they are holes.
		return forNonZero(b, func(nz []byte, at int) error {
			_, err := tmp.WriteAt(nz, off+int64(at))
			return err
		})
	}); err != nil {
		bar.abort()
		return fmt.Errorf("get %w", err)
	}
	bar.finish()
	err = tmp.Truncate(int64(a.Size))
	if err == nil {
		err = tmp.Chmod(os.FileMode(a.Mode & 0o777))
	}
	if err == nil {
		mt := time.Unix(0, a.Mtime)
		err = os.Chtimes(tmp.Name(), mt, mt)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), out)
	}
	if err != nil {
		return fmt.Errorf("get %s: write %s: %w", p, out, unwrapPathError(err))
	}
	done = true
	syncDir(dir)
	return nil
}

// getStdout streams the file to stdout.
func getStdout(ctx context.Context, e *engine.Engine, a *engine.Attr, p string) error {
	if err := copyOut(ctx, e, a, p, nil, func(b []byte, _ int64) error {
		_, err := os.Stdout.Write(b)
		return err
	}); err != nil {
		return fmt.Errorf("get %w", err)
	}
	return nil
}

// copyOut reads the file in large blocks, in order, and passes each to
// write. The engine reads ahead in parallel and checks every part's MD5;
// an error names the path and the offset (the engine's error names the
// part).
func copyOut(ctx context.Context, e *engine.Engine, a *engine.Attr, p string, bar *progress, write func(b []byte, off int64) error) (err error) {
	h, err := e.OpenFile(ctx, a.Ino)
	if err != nil {
		return fmt.Errorf("%s: open: %w", p, err)
	}
	defer func() {
		if rerr := h.Release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = fmt.Errorf("%s: close: %w", p, rerr)
		}
	}()
	size := int64(a.Size)
	buf := make([]byte, copyBlock)
	for off := int64(0); off < size; {
		want := int(min(int64(len(buf)), size-off))
		n, err := h.ReadAt(ctx, buf[:want], off)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err) // the engine names the offset and part
		}
		if n == 0 {
			return fmt.Errorf("%s: read at offset %d: file ends early, want %d bytes", p, off, size)
		}
		if err := write(buf[:n], off); err != nil {
			return fmt.Errorf("%s: write: %w", p, err)
		}
		off += int64(n)
		bar.add(int64(n))
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it is durable. Errors are
// ignored: some filesystems refuse fsync on directories.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}
