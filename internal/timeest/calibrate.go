package timeest

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// DirEnv moves the calibration cache (a directory).
const DirEnv = "LATHE_CALIBRATION_DIR"

// FormatVersion is the calibration file's format; a file of another
// version is ignored and rewritten.
const FormatVersion = 1

// Machine identifies what the kernel timings depend on: a file calibrated
// for one Machine is never used for another.
type Machine struct {
	// Backend is the backend's name ("cpu") and Kernels its kernel
	// selection where it has one (the CPU backend's Sgemm micro-kernel:
	// "avx512", "avx2", "go").
	Backend string `json:"backend"`
	Kernels string `json:"kernels,omitempty"`
	// CPU is the processor's model name (/proc/cpuinfo), Features the
	// instruction-set extensions the kernels may use.
	CPU      string `json:"cpu"`
	Features string `json:"features"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
	// Threads is GOMAXPROCS: the kernels use that many threads.
	Threads int `json:"threads"`
	// Engine is lathe's engine version (and build revision, when known):
	// a new engine may have new kernels.
	Engine string `json:"engine"`
}

// ThisMachine describes this process's machine for a backend (name and
// kernel selection) and engine version.
func ThisMachine(backend, kernels, engine string) Machine {
	return Machine{Backend: backend, Kernels: kernels, CPU: cpuModel(), Features: cpuFeatures(),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Threads: runtime.GOMAXPROCS(0), Engine: engine}
}

// cpuModel is the first "model name" of /proc/cpuinfo ("" elsewhere).
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// cpuFeatures lists the extensions the CPU kernels choose between.
func cpuFeatures() string {
	var fs []string
	for _, f := range []struct {
		name string
		on   bool
	}{{"sse4.1", cpu.X86.HasSSE41}, {"avx", cpu.X86.HasAVX}, {"avx2", cpu.X86.HasAVX2}, {"fma", cpu.X86.HasFMA},
		{"avx512f", cpu.X86.HasAVX512F}, {"avx512vl", cpu.X86.HasAVX512VL}, {"asimd", cpu.ARM64.HasASIMD},
		{"asimdhp", cpu.ARM64.HasASIMDHP}, {"sve", cpu.ARM64.HasSVE}} {
		if f.on {
			fs = append(fs, f.name)
		}
	}
	return strings.Join(fs, ",")
}

// id is the file name stem of m's calibration: the backend and a digest
// of the whole description.
func (m Machine) id() string {
	b, _ := json.Marshal(m)
	sum := sha256.Sum256(b)
	return m.Backend + "-" + hex.EncodeToString(sum[:8])
}

// DefaultDir is where calibrations are cached: $LATHE_CALIBRATION_DIR, else
// the user cache directory's lathe/calibration (os.UserCacheDir: e.g.
// ~/.cache/lathe/calibration), else, when there is none (no home
// directory), lathe-calibration in the temporary directory.
func DefaultDir() string {
	if d := os.Getenv(DirEnv); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil && writableDir(d) {
		return filepath.Join(d, "lathe", "calibration")
	}
	return filepath.Join(os.TempDir(), fmt.Sprintf("lathe-calibration-%d", os.Getuid()))
}

// writableDir reports whether d exists as a directory or can be made.
func writableDir(d string) bool {
	if st, err := os.Stat(d); err == nil {
		return st.IsDir()
	}
	return os.MkdirAll(d, 0o755) == nil
}

// file is the calibration file: the machine it holds timings for and, by
// op key, the seconds one call of the op takes.
type file struct {
	Format  int                `json:"format"`
	Machine Machine            `json:"machine"`
	Created time.Time          `json:"created"`
	Ops     map[string]float64 `json:"ops"`
}

// maxOps bounds the ops a file keeps (every model shape adds some): past
// it, the file starts over with the ops measured last.
const maxOps = 4000

// Calibrator times kernel ops on a backend and caches the timings per
// machine in a small JSON file. It is safe for concurrent use.
type Calibrator struct {
	Backend tensor.Backend
	Machine Machine
	// Dir is the cache directory; "" keeps timings in memory only.
	Dir string
	// Log, when set, is told when a calibration runs and what went wrong
	// with the cache file (a calibration then still works, in memory).
	Log func(format string, args ...any)

	mu     sync.Mutex
	loaded bool
	ops    map[string]float64 // the file's and this process's timings
	fresh  map[string]float64 // this process's
}

// Path is the calibration file of the Calibrator's machine ("" without a
// directory).
func (c *Calibrator) Path() string {
	if c.Dir == "" {
		return ""
	}
	return filepath.Join(c.Dir, c.Machine.id()+".json")
}

func (c *Calibrator) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// load reads the file once; a missing, unreadable, malformed, foreign
// or outdated file counts as empty (and is overwritten by the next save).
func (c *Calibrator) load() {
	if c.loaded {
		return
	}
	c.loaded = true
	c.ops = map[string]float64{}
	f, err := readFile(c.Path(), c.Machine)
	if err != nil {
		c.logf("time estimate: ignoring the calibration cache: %v", err)
		return
	}
	if f != nil {
		c.ops = f.Ops
	}
}

// readFile reads a calibration file: nil without error when there is
// none; an error when it is unusable.
func readFile(path string, m Machine) (*file, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var f file
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	switch {
	case f.Format != FormatVersion:
		return nil, fmt.Errorf("%s: format %d, this build writes %d", path, f.Format, FormatVersion)
	case f.Machine != m:
		return nil, fmt.Errorf("%s: calibrated for another machine or engine (%+v)", path, f.Machine)
	}
	for k, v := range f.Ops {
		if !(v > 0) || v > 1e6 {
			return nil, fmt.Errorf("%s: op %q: bad time %v", path, k, v)
		}
	}
	if f.Ops == nil {
		f.Ops = map[string]float64{}
	}
	return &f, nil
}

// save merges the timings into the file (another process may have added
// some) and writes it atomically: a temporary file renamed over it.
func (c *Calibrator) save() error {
	path := c.Path()
	if path == "" {
		return nil
	}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		return err
	}
	ops := map[string]float64{}
	if old, err := readFile(path, c.Machine); err == nil && old != nil {
		for k, v := range old.Ops {
			ops[k] = v
		}
	}
	for k, v := range c.fresh {
		ops[k] = v
	}
	if len(ops) > maxOps {
		ops = c.fresh // start over rather than grow without bound
	}
	b, err := json.MarshalIndent(file{Format: FormatVersion, Machine: c.Machine, Created: time.Now().UTC().Truncate(time.Second), Ops: ops}, "", " ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(c.Dir, ".calibration-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return nil
}

// Timings returns, for each op, the seconds one call takes: from the
// cache, or, with calibrate, measured now on the backend at the op's
// Measured shape (and cached). Ops neither cached nor measured are left
// out.
func (c *Calibrator) Timings(ops []Op, calibrate bool) (Timings, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.load()
	var missing []Op
	seen := map[string]bool{}
	for _, op := range ops {
		m := op.Measured()
		k := m.Key()
		if _, ok := c.ops[k]; !ok && !seen[k] {
			seen[k] = true
			missing = append(missing, m)
		}
	}
	if calibrate && len(missing) > 0 {
		if c.Backend == nil {
			return nil, errors.New("timeest: no backend to calibrate on")
		}
		sort.Slice(missing, func(i, j int) bool { return missing[i].Key() < missing[j].Key() })
		start := time.Now()
		if c.fresh == nil {
			c.fresh = map[string]float64{}
		}
		// Two passes, each op's faster time kept: a burst of other work
		// on the machine seldom slows the same op twice.
		for pass := range calibrationPasses {
			for _, op := range missing {
				s, err := measure(c.Backend, op)
				if err != nil {
					return nil, err
				}
				if pass > 0 {
					s = min(s, c.fresh[op.Key()])
				}
				c.ops[op.Key()], c.fresh[op.Key()] = s, s
			}
		}
		where := "kept in memory"
		if err := c.save(); err != nil {
			c.logf("time estimate: could not write the calibration cache: %v", err)
		} else if p := c.Path(); p != "" {
			where = "cached in " + p
		}
		c.logf("time estimate: calibrated %d %s kernel shapes on this machine in %.1f s (%s)", len(missing), c.Machine.Backend, time.Since(start).Seconds(), where)
	}
	t := Timings{}
	for _, op := range ops {
		m := op.Measured()
		if s, ok := c.ops[m.Key()]; ok {
			t[op.Key()] = s * op.cost() / m.cost()
		}
	}
	return t, nil
}

// calibrationPasses is how many times each op is measured.
const calibrationPasses = 2

// Timings holds the seconds one call of each op takes, by op key.
type Timings map[string]float64
