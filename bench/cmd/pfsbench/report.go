package main

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// row is one line of the table.
type row struct {
	id, label, unit string
	higher          bool // higher is better (MB/s, IOPS); else lower (s, MiB)
	format          string
	target          target
}

// target is a goal for pfs: a factor of native's or loopback's median,
// or with base "" an absolute bound. It is printed, never enforced.
type target struct {
	base   string
	factor float64
	only   string // the pfs variant it applies to, if only one
}

var rows = []row{
	{"W1", "W1 seq write, dd conv=fsync", "MB/s", true, "%.0f", target{"native", 0.90, ""}},
	{"W2c", "W2 seq read, cold", "MB/s", true, "%.0f", target{"loopback", 1.0, ""}},
	{"W2w", "W2 seq read, warm", "MB/s", true, "%.0f", target{"native", 0.5, ""}},
	{"W3x", "W3 untar Go tree + sync", "s", false, "%.2f", target{"loopback", 1.0, ""}},
	{"W3u", "W3 untar + sync + unmount", "s", false, "%.2f", target{}},
	{"W3t", "W3 tar cf - tree | cat, cold", "s", false, "%.2f", target{"loopback", 1.0, ""}},
	{"W4", "W4 fio randread 4k", "IOPS", true, "%.0f", target{"loopback", 1.0, ""}},
	{"W4d", "W4d fio randread 4k direct", "IOPS", true, "%.0f", target{"loopback", 1.0, ""}},
	{"W5f", "W5 find -type f | wc -l, warm", "s", false, "%.3f", target{"loopback", 0.5, ""}},
	{"W5l", "W5 ls -lR, warm", "s", false, "%.3f", target{"loopback", 0.5, ""}},
	{"W6", "W6 daemon peak RSS over W1+W2", "MiB", false, "%.0f", target{"", 128, "pfs-64M"}},
	{"W7", "W7 fio randwrite 4k, end_fsync", "IOPS", true, "%.0f", target{"loopback", 0.5, ""}},
	{"W8", "W8 sqlite3 insert + read back", "s", false, "%.2f", target{"loopback", 1.5, ""}},
}

// goal renders a row's target, e.g. "≥ 0.90× native" or "≤ 128 MiB".
func (rw row) goal() string {
	t := rw.target
	if t.factor == 0 {
		return "—"
	}
	op := "≤"
	if rw.higher {
		op = "≥"
	}
	if t.base == "" {
		return fmt.Sprintf("%s %g %s", op, t.factor, rw.unit)
	}
	return fmt.Sprintf("%s %.2f× %s", op, t.factor, t.base)
}

