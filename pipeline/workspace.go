// Package pipeline turns a loaded pipeline into work: it plans which stage
// instances are cached and which must run (and why), executes the DAG with a
// bounded number of stages in parallel, commits every result into the
// content-addressed store and records each run. A run may instead hand its
// uncached stages to a cluster through a Dispatcher (pipeline/slurm), each
// as a job running the one-stage contract, ExecStage (`lathe stage exec`).
//
// The language itself (parsing, variables, for_each, static validation) is in
// pipeline/config; the store in pipeline/cache; run records in pipeline/runs;
// the stage contract in pipeline/stage. This package knows nothing about
// machine learning and never imports a stage kind: kinds arrive in a
// stage.Registry. Presentation (terminal views, the board) is left to the
// callers, which observe runs through an Observer and the run record.
package pipeline

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// Workspace is a resolved pipeline together with the store its results go to.
type Workspace struct {
	// Path is the absolute path of the pipeline file or directory Load
	// was given.
	Path     string
	Pipeline *config.Pipeline
	Resolved *config.Resolved
	Registry *stage.Registry
	Store    *cache.Store
	// Lock holds the pins of pipeline.lock.hcl (empty when there is none);
	// LockPath is where it is read from and written to.
	Lock     *lockfile.File
	LockPath string
	// Remote, when set, is a shared cache behind Store: plan marks local
	// misses it holds as "pull", run pulls them (verified) instead of
	// running, and pushes every result it commits.
	Remote RemoteCache
	// GPUs, when set, is the machine's GPU inventory and the runner of
	// stages that ask for GPUs (see devices.go). Nil: such stages fail
	// unless their result is cached.
	GPUs GPUs
	// HostMemory, when set, returns the memory that stages' memory
	// reservations (resources { memory }) are scheduled against; nil
	// reads the machine's (memory.go).
	HostMemory func() (int64, error)

	state   *stateIndex
	pinMu   sync.Mutex
	pinMemo map[string]*pinState
	// resolutions and execAddr are set while ExecStage runs a stage
	// handed out by a run: see resolveArgs.
	resolutions, execAddr string
}

// Load parses and statically validates the pipeline at path (a file or a
// directory). The returned workspace is non-nil whenever any file could be
// read, so diagnostics can be rendered with source snippets; it is usable for
// planning only when diags has no errors.
func Load(path string, reg *stage.Registry, in config.Inputs) (*Workspace, hcl.Diagnostics) {
	p, diags := config.Load(path)
	ws := &Workspace{Pipeline: p, Registry: reg}
	if abs, err := filepath.Abs(path); err == nil {
		ws.Path = abs
	}
	if diags.HasErrors() || p == nil {
		return ws, diags
	}
	r, rdiags := p.Resolve(reg, in)
	diags = append(diags, rdiags...)
	ws.Resolved = r
	diags = append(diags, ws.readLock()...)
	return ws, diags
}

// DefaultCacheDir returns where the store lives for a pipeline in dir:
// $LATHE_CACHE if set, else .lathe beside the pipeline.
func DefaultCacheDir(pipelineDir string) string {
	if d := os.Getenv("LATHE_CACHE"); d != "" {
		return d
	}
	return filepath.Join(pipelineDir, ".lathe")
}

// OpenStore opens (creating if needed) the store at dir, or at the default
// location when dir is empty: $LATHE_CACHE, else the store of the
// pipeline's executor block (a store the cluster's nodes share), else
// .lathe beside the pipeline.
func (ws *Workspace) OpenStore(dir string) error {
	if dir == "" && os.Getenv("LATHE_CACHE") == "" && ws.Resolved != nil && ws.Resolved.Executor != nil {
		dir = ws.Resolved.Executor.Store
	}
	if dir == "" {
		dir = DefaultCacheDir(ws.Pipeline.Dir)
	}
	s, err := cache.Open(dir)
	if err != nil {
		return err
	}
	ws.Store = s
	ws.state = newStateIndex(s.Root(), ws.Pipeline.Dir)
	return nil
}

