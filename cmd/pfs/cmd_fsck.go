package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/pfs-project/pfs/engine"
)

func newFsckCmd(g *globals) *cobra.Command {
	var repair bool
	var ef engineFlags
	cmd := &cobra.Command{
		Use:   "fsck [flags]",
		Short: "Verify every part's MD5 and the registries' consistency",
		Long: `Read every part of the (unmounted) store, check it against its MD5, and
check that the file and part registries agree with each other and with the
stored objects. Each problem is printed on its own line, then a summary.

With --repair, orphaned parts and objects are removed and files with
damaged or missing parts are marked damaged (their damaged ranges read as
EIO); data that is still referenced is never deleted.

Exit status: 0 if no problems were found, or all were repaired; 1 if
problems remain (without --repair: any problem); 2 or more on errors
(see exitcodes.go).`,
		Example: `  pfs fsck
  pfs fsck --repair`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFsck(cmd.Context(), g, &ef, repair)
		},
	}
	cmd.Flags().BoolVar(&repair, "repair", false, "remove orphans and mark damaged files")
	ef.add(cmd.Flags(), false)
	return cmd
}

func runFsck(ctx context.Context, g *globals, ef *engineFlags, repair bool) error {
	holder := "pfs fsck"
	if repair {
		holder = "pfs fsck --repair"
	}
	e, err := openStore(ctx, g, openOptions{holder: holder, readOnly: !repair, flags: ef})
	if err != nil {
		return err
	}
	var bar *progress
	start := time.Now()
	rep, err := e.Fsck(ctx, engine.FsckOptions{
		Repair: repair,
		Progress: func(done, total int64) {
			if bar == nil {
				bar = newProgress(total, "fsck")
			}
			bar.set(done, total)
		},
	})
	if err != nil {
		bar.abort()
		return closeStore(e, fmt.Errorf("fsck: %w", err))
	}
	bar.finish()
	elapsed := time.Since(start)
	if err := closeStore(e, nil); err != nil {
		return err
	}

	for _, p := range rep.Problems {
		fmt.Printf("problem: %s\n", p)
	}
	rate := float64(rep.Bytes) / 1e6 / max(elapsed.Seconds(), 1e-3)
	fmt.Printf("checked %d files, %d directories, %d parts, %d bytes (%s) in %s, %.1f MB/s\n",
		rep.Files, rep.Dirs, rep.Parts, rep.Bytes, formatSize(rep.Bytes), elapsed.Round(time.Millisecond), rate)
	remaining := len(rep.Problems) - rep.Repaired
	switch {
	case len(rep.Problems) == 0:
		fmt.Println("no problems found")
		return nil
	case repair:
		fmt.Printf("%d problems found, %d repaired, %d remain\n", len(rep.Problems), rep.Repaired, remaining)
	default:
		fmt.Printf("%d problems found; run 'pfs fsck --repair' to repair what can be repaired\n", len(rep.Problems))
	}
	if remaining > 0 {
		return withCode(exitProblems, fmt.Errorf("fsck: %d problems remain", remaining))
	}
	return nil
}
