// Package stage is the contract between the pipeline engine and the stage kinds.
//
// A stage kind (exec, tokenize, sft, ...) declares what it accepts and what it
// produces: its HCL schema, its outputs and their types, a version salt that
// enters every cache key, and which of its arguments are not semantic (logging
// and the like, kept out of the key). The engine decodes a stage block against
// the schema, resolves references to other stages' outputs, and calls Run with
// the fully known arguments and a staging directory.
//
// The contract is deliberately data-only at its boundary: a Request can be
// serialised, shipped to another process or machine (`lathe stage exec`), run
// there, and the staging directory and event stream brought back. Nothing in a
// Request refers to the executor's memory.
//
// This package does not parse pipeline files, plan, cache or schedule: those
// live in the pipeline packages. It does not know any concrete stage kind:
// those live under stages/ and register into a Registry.
package stage

import (
	"context"
	"fmt"
	"sort"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"
)

// Kind describes one stage kind.
type Kind struct {
	// Name is the first label of a stage block: stage "<Name>" "<name>".
	// It may contain '-' (HCL identifiers do), e.g. "reward-model".
	Name string

	// Version is the kind's version salt. It enters every cache key of this
	// kind: bump it whenever the kind would produce different outputs for the
	// same arguments and inputs.
	Version string

	// Summary is a one-line description for help texts and the README.
	Summary string

	// Schema decodes the stage block's body (without the meta-arguments such as
	// for_each, which the engine handles). Use hcldec.ObjectSpec at the top.
	// Artifact-typed arguments use ArtifactType so that passing a string where a
	// model is expected is a type error at validation time.
	Schema hcldec.ObjectSpec

	// NonSemantic names top-level arguments that do not change the result
	// (logging frequency, progress options). They are decoded and passed to Run
	// but left out of the cache key.
	NonSemantic []string

	// Outputs returns the outputs a stage of this kind produces, given its
	// decoded arguments. The arguments may contain unknown values (upstream
	// outputs are unknown during static validation); a kind whose outputs
	// depend on an argument must require that argument to be known and report
	// a diagnostic otherwise. Most kinds return a fixed map (see FixedOutputs).
	Outputs func(args cty.Value) (map[string]Output, hcl.Diagnostics)

	// KeyLines optionally adds labelled lines to the cache key that the
	// arguments alone do not determine, such as the content digest of a local
	// file named by a path argument. Called with fully known arguments.
	KeyLines func(kc KeyContext, args cty.Value) ([]KeyLine, error)

	// Pin optionally lets the kind pin what its arguments name by a moving
	// reference (a Hub branch or tag) to a fixed value (a commit), recorded
	// in the pipeline's lock file. Nil: the kind never pins.
	Pin *Pinner

	// Run executes one stage instance. It writes every artifact output into
	// req.OutputDir(name) and returns the values of the non-artifact outputs.
	// It must stop promptly when ctx is cancelled, returning ctx.Err() (wrapped
	// is fine); whatever it wrote to the staging directory is then discarded.
	Run func(ctx context.Context, req *Request) (*Result, error)
	// Estimate, when set, describes the resources a run of the stage would
	// need (e.g. "peak memory ≈ 412 MiB of 21.9 GiB available"), from fully
	// known arguments; plan shows it for stages that would run. It must be
	// cheap and read no more than small files of its input artifacts.
	Estimate func(args cty.Value) (string, error)
	// Resolve, when set, replaces argument values that depend on the
	// machine (batch_size = "auto": the largest batch that fits the
	// memory available) by what they resolve to here. The engine calls it
	// with fully known arguments before it computes the cache key, so the
	// resolved values, not "auto", enter the key, and Run (and Estimate)
	// receive the returned arguments. note says what was resolved
	// ("batch_size: auto → 8"), shown by plan and logged by run; "" when
	// nothing was. It must be cheap and deterministic for the same
	// arguments on the same machine in the same state, and read no more
	// than small files of its input artifacts. m says what is known of the
	// devices the stage would run on.
	Resolve func(args cty.Value, m Machine) (resolved cty.Value, note string, err error)
}

// Machine is what Kind.Resolve knows of where a stage runs beyond the
// host, which it reads itself.
type Machine struct {
	// DeviceMemory is the free memory, in bytes, of the smallest GPU a
	// stage asking for GPUs (resources { gpus }) could be given, as the
	// driver reports it; 0 for a CPU stage, or where it is unknown.
	DeviceMemory int64
}

// Output is one declared output of a stage.
type Output struct {
	// Type is ArtifactType(...) for an artifact (a directory tree in the
	// store), or any other cty type for a value (a metrics map, a number).
	Type cty.Type
	// Summary is a one-line description.
	Summary string
}

// IsArtifact reports whether the output is an artifact rather than a value.
func (o Output) IsArtifact() bool {
	_, ok := ArtifactKindOf(o.Type)
	return ok
}

// FixedOutputs returns an Outputs function for a kind whose outputs do not
// depend on its arguments.
func FixedOutputs(outputs map[string]Output) func(cty.Value) (map[string]Output, hcl.Diagnostics) {
	return func(cty.Value) (map[string]Output, hcl.Diagnostics) { return outputs, nil }
}

// KeyLine is one labelled line of a cache key, e.g. {"input data", "sha256:..."}.
type KeyLine struct {
	Label string
	Value string
}

// KeyContext gives KeyLines what it needs to describe inputs outside the
// store without reading them twice.
type KeyContext interface {
	// BaseDir is the directory of the pipeline file; relative paths in
	// arguments are relative to it. It never enters a key.
	BaseDir() string
	// HashPath returns the content digest of a file or directory tree
	// ("sha256:<hex>"), cached by path, size and modification time so that
	// an unchanged input is not reread on every plan.
	HashPath(path string) (string, error)
}

