package main

import (
	"fmt"
	"strings"
)

// mountHelperArgs turns a mount(8) helper command line,
//
//	mount.pfs STORE MOUNTPOINT [-sfnv] [-N NS] [-o OPT,OPT...] [-t TYPE]
//
// into pfs arguments: mount --store STORE [flags] MOUNTPOINT. Options
// mount(8) passes on for every filesystem are ignored; pfs's own are ro,
// allow_other, nonempty, debug, memory=, workers=, chunk_size=, compress=,
// log_level=, backend=, s3_endpoint=, s3_region=, s3_path_style and
// s3_no_ssl. Anything else is an error, so a typo in /etc/fstab is not
// silently dropped. Options are the long flags of pfs mount with '_' for
// '-': workers=4, chunk_size=1MiB, s3_endpoint=minio:9000, s3_path_style.
func mountHelperArgs(args []string) ([]string, error) {
	var pos, opts []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-o" || a == "-t" || a == "-N":
			if i+1 >= len(args) {
				return nil, fmt.Errorf("mount.pfs: %s needs a value", a)
			}
			if a == "-o" {
				opts = append(opts, strings.Split(args[i+1], ",")...)
			}
			i++
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			opts = append(opts, strings.Split(a[2:], ",")...)
		case strings.HasPrefix(a, "-") && len(a) > 1:
			// -s (sloppy), -f (fake), -n (no mtab), -v (verbose): nothing to do.
		default:
			pos = append(pos, a)
		}
	}
	if len(pos) != 2 {
		return nil, fmt.Errorf("mount.pfs: usage: mount.pfs STORE MOUNTPOINT [-o OPTIONS]")
	}
	out := []string{"mount", "--store", pos[0]}
	for _, o := range opts {
		key, val, hasVal := strings.Cut(o, "=")
		switch key {
		case "", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "auto", "noauto",
			"user", "nouser", "users", "_netdev", "defaults", "nofail", "relatime", "noatime", "atime":
		case "ro":
			out = append(out, "--read-only")
		case "allow_other":
			out = append(out, "--allow-other")
		case "nonempty":
			out = append(out, "--nonempty")
		case "debug", "s3_path_style", "s3_no_ssl":
			out = append(out, "--"+strings.ReplaceAll(key, "_", "-"))
		case "memory", "workers", "chunk_size", "chunk-size", "compress", "log_level", "log-level",
			"backend", "s3_endpoint", "s3_region":
			if !hasVal || val == "" {
				return nil, fmt.Errorf("mount.pfs: option %s needs a value (%s=...)", key, key)
			}
			out = append(out, "--"+strings.ReplaceAll(key, "_", "-"), val)
		default:
			if strings.HasPrefix(key, "x-") || strings.HasPrefix(key, "comment") {
				continue // for other tools (systemd, ...)
			}
			return nil, fmt.Errorf("mount.pfs: unknown option %q", o)
		}
	}
	return append(out, "--", pos[1]), nil
}
