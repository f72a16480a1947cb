package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/pfs-project/pfs/engine"
)

func newLsCmd(g *globals) *cobra.Command {
	var long bool
	var ef engineFlags
	cmd := &cobra.Command{
		Use:   "ls [flags] [PATH]",
		Short: "List files in the store",
		Long: `List PATH (default /) and everything below it, one line per entry:

  ID  SIZE  HUMAN  PARTS  STATUS  PATH

SIZE is in bytes, HUMAN the same in IEC units; directories end in '/' and
have no parts; symlinks show '-> target'. STATUS is ready, writing,
deleting or damaged (see 'pfs fsck'). With --long each file is followed by
one line per part:

  part chunk=N offset=BYTES len=BYTES id=UUID stored=BYTES md5=HEX compression=C status=S`,
		Example: `  pfs ls
  pfs ls --long /backup`,
		Args: rangeArgs(0, 1, "an optional PATH"),
		RunE: func(cmd *cobra.Command, args []string) error {
			p := "/"
			if len(args) == 1 {
				p = args[0]
			}
			return runLs(cmd.Context(), g, &ef, p, long)
		},
	}
	cmd.Flags().BoolVarP(&long, "long", "l", false, "also list every part of every file")
	ef.add(cmd.Flags(), false)
	return cmd
}

func runLs(ctx context.Context, g *globals, ef *engineFlags, p string, long bool) error {
	e, err := openStore(ctx, g, openOptions{holder: "pfs ls", readOnly: true, flags: ef})
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	err = ls(ctx, e, w, p, long)
	if ferr := w.Flush(); err == nil && ferr != nil {
		err = fmt.Errorf("ls: write: %w", ferr)
	}
	return closeStore(e, err)
}

func ls(ctx context.Context, e *engine.Engine, w io.Writer, arg string, long bool) error {
	_, p, err := lookup(ctx, e, arg)
	if err != nil {
		return fmt.Errorf("ls %w", err)
	}
	fmt.Fprintf(w, "%-36s %14s %9s %6s %-8s %s\n", "ID", "SIZE", "HUMAN", "PARTS", "STATUS", "PATH")
	err = e.Walk(ctx, p, func(p string, a *engine.Attr) error {
		parts := "-"
		var infos []engine.PartInfo
		if isRegular(a) {
			var err error
			if infos, err = e.FileParts(ctx, a.Ino); err != nil {
				return fmt.Errorf("%s: parts: %w", p, err)
			}
			parts = fmt.Sprint(len(infos))
		}
		name := p
		switch {
		case isDir(a) && p != "/":
			name += "/"
		case isSymlink(a):
			name += " -> " + a.Target
		}
		size := int64(a.Size)
		human := formatSize(size)
		if isDir(a) {
			human = "-"
		}
		fmt.Fprintf(w, "%-36s %14d %9s %6s %-8s %s\n", a.ID, size, human, parts, a.Status, name)
		if long {
			for _, pi := range infos {
				fmt.Fprintf(w, "  part chunk=%d offset=%d len=%d id=%s stored=%d md5=%x compression=%s status=%s\n",
					pi.Chunk, pi.FileOffset, pi.Len, pi.PartID, pi.StoredSize, pi.MD5, pi.Compression, pi.Status)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("ls %s: %w", p, err)
	}
	return nil
}