// keyContext is the stage.KeyContext handed to kinds; it also carries the
// instance's pins (stage.PinnedKeyContext).
type keyContext struct {
	ws   *Workspace
	pins map[string]string
}

func (kc keyContext) Pins() map[string]string { return kc.pins }

func (kc keyContext) BaseDir() string { return kc.ws.Pipeline.Dir }
func (kc keyContext) HashPath(path string) (string, error) {
	return kc.ws.Store.HashPath(path)
}

// outputsFromRecord turns a committed record back into output values:
// artifacts with their local path in the store, values decoded from JSON.
func (ws *Workspace) outputsFromRecord(inst *config.Instance, rec *cache.Record) (map[string]cty.Value, error) {
	out := map[string]cty.Value{}
	for name, o := range inst.Outputs {
		if kind, ok := stage.ArtifactKindOf(o.Type); ok {
			a, ok := rec.Artifacts[name]
			if !ok {
				return nil, &recordError{addr: inst.Addr, msg: "record lacks artifact output " + name}
			}
			out[name] = stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: a.Digest, Path: ws.Store.ArtifactPath(a.Digest)})
			continue
		}
		raw, ok := rec.Values[name]
		if !ok {
			return nil, &recordError{addr: inst.Addr, msg: "record lacks value output " + name}
		}
		v, err := ctyjson.Unmarshal(raw, o.Type)
		if err != nil {
			return nil, &recordError{addr: inst.Addr, msg: "value output " + name + ": " + err.Error()}
		}
		out[name] = v
	}
	return out, nil
}

type recordError struct{ addr, msg string }

func (e *recordError) Error() string {
	return e.addr + ": cached result is unusable: " + e.msg + " (run `lathe cache verify`)"
}

// Addresses returns every instance address, in topological order.
func (ws *Workspace) Addresses() []string {
	var out []string
	for _, inst := range ws.Resolved.Instances {
		out = append(out, inst.Addr)
	}
	return out
}

// matchAddr reports whether an instance address is selected by a user-given
// address: the instance itself, or its whole block (`sft.identity` selects
// every `sft.identity["..."]`).
func matchAddr(instAddr, sel string) bool {
	return instAddr == sel || strings.HasPrefix(instAddr, sel+"[")
}

// lookupAddrs resolves user-given addresses to instances, erroring on
// addresses that match nothing (with a suggestion).
func (ws *Workspace) lookupAddrs(sels []string) (map[*config.Instance]bool, error) {
	set := map[*config.Instance]bool{}
	for _, sel := range sels {
		found := false
		for _, inst := range ws.Resolved.Instances {
			if matchAddr(inst.Addr, sel) {
				set[inst] = true
				found = true
			}
		}
		if !found {
			return nil, &UnknownAddressError{Addr: sel, Known: ws.Addresses()}
		}
	}
	return set, nil
}

// UnknownAddressError is returned for a --target, --from or -explain address
// that names no stage.
type UnknownAddressError struct {
	Addr  string
	Known []string
}

func (e *UnknownAddressError) Error() string {
	known := append([]string(nil), e.Known...)
	sort.Strings(known)
	return "no stage " + e.Addr + " in this pipeline; stages are: " + strings.Join(known, ", ")
}

// RemoteCache is a shared store behind the local one (see pipeline/remote).
type RemoteCache interface {
	// Lookup returns the remote record of key, or nil when it has none.
	Lookup(ctx context.Context, key string) (*cache.Record, error)
	// Pull fetches key into s, verifying its trees, and returns the local
	// record; nil, nil when the remote has no entry.
	Pull(ctx context.Context, s *cache.Store, key string) (*cache.Record, error)
	// Push uploads a committed record and its artifacts from s.
	Push(ctx context.Context, s *cache.Store, rec *cache.Record) (bool, error)
}
