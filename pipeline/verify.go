package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/runs"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// VerifyResult is the outcome of rerunning a cached stage and comparing its
// outputs with the cached ones.
type VerifyResult struct {
	Addr     string
	Key      string
	Duration time.Duration
	Outputs  []OutputCheck // sorted by name
}

// Reproducible reports whether every output came out identical.
func (v *VerifyResult) Reproducible() bool {
	for _, o := range v.Outputs {
		if !o.Same {
			return false
		}
	}
	return true
}

// OutputCheck compares one output of a verification rerun.
type OutputCheck struct {
	Name string
	// Cached and Rerun are the artifact digests, or the JSON of a value.
	Cached, Rerun string
	Same          bool
	// Diff is the first differing file of an artifact (by path order), or
	// nil when the outputs are the same or are values.
	Diff *FileDiff
}

// FileDiff names a file that differs between the cached artifact and the
// rerun; a digest is "" where the file is absent on that side.
type FileDiff struct {
	Path          string
	Cached, Rerun string
}

// Verify reruns the cached stage addr into a scratch store (a temporary
// directory; its upstream artifacts are read from the real store, which is
// left untouched) and compares every output's bytes with the cached result.
// The stage and everything it needs must be cached. observe, if set,
// receives the rerun's log, progress and metrics events.
func (ws *Workspace) Verify(ctx context.Context, addr string, observe func(runs.Event)) (*VerifyResult, error) {
	inst, err := ws.instanceByAddr(addr)
	if err != nil {
		return nil, err
	}
	c, err := ws.cached(ctx, inst)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "lathe-verify-")
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", addr, err)
	}
	defer removeWritable(tmp)
	scratchStore, err := cache.Open(tmp)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", addr, err)
	}
	staging, err := scratchStore.NewStaging()
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", addr, err)
	}
	scratch, err := scratchStore.NewStaging()
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", addr, err)
	}
	ckpt, err := scratchStore.CheckpointDir(c.key.Sum)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", addr, err)
	}
	if observe == nil {
		observe = func(runs.Event) {}
	}
	req := &stage.Request{
		Address:       inst.Addr,
		Args:          c.args,
		BaseDir:       ws.Pipeline.Dir,
		StagingDir:    staging.Dir,
		ScratchDir:    scratch.Dir,
		CheckpointDir: ckpt,
		Reporter:      &funcReporter{addr: inst.Addr, emit: observe},
		Pins:          c.pins,
	}
	observe(runs.Event{Time: time.Now().UTC(), Type: "stage-started", Stage: inst.Addr, Key: c.key.Sum})
	start := time.Now()
	result, err := runKind(ctx, inst.Kind, req)
	res := &VerifyResult{Addr: inst.Addr, Key: c.key.Sum, Duration: time.Since(start)}
	if err != nil {
		return nil, fmt.Errorf("verify %s: the rerun failed: %w", addr, err)
	}
	values, artifactNames, err := checkOutputs(inst, result, staging.Dir)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", addr, err)
	}
	for _, name := range artifactNames {
		want := c.rec.Artifacts[name].Digest
		got, err := cache.HashTree(filepath.Join(staging.Dir, name))
		if err != nil {
			return nil, fmt.Errorf("verify %s: hash output %s: %w", addr, name, err)
		}
		oc := OutputCheck{Name: name, Cached: want, Rerun: got.Digest, Same: want == got.Digest}
		if !oc.Same {
			oc.Diff, err = firstDiff(ws.Store.ArtifactPath(want), filepath.Join(staging.Dir, name))
			if err != nil {
				return nil, fmt.Errorf("verify %s: compare output %s: %w", addr, name, err)
			}
		}
		res.Outputs = append(res.Outputs, oc)
	}
	for name, v := range values {
		want, got := compactJSON(c.rec.Values[name]), compactJSON(v)
		res.Outputs = append(res.Outputs, OutputCheck{Name: name, Cached: string(want), Rerun: string(got), Same: bytes.Equal(want, got)})
	}
	sort.Slice(res.Outputs, func(i, j int) bool { return res.Outputs[i].Name < res.Outputs[j].Name })
	return res, nil
}

// compactJSON removes insignificant space from a JSON value (a record
// stores its values indented); invalid JSON is returned as is.
func compactJSON(b []byte) []byte {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return b
	}
	return buf.Bytes()
}

// firstDiff returns the first file, in path order, whose content differs
// between two trees (or that only one of them has). It returns nil when
// every file matches (the trees may still differ in empty directories or
// modes).
func firstDiff(cachedDir, rerunDir string) (*FileDiff, error) {
	a, err := fileDigests(cachedDir)
	if err != nil {
		return nil, err
	}
	b, err := fileDigests(rerunDir)
	if err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(a)+len(b))
	for p := range a {
		paths = append(paths, p)
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			paths = append(paths, p)
		}
	}
	sort.Strings(paths)
	for _, p := range paths {
		if a[p] != b[p] {
			return &FileDiff{Path: p, Cached: a[p], Rerun: b[p]}, nil
		}
	}
	return nil, nil
}

// removeWritable removes a tree that may hold read-only directories.
func removeWritable(root string) {
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(p, 0o755)
		}
		return nil
	})
	_ = os.RemoveAll(root)
}

// funcReporter forwards a stage's reports as events to a function.
type funcReporter struct {
	addr string
	emit func(runs.Event)

	mu           sync.Mutex
	lastProgress time.Time
}

func (r *funcReporter) Progress(done, total int64, unit string) {
	r.mu.Lock()
	now := time.Now()
	if done != total && now.Sub(r.lastProgress) < 200*time.Millisecond {
		r.mu.Unlock()
		return
	}
	r.lastProgress = now
	r.mu.Unlock()
	r.emit(runs.Event{Time: now.UTC(), Type: "progress", Stage: r.addr, Done: done, Total: total, Unit: unit})
}

func (r *funcReporter) Logf(format string, args ...any) {
	r.emit(runs.Event{Time: time.Now().UTC(), Type: "log", Stage: r.addr, Message: fmt.Sprintf(format, args...)})
}

func (r *funcReporter) Metrics(step int64, values map[string]float64) {
	r.emit(runs.Event{Time: time.Now().UTC(), Type: "metrics", Stage: r.addr, Step: step, Metrics: values})
}
