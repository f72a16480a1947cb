package main

import (
	"errors"
	"math"
	"strconv"
	"strings"

	"github.com/dustin/go-humanize"
)

// parseSize parses a byte size given by the user: plain bytes ("4096"), IEC
// units ("64MiB", "1GiB"), SI units ("100MB" = 100 000 000), or a single
// unit letter ("64M", "1G"), which means the IEC unit, as it does for dd(1)
// and most storage tools; a power-of-two chunk size must not turn into
// 1 000 000 bytes. Zero, negative and unparseable sizes are errors; the
// error says why without repeating the input (callers name the flag).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	if t[0] == '-' {
		return 0, errors.New("must be greater than 0")
	}
	if n := len(t); n >= 2 && isDigit(t[n-2]) || n >= 3 && t[n-2] == ' ' {
		switch t[n-1] {
		case 'k', 'K', 'm', 'M', 'g', 'G', 't', 'T', 'p', 'P':
			t += "iB"
		}
	}
	if !isDigit(t[0]) {
		return 0, errBadSize
	}
	v, err := humanize.ParseBytes(t)
	if err != nil {
		if strings.Contains(err.Error(), "too large") {
			return 0, errors.New("too large")
		}
		return 0, errBadSize
	}
	if v == 0 {
		return 0, errors.New("must be greater than 0")
	}
	if v > math.MaxInt64 {
		return 0, errors.New("too large")
	}
	return int64(v), nil
}

var errBadSize = errors.New("want a number with an optional unit, like 4096, 64MiB or 1G")

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// formatSize prints n as a short human size without spaces, so that it is
// one column in `pfs ls`: "4.0MiB", "300MiB", "0B".
func formatSize(n int64) string {
	if n < 0 {
		return "-"
	}
	return strings.ReplaceAll(humanize.IBytes(uint64(n)), " ", "")
}

// sizeFlag is a pflag.Value holding a byte size parsed by parseSize, so
// that bad sizes are rejected while the flags are parsed, before anything
// is opened.
type sizeFlag struct {
	v   int64
	set bool
}

func (f *sizeFlag) String() string {
	if !f.set {
		return ""
	}
	return strconv.FormatInt(f.v, 10)
}

func (f *sizeFlag) Set(s string) error {
	v, err := parseSize(s)
	if err != nil {
		return err
	}
	f.v, f.set = v, true
	return nil
}

func (f *sizeFlag) Type() string { return "size" }
