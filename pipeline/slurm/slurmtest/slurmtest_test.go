package slurmtest

import (
	"fmt"
	"strings"
	"testing"
)

// recorder is a testing.TB that records Fatalf and Skip instead of
// stopping the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skip(args ...any)                  { r.skip = fmt.Sprint(args...) }

// TestRequireWithoutSlurm: with no Slurm on the PATH a test is skipped,
// and fails under LATHE_REQUIRE_PEERS=1.
func TestRequireWithoutSlurm(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	t.Setenv("LATHE_REQUIRE_PEERS", "")
	r := &recorder{TB: t}
	Require(r)
	if r.fatal != "" || !strings.Contains(r.skip, "Slurm is not installed (munged, slurmctld") {
		t.Errorf("without LATHE_REQUIRE_PEERS: skip %q, fatal %q", r.skip, r.fatal)
	}
	t.Setenv("LATHE_REQUIRE_PEERS", "1")
	r = &recorder{TB: t}
	Require(r)
	if r.skip != "" || !strings.Contains(r.fatal, "LATHE_REQUIRE_PEERS=1 requires it") || !strings.Contains(r.fatal, "make deps-slurm") {
		t.Errorf("with LATHE_REQUIRE_PEERS=1: skip %q, fatal %q", r.skip, r.fatal)
	}
}
