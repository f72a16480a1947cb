package main

import (
	"context"
	"fmt"
	"path"

	"github.com/spf13/cobra"

	"github.com/pfs-project/pfs/engine"
)

func newRmCmd(g *globals) *cobra.Command {
	var recursive bool
	var ef engineFlags
	cmd := &cobra.Command{
		Use:   "rm [flags] ID|PATH...",
		Short: "Remove files (and with -r directories) from the store",
		Long: `Remove files, named by file ID or path, from the store; their parts are
deleted once no other link refers to them. Directories need -r, which
removes everything below them too (for / everything but / itself). A file
named by ID loses the first of its paths found.`,
		Example: `  pfs rm /photo.jpg
  pfs rm -r /backup
  pfs rm 0b7e4f3c-9c1d-4f7e-8a51-3c1e2d9f4a10`,
		Args: minArgs(1, "at least one ID or PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRm(cmd.Context(), g, &ef, args, recursive)
		},
	}
	cmd.Flags().BoolVarP(&recursive, "recursive", "r", false, "remove directories and their contents")
	ef.add(cmd.Flags(), false)
	return cmd
}

func runRm(ctx context.Context, g *globals, ef *engineFlags, args []string, recursive bool) error {
	e, err := openStore(ctx, g, openOptions{holder: "pfs rm", flags: ef})
	if err != nil {
		return err
	}
	var first error
	for _, arg := range args {
		if err := rm(ctx, e, arg, recursive); err != nil && first == nil {
			first = err // like rm(1): try the others, fail at the end
		}
	}
	return closeStore(e, first)
}

func rm(ctx context.Context, e *engine.Engine, arg string, recursive bool) error {
	a, p, err := lookup(ctx, e, arg)
	if err != nil {
		return fmt.Errorf("rm %w", err)
	}
	if !isDir(a) {
		return unlinkPath(ctx, e, p)
	}
	if !recursive {
		return withCode(exitUsage, fmt.Errorf("rm %s: is a directory (use -r)", p))
	}
	// Collect the tree, then remove children before their parents.
	type entry struct {
		path string
		attr *engine.Attr
	}
	var all []entry
	inos := map[string]engine.Ino{}
	if err := e.Walk(ctx, p, func(p string, a *engine.Attr) error {
		all = append(all, entry{p, a})
		inos[p] = a.Ino
		return nil
	}); err != nil {
		return fmt.Errorf("rm %s: %w", p, err)
	}
	for i := len(all) - 1; i >= 0; i-- {
		en := all[i]
		if en.path == "/" {
			continue
		}
		dir, name := path.Split(en.path)
		dir = storePath(dir)
		parent, ok := inos[dir]
		if !ok {
			pa, err := e.Resolve(ctx, dir)
			if err != nil {
				return fmt.Errorf("rm %s: %w", en.path, err)
			}
			parent = pa.Ino
		}
		if isDir(en.attr) {
			err = e.Rmdir(ctx, parent, name)
		} else {
			err = e.Unlink(ctx, parent, name)
		}
		if err != nil {
			return fmt.Errorf("rm %s: %w", en.path, err)
		}
	}
	return nil
}

func unlinkPath(ctx context.Context, e *engine.Engine, p string) error {
	dir, name := path.Split(p)
	parent, err := e.Resolve(ctx, storePath(dir))
	if err != nil {
		return fmt.Errorf("rm %s: %w", p, err)
	}
	if err := e.Unlink(ctx, parent.Ino, name); err != nil {
		return fmt.Errorf("rm %s: %w", p, err)
	}
	return nil
}
