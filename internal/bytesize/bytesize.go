// Package bytesize parses and formats sizes in bytes as people write them
// ("512MiB", "2GB", "1.5 GiB", "1048576"). It does one thing: the
// conversion between those strings and int64 byte counts. It does not know
// where a size comes from; callers wrap its errors with that context.
package bytesize

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
)

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([A-Za-z]*)$`)

var units = map[string]float64{
	"": 1, "b": 1,
	"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
}

var canonical = map[string]string{"kb": "KB", "mb": "MB", "gb": "GB", "tb": "TB", "kib": "KiB", "mib": "MiB", "gib": "GiB", "tib": "TiB"}

// Parse reads a non-negative size: a number of bytes, or a number with a
// unit B, KB, MB, GB, TB (powers of 10) or KiB, MiB, GiB, TiB (powers of
// 2). Units are case-insensitive except that a lowercase final "b" after
// a prefix ("5Gb", "1kib") is refused: transformers and others read it as
// bits. Fractions
// round down to whole bytes.
func Parse(s string) (int64, error) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Errorf("%q is not a size: want a number of bytes or a number with a unit such as \"512MiB\", \"2GB\" or \"1GiB\"", s)
	}
	unit := m[2]
	mult, ok := units[strings.ToLower(unit)]
	if !ok {
		return 0, fmt.Errorf("%q: unknown unit %q (want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", s, unit)
	}
	if len(unit) >= 2 && strings.HasSuffix(unit, "b") {
		return 0, fmt.Errorf("%q: a lowercase b can mean bits; write %s for bytes", s, canonical[strings.ToLower(unit)])
	}
	x, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	n := math.Floor(x * mult)
	if n > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return int64(n), nil
}

// Format renders n bytes with a binary unit and one decimal ("5.1 GiB",
// "312.0 MiB"), or as plain bytes below 1 KiB ("900 B").
func Format(n int64) string {
	const unit = 1024
	if n < unit && n > -unit {
		return fmt.Sprintf("%d B", n)
	}
	f, exp := float64(n)/unit, 0
	for math.Abs(f) >= unit && exp < 5 {
		f /= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTPE"[exp])
}