// Pinner resolves moving references once, so that later plans can reuse the
// result from the lock file without asking the network.
type Pinner struct {
	// Inputs returns what the arguments would resolve, without any network
	// access (e.g. {"repo": "model org/name", "revision": "main"}), or nil
	// when nothing needs pinning (a commit sha, a local path). A lock entry is
	// valid while its inputs equal these.
	Inputs func(args cty.Value) (map[string]string, error)
	// Resolve resolves the inputs now (over the network) and returns the
	// values to pin, e.g. {"commit": "<sha>"}.
	Resolve func(ctx context.Context, args cty.Value) (map[string]string, error)
}

// PinnedKeyContext is implemented by the engine's KeyContext: it carries
// the pinned values of the instance whose key is being computed. It is a
// separate interface so that existing KeyContext implementations stay valid;
// use PinsOf.
type PinnedKeyContext interface {
	KeyContext
	// Pins returns the instance's pinned values (nil when none).
	Pins() map[string]string
}

// PinsOf returns the pinned values a KeyContext carries, or nil.
func PinsOf(kc KeyContext) map[string]string {
	if p, ok := kc.(PinnedKeyContext); ok {
		return p.Pins()
	}
	return nil
}

// Request is everything one run of a stage instance receives.
type Request struct {
	// Address is the instance address, e.g. `sft.identity["r8"]`. For
	// messages only: it is not part of the cache key.
	Address string
	// Args holds the decoded, fully known arguments. Artifact values carry
	// the local path of the artifact in the store (see ArtifactOf).
	Args cty.Value
	// BaseDir is the directory of the pipeline file; relative paths in
	// arguments are resolved against it.
	BaseDir string
	// StagingDir is an empty directory owned by this run. Artifact output
	// "x" is written to OutputDir("x"); anything else in it is discarded.
	StagingDir string
	// ScratchDir is an empty directory for temporary files, removed after the
	// run whatever its outcome.
	ScratchDir string
	// CheckpointDir is a directory tied to the cache key that survives a
	// failed or interrupted run, so a rerun of the same key can resume.
	// Removed once the result is committed.
	CheckpointDir string
	// Reporter receives progress, log lines and metrics.
	Reporter Reporter
	// Pins holds the values pinned for this instance in the lock file (see
	// Kind.Pin), which also entered its cache key; nil when none.
	Pins map[string]string
	// Force is set when the user asked to run regardless (lathe run
	// -force): a stage skips its own refusals, such as the memory guard of
	// the training kinds.
	Force bool
	// Devices lists the GPUs given to this run (NVML indices, as nvidia-smi
	// numbers them) when the stage asked for some with resources { gpus =
	// N }: exactly N whole devices that no other running stage holds, for
	// the run's whole duration. Nil for a stage that runs on the CPU. A
	// worker process sees them through CUDA_VISIBLE_DEVICES (by UUID).
	Devices []int
}

// OutputDir is where Run writes the artifact output with the given name.
func (r *Request) OutputDir(name string) string {
	return r.StagingDir + "/" + name
}

// Result is what a successful Run returns besides the artifacts it wrote.
type Result struct {
	// Values holds the non-artifact outputs, by name.
	Values map[string]cty.Value
}

// Reporter carries a running stage's progress, logs and metrics to the
// executor, which records them in the run's events and shows them live.
// Implementations are safe for concurrent use.
type Reporter interface {
	// Progress reports done out of total units (total 0 if unknown), e.g.
	// steps or bytes; unit names the unit ("step", "B").
	Progress(done, total int64, unit string)
	// Logf records one log line.
	Logf(format string, args ...any)
	// Metrics records named scalar metrics at a step (loss, lr, ...).
	Metrics(step int64, values map[string]float64)
}

// Registry holds the stage kinds a pipeline may use.
type Registry struct {
	kinds map[string]*Kind
}

// NewRegistry returns a registry holding the given kinds. It panics on a
// malformed kind or a duplicate name: both are programming errors.
func NewRegistry(kinds ...*Kind) *Registry {
	r := &Registry{kinds: map[string]*Kind{}}
	for _, k := range kinds {
		r.Register(k)
	}
	return r
}

// Register adds a kind. It panics on a malformed kind or a duplicate name.
func (r *Registry) Register(k *Kind) {
	switch {
	case k.Name == "":
		panic("stage: kind without a name")
	case k.Version == "":
		panic(fmt.Sprintf("stage: kind %q has no version salt", k.Name))
	case k.Outputs == nil:
		panic(fmt.Sprintf("stage: kind %q declares no outputs", k.Name))
	case k.Run == nil:
		panic(fmt.Sprintf("stage: kind %q has no Run", k.Name))
	case k.Pin != nil && (k.Pin.Inputs == nil || k.Pin.Resolve == nil):
		panic(fmt.Sprintf("stage: kind %q has a Pinner without Inputs or Resolve", k.Name))
	}
	if _, dup := r.kinds[k.Name]; dup {
		panic(fmt.Sprintf("stage: kind %q registered twice", k.Name))
	}
	r.kinds[k.Name] = k
}

// Lookup returns the kind with the given name.
func (r *Registry) Lookup(name string) (*Kind, bool) {
	k, ok := r.kinds[name]
	return k, ok
}

// Names returns the registered kind names, sorted.
func (r *Registry) Names() []string {
	names := make([]string, 0, len(r.kinds))
	for n := range r.kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
