package bytesize

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
	}{
		{"0", 0}, {"1048576", 1 << 20}, {"512MiB", 512 << 20}, {"2GB", 2e9}, {"1.5 GiB", 3 << 29},
		{"10KIB", 10 << 10}, {"3B", 3}, {" 7 TB ", 7e12}, {".5KiB", 512}, {"1.7B", 1},
	} {
		got, err := Parse(c.in)
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"", "not a size"}, {"-1GiB", "not a size"}, {"GiB", "not a size"}, {"1 2", "not a size"},
		{"5Gb", "write GB"}, {"3 mib", "write MiB"}, {"3 miB", ""}, {"2 PB", "unknown unit"}, {"1e30", "not a size"},
		{"99999999999TiB", "too large"},
	} {
		_, err := Parse(c.in)
		if c.want == "" {
			if err != nil {
				t.Errorf("Parse(%q): %v", c.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) error = %v, want it to mention %q", c.in, err, c.want)
		}
	}
}

func TestFormat(t *testing.T) {
	for _, c := range []struct {
		in   int64
		want string
	}{{0, "0 B"}, {1023, "1023 B"}, {1024, "1.0 KiB"}, {5 << 30, "5.0 GiB"}, {3 << 39, "1.5 TiB"}, {312 << 20, "312.0 MiB"}} {
		if got := Format(c.in); got != c.want {
			t.Errorf("Format(%d) = %q, want %q", c.in, got, c.want)
		}
	}
}
