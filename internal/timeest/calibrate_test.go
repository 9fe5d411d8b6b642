package timeest

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
)

// testMachine is a machine description for the cache tests.
func testMachine(engine string) Machine {
	return Machine{Backend: "cpu", Kernels: "test", CPU: "test cpu", Features: "none", OS: "linux", Arch: "amd64", Threads: 2, Engine: engine}
}

// smallOps are quick to measure.
var smallOps = []Op{Gemm(false, true, 16, 8, 8), {Kind: KindAdamW, Values: 256}}

// calibrator returns a Calibrator on dir that records what it logs.
func calibrator(dir string, m Machine, log *[]string) *Calibrator {
	return &Calibrator{Backend: cpu.New(), Machine: m, Dir: dir, Log: func(f string, a ...any) {
		*log = append(*log, fmt.Sprintf(f, a...))
	}}
}

// TestCalibrationRoundTrip measures, writes the file, and reads it back in
// a new Calibrator without measuring.
func TestCalibrationRoundTrip(t *testing.T) {
	dir := t.TempDir()
	var log []string
	c := calibrator(dir, testMachine("1"), &log)
	got, err := c.Timings(smallOps, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(smallOps) || len(log) != 1 || !strings.Contains(log[0], "calibrated 2 cpu kernel shapes") || !strings.Contains(log[0], c.Path()) {
		t.Fatalf("timings %v, log %q", got, log)
	}
	if filepath.Dir(c.Path()) != dir || !strings.HasPrefix(filepath.Base(c.Path()), "cpu-") {
		t.Errorf("file %s", c.Path())
	}
	// A new process: everything from the file, nothing measured (no
	// backend to measure on).
	log = nil
	c2 := &Calibrator{Machine: testMachine("1"), Dir: dir, Log: func(f string, a ...any) { log = append(log, f) }}
	again, err := c2.Timings(smallOps, true)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range got {
		if again[k] != v {
			t.Errorf("%s: %v after the round trip, was %v", k, again[k], v)
		}
	}
	if len(log) != 0 {
		t.Errorf("logged %q", log)
	}
	// Another engine (or machine, thread count, backend): another file,
	// nothing cached.
	c3 := &Calibrator{Machine: testMachine("2"), Dir: dir}
	if c3.Path() == c.Path() {
		t.Fatal("two machines share a calibration file")
	}
	if none, err := c3.Timings(smallOps, false); err != nil || len(none) != 0 {
		t.Errorf("another engine: %v, %v", none, err)
	}
	if _, err := c3.Timings(smallOps, true); err == nil || !strings.Contains(err.Error(), "no backend") {
		t.Errorf("calibrating without a backend: %v", err)
	}
}

// TestCalibrationScales checks that an op timed at a reduced shape is
// scaled by its work.
func TestCalibrationScales(t *testing.T) {
	dir := t.TempDir()
	m := testMachine("1")
	big := Gemm(false, true, 4096, 4096, 4096)
	small := big.Measured()
	writeCal(t, filepath.Join(dir, m.id()+".json"), file{Format: FormatVersion, Machine: m, Ops: map[string]float64{small.Key(): 0.5}})
	c := &Calibrator{Machine: m, Dir: dir}
	got, err := c.Timings([]Op{big}, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := 0.5 * big.Flops() / small.Flops(); got[big.Key()] != want {
		t.Errorf("%s: %v s, want %v", big, got[big.Key()], want)
	}
}

func writeCal(t *testing.T, path string, f file) {
	t.Helper()
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCalibrationBadFile checks that an unusable file is reported,
// ignored, and replaced by the next calibration.
func TestCalibrationBadFile(t *testing.T) {
	m := testMachine("1")
	cases := []struct {
		name, want string
		write      func(path string)
	}{
		{"malformed", "invalid character", func(p string) { os.WriteFile(p, []byte("{not json"), 0o644) }},
		{"truncated", "unexpected end", func(p string) { os.WriteFile(p, []byte(`{"format": 1, "ops": {`), 0o644) }},
		{"old format", "format 0", func(p string) { writeCal(t, p, file{Format: 0, Machine: m, Ops: map[string]float64{"x": 1}}) }},
		{"another machine", "another machine", func(p string) {
			writeCal(t, p, file{Format: FormatVersion, Machine: testMachine("9"), Ops: map[string]float64{"x": 1}})
		}},
		{"bad time", "bad time", func(p string) {
			writeCal(t, p, file{Format: FormatVersion, Machine: m, Ops: map[string]float64{smallOps[0].Key(): -1}})
		}},
	}
	for _, c := range cases {
		dir := t.TempDir()
		var log []string
		cal := calibrator(dir, m, &log)
		c.write(cal.Path())
		if got, err := cal.Timings(smallOps, false); err != nil || len(got) != 0 {
			t.Errorf("%s: timings %v, %v", c.name, got, err)
		}
		if len(log) != 1 || !strings.Contains(log[0], "ignoring the calibration cache") || !strings.Contains(log[0], c.want) {
			t.Errorf("%s: log %q, want %q", c.name, log, c.want)
		}
		if _, err := cal.Timings(smallOps, true); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		f, err := readFile(cal.Path(), m)
		if err != nil || f == nil || len(f.Ops) != len(smallOps) {
			t.Errorf("%s: the file was not replaced: %+v, %v", c.name, f, err)
		}
	}
}

// TestCalibrationUnwritable checks that a cache directory that cannot be
// written leaves the timings in memory, with a message.
func TestCalibrationUnwritable(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var log []string
	c := calibrator(filepath.Join(blocker, "calibration"), testMachine("1"), &log)
	got, err := c.Timings(smallOps, true)
	if err != nil || len(got) != 2 {
		t.Fatalf("timings %v, %v", got, err)
	}
	if all := strings.Join(log, "\n"); !strings.Contains(all, "could not write the calibration cache") || !strings.Contains(all, "(kept in memory)") {
		t.Errorf("log %q", log)
	}
}

// TestCalibrationMerge checks that saving keeps what another process
// added to the file meanwhile.
func TestCalibrationMerge(t *testing.T) {
	dir := t.TempDir()
	m := testMachine("1")
	var log []string
	a, b := calibrator(dir, m, &log), calibrator(dir, m, &log)
	if _, err := a.Timings(smallOps[:1], true); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Timings(smallOps[1:], true); err != nil { // b loaded the file before... or after: either way
		t.Fatal(err)
	}
	f, err := readFile(a.Path(), m)
	if err != nil || len(f.Ops) != 2 {
		t.Errorf("merged file %+v, %v", f, err)
	}
}

func TestDefaultDir(t *testing.T) {
	t.Setenv(DirEnv, "/some/where")
	if d := DefaultDir(); d != "/some/where" {
		t.Errorf("DefaultDir with %s set: %s", DirEnv, d)
	}
	t.Setenv(DirEnv, "")
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	if d := DefaultDir(); !strings.HasSuffix(d, filepath.Join("lathe", "calibration")) {
		t.Errorf("DefaultDir: %s", d)
	}
}

// TestMeasureEveryKind measures one small op of each kind on the CPU
// backend: each runs, and takes some time.
func TestMeasureEveryKind(t *testing.T) {
	be := cpu.New()
	for _, op := range []Op{
		Gemm(true, false, 8, 16, 24),
		{Kind: KindAttnFwd, B: 1, T: 16, Hq: 4, Hkv: 2, D: 8},
		{Kind: KindAttnBwd, B: 1, T: 16, Hq: 4, Hkv: 2, D: 8},
		{Kind: KindXent, Rows: 8, Hidden: 16, Vocab: 32, Variant: XentLoss},
		{Kind: KindXent, Rows: 8, Hidden: 16, Vocab: 32, Variant: XentDx},
		{Kind: KindXent, Rows: 8, Hidden: 16, Vocab: 32, Variant: XentDxDw},
		{Kind: KindNF4, Values: 256},
		{Kind: KindAdamW, Values: 100},
		{Kind: KindGrads, Values: 100},
		{Kind: KindElemFwd, Rows: 8, Hidden: 16, Inter: 32, Hq: 4, Hkv: 2, D: 4},
		{Kind: KindElemBwd, Rows: 8, Hidden: 16, Inter: 32, Hq: 4, Hkv: 2, D: 4},
	} {
		s, err := measure(be, op)
		if err != nil || !(s > 0) {
			t.Errorf("%s: %v s, %v", op, s, err)
		}
	}
	if _, err := measure(be, Op{Kind: KindNF4, Values: 100}); err == nil {
		t.Error("an nf4 op of 100 values measured")
	}
}