// report renders the header, the table, notes and errors as markdown.
func (r *runner) report(took time.Duration) string {
	var b strings.Builder
	c := r.cfg
	mode := "full"
	if c.quick {
		mode = "QUICK"
	}
	fmt.Fprintf(&b, "# pfs benchmark (%s)\n\n", mode)
	fmt.Fprintf(&b, "- revision: %s, %s, run took %s\n", gitRevision(), time.Now().UTC().Format("2006-01-02 15:04 UTC"), took.Round(time.Second))
	fmt.Fprintf(&b, "- time: %s\n", r.timeSpent())
	fmt.Fprintf(&b, "- machine: %s\n", r.machine())
	fmt.Fprintf(&b, "- settings: %d round(s), systems interleaved (order rotated each round); W1/W2 %s; "+
		"W3 %s (%d files); W4 %s file, W4/W7 fio %d jobs × %s (W4d %s); W7 %d × %s; W8 %d rows in %d transactions\n",
		c.rounds, sizeStr(c.seqSize), c.tree, r.treeFiles, sizeStr(c.fioSize), c.fioJobs, c.fioRuntime, r.runtimeOf("W4d"),
		c.fioJobs, sizeStr(c.rwSize), c.sqlRows, c.sqlTxns)
	// Describe the systems that ran, in column order.
	described := map[string]func() string{
		"native": func() string { return "native = the directory on disk" },
		"loopback-pt": func() string {
			return fmt.Sprintf("loopback-pt = go-fuse %s `fs.NewLoopbackRoot` as go-fuse sets it up (FUSE passthrough as root)", goFuseVersion(c.loopbackBin))
		},
		"loopback": func() string { return "loopback = the same with passthrough off" },
		"pfs":      func() string { return "pfs = `pfs mount` defaults" },
		"pfs-64M":  func() string { return "pfs-64M = `pfs mount --memory 64MiB`" },
		"pfs-s3": func() string {
			return fmt.Sprintf("pfs-s3 = `pfs mount` defaults with parts in an S3 bucket of versitygw on 127.0.0.1 (%s)", versitygwVersion())
		},
		"gocryptfs": func() string { return "gocryptfs = " + toolVersion("gocryptfs", "--version") },
	}
	var descs []string
	for _, name := range c.systems {
		descs = append(descs, described[name]())
	}
	fmt.Fprintf(&b, "- systems: %s\n", strings.Join(descs, "; "))
	fmt.Fprintf(&b, "- tools: %s, sqlite3 %s\n\n", toolVersion("fio", "--version"), toolVersion("sqlite3", "--version"))

	cell := "median"
	if c.rounds > 1 {
		cell = "median (min–max)"
	}
	fmt.Fprintf(&b, "Cells: %s over %d round(s). Ratios: pfs (default settings) ÷ native and ÷ loopback (passthrough off), "+
		"on medians; for s and MiB lower is better. Targets are for pfs and never fail the run.\n\n", cell, c.rounds)

	header := []string{"row", "unit"}
	header = append(header, c.systems...)
	header = append(header, "pfs/native", "pfs/loopback", "target", "pfs", "pfs-64M")
	b.WriteString("| " + strings.Join(header, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(header)) + "\n")
	for _, rw := range rows {
		cells := []string{strings.ReplaceAll(rw.label, "|", `\|`), rw.unit}
		for _, name := range c.systems {
			cells = append(cells, r.cell(rw, name))
		}
		cells = append(cells, r.ratio(rw, "pfs", "native"), r.ratio(rw, "pfs", "loopback"), rw.goal(),
			r.met(rw, "pfs"), r.met(rw, "pfs-64M"))
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}

	b.WriteString("\nRows: W3u is W3 untar + sync plus the unmount after it (the time a daemon's own buffers take to reach the disk; " +
		"native: untar + sync). W6 is VmHWM of the FUSE daemon (pfs: the pid in STORE/lock), the larger of W1's and W2's mounts. " +
		"W2 and W3 tar start from a fresh mount after `sync; echo 3 > /proc/sys/vm/drop_caches`, and so do W4/W4d. " +
		"pfs-64M runs W1 and W2 only: it is there for W6 (in every row it took 5 of a full run's 28.5 minutes).\n")
	if len(r.notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	var failed []string
	for _, s := range r.sys {
		if s.failed != nil {
			failed = append(failed, fmt.Sprintf("- %s: %v", s.name, s.failed))
		}
	}
	if len(failed) > 0 {
		b.WriteString("\nErrors (these systems sat out the rest of the run):\n" + strings.Join(failed, "\n") + "\n")
	}
	return b.String()
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// stat returns the median of a row for a system, if it has samples.
func (r *runner) stat(row, name string) (float64, bool) {
	v := r.samples[row][name]
	if len(v) == 0 {
		return 0, false
	}
	return median(v), true
}

func (r *runner) cell(rw row, name string) string {
	v := r.samples[rw.id][name]
	if len(v) == 0 {
		return "—"
	}
	s := fmt.Sprintf(rw.format, median(v))
	if len(v) > 1 {
		s += fmt.Sprintf(" ("+rw.format+"–"+rw.format+")", slices.Min(v), slices.Max(v))
	}
	return s
}

func (r *runner) ratio(rw row, name, base string) string {
	v, ok1 := r.stat(rw.id, name)
	b, ok2 := r.stat(rw.id, base)
	if !ok1 || !ok2 || b == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", v/b)
}

// met says whether a pfs variant meets the row's target, with the number
// the target is about.
func (r *runner) met(rw row, name string) string {
	t := rw.target
	if t.factor == 0 || (t.only != "" && t.only != name) {
		return "—"
	}
	v, ok := r.stat(rw.id, name)
	if !ok {
		return "—"
	}
	got, shown := v, fmt.Sprintf(rw.format+" %s", v, rw.unit)
	if t.base != "" {
		b, ok := r.stat(rw.id, t.base)
		if !ok || b == 0 {
			return "—"
		}
		got, shown = v/b, fmt.Sprintf("%.2f×", v/b)
	}
	if (rw.higher && got >= t.factor) || (!rw.higher && got <= t.factor) {
		return "met " + shown
	}
	return "**missed** " + shown
}

// machine describes cores, RAM, CPU, kernel and the work dir's disk.
func (r *runner) machine() string {
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	ram := "?"
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			ram = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
		}
	}
	kernel := "?"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	disk := "?"
	if m, err := mountOf(r.work); err == nil {
		disk = fmt.Sprintf("%s on %s (%s)", m.fstype, m.source, m.point)
	}
	return fmt.Sprintf("%d cores (%s), %s RAM, Linux %s, %s; work dir %s",
		runtime.NumCPU(), cpu, ram, kernel, disk, r.work)
}

// gitRevision is HEAD's short hash, marked dirty if the tree has changes.
func gitRevision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown (not a git checkout)"
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain").Output(); err == nil && len(st) > 0 {
		rev += " (dirty)"
	}
	return rev
}

// toolVersion is the first line a tool prints for its version.
func toolVersion(tool string, args ...string) string {
	out, err := exec.Command(tool, args...).Output()
	if err != nil {
		return tool + " (version unknown)"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	switch tool {
	case "sqlite3": // "3.40.1 2022-12-28 14:03:47 <hash>"
		line, _, _ = strings.Cut(line, " ")
	case "gocryptfs": // "gocryptfs 2.3; go-fuse 2.1.0+git…; 2023-04-09 go1.19.8 linux/amd64"
		line, _, _ = strings.Cut(line, ";")
	}
	return line
}

// goFuseVersion reads the go-fuse version the loopback binary was built with.
func goFuseVersion(bin string) string {
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		return "(version unknown)"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/hanwen/go-fuse/v2" {
			return dep.Version
		}
	}
	return "(version unknown)"
}

// timeSpent says where the run's time went: preparing the inputs, then
// each group over all systems and rounds (mounts and setup included).
func (r *runner) timeSpent() string {
	parts := []string{"preparing " + r.prepped.Round(time.Second).String()}
	for _, g := range groups {
		if d, ok := r.spent[g.name]; ok {
			parts = append(parts, g.name+" "+d.Round(time.Second).String())
		}
	}
	return strings.Join(parts, ", ")
}
