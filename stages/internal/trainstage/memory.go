package trainstage

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/align"
	"github.com/lathe-ml/lathe/internal/bytesize"
	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/memest"
	"github.com/lathe-ml/lathe/internal/sysinfo"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/timeest"
	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// MemoryLimitEnv overrides the memory a training stage may use (bytes, or a
// number with KiB/MiB/GiB), e.g. to test the guard or to leave room for
// other work on the machine.
const MemoryLimitEnv = "LATHE_MEMORY_LIMIT"

// GuardInput describes a training stage for the memory guard and the
// estimates.
type GuardInput struct {
	Config    llama.Config
	Args      cty.Value // the stage's arguments (loop and method)
	ValueHead bool
	Pairs     bool
	// Backend is what the stage computes on: a device backend that
	// reports its memory (tensor.MemoryReporter, the CUDA backend) is
	// checked against the device's free memory; nil or the CPU backend
	// against the host's.
	Backend tensor.Backend
}

// defaultEpochs is what LoopConfig trains without epochs or max_steps.
const defaultEpochs = 3

// estimateInput builds the memory model's input from a stage's arguments.
func estimateInput(g GuardInput) (memest.Input, error) {
	args := g.Args
	in := memest.Input{Config: g.Config, Method: memest.Full, ValueHead: g.ValueHead, Pairs: g.Pairs,
		BatchSize: Num[int](args.GetAttr("batch_size")), SeqLen: Num[int](args.GetAttr("max_seq_len")),
		GradAccum: Num[int](args.GetAttr("gradient_accumulation")), Recompute: args.GetAttr("activation_recompute").True(),
		Checkpoints: Num[int](args.GetAttr("save_steps")) > 0, BF16: BF16(args)}
	if in.SeqLen == 0 {
		in.SeqLen = g.Config.MaxPositions
	}
	if in.SeqLen == 0 {
		in.SeqLen = 2048
	}
	if !args.Type().HasAttribute("method") {
		return in, nil // pretrain: full training
	}
	return in, applyMethod(&in, args)
}

// applyMethod sets the memory model's method fields from the method
// arguments (AddMethod's).
func applyMethod(in *memest.Input, args cty.Value) error {
	in.Method = memest.Method(MethodOf(args))
	in.Merge = args.GetAttr("merge").True()
	switch MethodOf(args) {
	case Freeze:
		pred, err := freezePredicate(args.GetAttr("freeze"), in.Config)
		if err != nil {
			return err
		}
		in.Trainable = pred
	case LoRA, QLoRA:
		lc, err := loraConfig(args.GetAttr("lora"))
		if err != nil {
			return err
		}
		if !args.GetAttr("adapter").IsNull() {
			if c, _, err := lora.Load(ArtifactPath(args.GetAttr("adapter"))); err == nil {
				lc = c
			}
		}
		kinds, err := lora.ResolveTargets(lc.Targets, llama.AdapterKinds(in.Config))
		if err != nil {
			return err
		}
		in.LoRARank, in.LoRAModules, in.LoRADropout = lc.Rank, llama.AdapterLinearKinds(in.Config, kinds), lc.Dropout > 0
	}
	return nil
}

// Guard estimates the stage's peak memory before anything is loaded, logs
// it, and refuses to start when it exceeds the memory available
// (LATHE_MEMORY_LIMIT, else the cgroup limit, else MemAvailable plus what
// this process holds) — with the breakdown and the changes that would fit —
// unless the run is forced (lathe run -force).
//
// When the stage may run, Guard also sets the Go runtime's memory limit to
// what the estimate allows (the engine's buffers are Go heap: without a
// limit a long run's garbage grows the heap towards twice its live size);
// call the returned release when the stage is done.
func Guard(req *stage.Request, g GuardInput) (release func(), err error) {
	in, err := estimateInput(g)
	if err != nil {
		return nil, err
	}
	est, err := memest.Training(in)
	if err != nil {
		return nil, err
	}
	limit, source := memoryFor(g.Backend)
	rep := Reporter(req)
	rep.Logf("memory estimate: %s peak (%s: %s)", memest.FormatBytes(est.Total), source, memest.FormatBytes(limit))
	if t, err := timeEstimate(g, in, false); err == nil {
		rep.Logf("time estimate: %s, %s a step (%s)", t, timeest.FormatSeconds(t.StepSeconds), t.Breakdown())
	}
	return decide(req, est, limit, source, func() []memest.Option { return memest.Fitting(in, limit) })
}

// decide lets a stage whose estimate fits (or that is forced) run under
// the memory it holds, or refuses it with the breakdown and the options
// that would fit.
func decide(req *stage.Request, est memest.Estimate, limit int64, source string, fitting func() []memest.Option) (func(), error) {
	if limit <= 0 || est.Total <= limit {
		return holdMemory(est), nil
	}
	if req.Force {
		Reporter(req).Logf("the estimate exceeds the memory available; running anyway (-force)")
		return holdMemory(est), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "this stage needs about %s but %s allows %s:\n%s", memest.FormatBytes(est.Total), source, memest.FormatBytes(limit), est)
	if opts := fitting(); len(opts) > 0 {
		b.WriteString("changes that would fit:\n")
		for _, o := range opts {
			fmt.Fprintf(&b, "  %s → %s\n", o.Description, memest.FormatBytes(o.Total))
		}
	} else {
		b.WriteString("no change of method, recomputation or batch shape fits; use a smaller model or a machine with more memory\n")
	}
	b.WriteString("(lathe run -force runs it anyway)")
	return nil, fmt.Errorf("not enough memory: %s", b.String())
}

var (
	memMu     sync.Mutex
	memActive int64 // bytes the running training stages are estimated to add
	memBase   int64 // the process's own memory when the first one started
	memPrev   int64 // the limit before the first one started
)

// holdMemory raises the runtime's soft memory limit by what a stage adds
// (stages training side by side in one process add up) and returns the
// release.
func holdMemory(e memest.Estimate) func() {
	memMu.Lock()
	defer memMu.Unlock()
	add := e.Total - e.Piece(memest.PieceRuntime)
	if memActive == 0 {
		memPrev = debug.SetMemoryLimit(-1)
		memBase = memest.MemoryLimit(e) - add
	}
	memActive += add
	debug.SetMemoryLimit(memBase + memActive)
	return func() {
		memMu.Lock()
		defer memMu.Unlock()
		memActive -= add
		if memActive == 0 {
			debug.SetMemoryLimit(memPrev)
		} else {
			debug.SetMemoryLimit(memBase + memActive)
		}
	}
}

// memoryFor returns the memory a stage computing on be may use: the free
// memory of a device that reports it (LATHE_MEMORY_LIMIT still caps it),
// else availableMemory.
func memoryFor(be tensor.Backend) (int64, string) {
	r, ok := be.(tensor.MemoryReporter)
	if !ok {
		return availableMemory()
	}
	free, _, err := r.DeviceMemory()
	if err != nil || free <= 0 {
		return availableMemory()
	}
	return deviceLimit(free, "free memory on "+be.Name())
}

// deviceLimit is a device's free memory, capped by LATHE_MEMORY_LIMIT.
func deviceLimit(free int64, source string) (int64, string) {
	if v := os.Getenv(MemoryLimitEnv); v != "" {
		if n, err := bytesize.Parse(v); err == nil && n > 0 && n < free {
			return n, MemoryLimitEnv
		}
	}
	return free, source
}

// availableMemory returns the memory a stage may use and where the figure
// comes from: LATHE_MEMORY_LIMIT, else the cgroup limit (v1 or v2), else
// MemAvailable plus what this process already holds.
func availableMemory() (int64, string) {
	if v := os.Getenv(MemoryLimitEnv); v != "" {
		if n, err := bytesize.Parse(v); err == nil && n > 0 {
			return n, MemoryLimitEnv
		}
	}
	mem, err := sysinfo.ReadMemory()
	switch {
	case err != nil:
		return 0, "unknown"
	case mem.CgroupLimit > 0:
		return mem.CgroupLimit, "the cgroup limit"
	case mem.Available > 0:
		return mem.Available + memest.ProcessRSS(), "available memory"
	}
	return 0, "unknown"
}

// describeMemory is the estimate's memory part.
func describeMemory(total int64) string {
	limit, source := availableMemory()
	s := fmt.Sprintf("peak memory ≈ %s (RAM; %s: %s)", memest.FormatBytes(total), source, memest.FormatBytes(limit))
	if limit > 0 && total > limit {
		s += " — does not fit, the stage will refuse to start"
	}
	return s
}

// describe is the plan's one-line estimate: peak memory and time.
func describe(g GuardInput) (string, error) {
	in, err := estimateInput(g)
	if err != nil {
		return "", err
	}
	est, err := memest.Training(in)
	if err != nil {
		return "", err
	}
	s := describeMemory(est.Total)
	if t, err := timeEstimate(g, in, true); err != nil {
		s += "; no time estimate: " + err.Error()
	} else {
		s += "; time " + t.String()
	}
	return s, nil
}

// Estimate is a fine-tuning kind's stage.Kind.Estimate: the memory model
// applied to the model artifact's config.json and the arguments.
func Estimate(valueHead, pairs bool) func(args cty.Value) (string, error) {
	return func(args cty.Value) (string, error) {
		cfg, err := ConfigFromModel(args)
		if err != nil {
			return "", err
		}
		return describe(GuardInput{Config: cfg, Args: args, ValueHead: valueHead, Pairs: pairs})
	}
}

// EstimateConfig is Estimate for a model config already known (pretrain
// from a config block).
func EstimateConfig(cfg llama.Config, args cty.Value) (string, error) {
	return describe(GuardInput{Config: cfg, Args: args})
}

// calibrator times the CPU kernels for the time estimates, once per
// machine (cached on disk, see timeest.DefaultDir).
var calibrator = sync.OnceValue(func() *timeest.Calibrator {
	return &timeest.Calibrator{Backend: cpu.New(), Machine: timeest.ThisMachine("cpu", cpu.SgemmKernel(), engineVersion()),
		Dir: timeest.DefaultDir(), Log: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "lathe: "+format+"\n", args...)
		}}
})

// engineVersion is lathe's engine version and, when the binary records
// it, its source revision: kernels change between builds.
func engineVersion() string {
	v := pipeline.EngineVersion
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				v += " " + s.Value
			}
		}
	}
	return v
}

// timeEstimate estimates the stage's time from the calibrated kernels;
// with calibrate, kernels not yet timed on this machine are timed now
// (about a second, once), else only cached timings are used.
func timeEstimate(g GuardInput, in memest.Input, calibrate bool) (timeest.Result, error) {
	args := g.Args
	st := timeest.Stage{Input: in, Objective: timeest.LM,
		Epochs: Num[int](args.GetAttr("epochs")), MaxSteps: Num[int](args.GetAttr("max_steps")),
		EvalSteps: Num[int](args.GetAttr("eval_steps"))}
	if st.Epochs == 0 && st.MaxSteps == 0 {
		st.Epochs = defaultEpochs
	}
	switch {
	case g.Pairs && g.ValueHead:
		st.Objective = timeest.Reward
	case g.Pairs:
		st.Objective = timeest.Preference
		if args.Type().HasAttribute("loss") {
			st.Reference = align.DPOConfig{Loss: args.GetAttr("loss").AsString()}.NeedsReference()
		}
	}
	read := func(attr string) *timeest.Data {
		dir := ArtifactPath(args.GetAttr(attr))
		if dir == "" {
			return nil
		}
		d, err := timeest.ReadData(dir, g.Pairs)
		if err != nil {
			return nil // not here (yet): the estimate is per step
		}
		if st.Objective == timeest.Reward {
			d.Trained = 1 // a reward model counts every token of both sides
		}
		return d
	}
	st.Train = read("data")
	if args.Type().HasAttribute("validation") {
		st.Validation = read("validation")
	}
	ops, err := timeest.Ops(st)
	if err != nil {
		return timeest.Result{}, err
	}
	t, err := calibrator().Timings(ops, calibrate)
	if err != nil {
		return timeest.Result{}, err
	}
	return timeest.Estimate(st, t)
}

// AutoBatch is batch_size's value asking for the largest micro-batch that
// fits the memory available.
const AutoBatch = "auto"

// MaxAutoBatch bounds what batch_size = "auto" picks.
const MaxAutoBatch = 64

// Resolver is a training kind's stage.Kind.Resolve: batch_size = "auto"
// becomes the largest power of two up to MaxAutoBatch, and up to the
// dataset's rows (or pairs) when known, whose estimated peak memory fits
// the memory available (LATHE_MEMORY_LIMIT, the cgroup limit or available
// memory, as the guard reads it). Powers of two keep the choice, and so
// the cache key, stable while the memory available moves a little. When
// not even one row fits it resolves to 1, and the guard then stops the
// stage with the options that would fit. config returns the model's
// config from the arguments.
func Resolver(config func(args cty.Value) (llama.Config, error), valueHead, pairs bool) func(args cty.Value, m stage.Machine) (cty.Value, string, error) {
	return func(args cty.Value, m stage.Machine) (cty.Value, string, error) {
		v := args.GetAttr("batch_size")
		if v.IsNull() || !v.IsKnown() || v.Type() != cty.String {
			return args, "", nil
		}
		if v.AsString() != AutoBatch {
			return cty.NilVal, "", fmt.Errorf("batch_size = %q: want a whole number or %q", v.AsString(), AutoBatch)
		}
		cfg, err := config(args)
		if err != nil {
			return cty.NilVal, "", fmt.Errorf("batch_size = %q: %w", AutoBatch, err)
		}
		g := GuardInput{Config: cfg, Args: withBatch(args, 1), ValueHead: valueHead, Pairs: pairs}
		in, err := estimateInput(g)
		if err != nil {
			return cty.NilVal, "", fmt.Errorf("batch_size = %q: %w", AutoBatch, err)
		}
		most, capped := MaxAutoBatch, fmt.Sprintf("; at most %d", MaxAutoBatch)
		if n := datasetUnits(ArtifactPath(args.GetAttr("data")), pairs); n > 0 && n < most {
			unit := "rows"
			if pairs {
				unit = "pairs"
			}
			most, capped = n, fmt.Sprintf("; the data has %d %s", n, unit)
		}
		limit, source := availableMemory()
		if m.DeviceMemory > 0 { // a GPU stage: the device's memory
			limit, source = deviceLimit(m.DeviceMemory, "free GPU memory")
		}
		if limit <= 0 {
			limit = 1 << 62 // unknown: nothing to fit into
		}
		b, _, err := memest.AutoBatch(in, limit, most)
		var note string
		if err != nil {
			b = 1
			note = fmt.Sprintf("batch_size: auto → 1 (not even 1 fits %s: %s)", source, memest.FormatBytes(limit))
		} else {
			b = floorPow2(b)
			if b != floorPow2(most) {
				capped = ""
			}
			note = fmt.Sprintf("batch_size: auto → %d (fits %s: %s%s)", b, source, memest.FormatBytes(limit), capped)
		}
		return withBatch(args, b), note, nil
	}
}

// floorPow2 is the largest power of two not above n >= 1.
func floorPow2(n int) int {
	for n&(n-1) != 0 {
		n &= n - 1
	}
	return n
}

// withBatch returns args with batch_size set to b.
func withBatch(args cty.Value, b int) cty.Value {
	m := args.AsValueMap()
	m["batch_size"] = cty.NumberIntVal(int64(b))
	return cty.ObjectVal(m)
}

// datasetUnits is the number of rows (pairs) a dataset's manifest lists;
// 0 when it cannot be read.
func datasetUnits(dir string, pairs bool) int {
	if dir == "" {
		return 0
	}
	m, err := data.ReadManifest(dir)
	if err != nil {
		return 0
	}
	n := int(m.SamplesWritten)
	if pairs {
		n /= 2
	}
	return n
}

// ConfigFromModel reads the model artifact's config.json: the config of a
// fine-tuning kind's Resolver.
func ConfigFromModel(args cty.Value) (llama.Config, error) {
	return llama.LoadConfig(filepath.Join(ArtifactPath(args.GetAttr("model")), "config.json"))
}

// ppoInput builds the memory model of a PPO stage from its arguments
// (stages/ppo's): the policy by the method arguments, the rollouts of
// batch_size rows of the longest prompt in the data plus max_new_tokens,
// the reward model (a model, or an adapter on the policy's base).
func ppoInput(args cty.Value) (memest.PPOInput, error) {
	cfg, err := ConfigFromModel(args)
	if err != nil {
		return memest.PPOInput{}, err
	}
	pol := memest.Input{Config: cfg, BatchSize: Num[int](args.GetAttr("batch_size")), ValueHead: true, BF16: BF16(args)}
	if err := applyMethod(&pol, args); err != nil {
		return memest.PPOInput{}, err
	}
	prompt, n, err := timeest.LongestPrompt(ArtifactPath(args.GetAttr("data")))
	if err != nil {
		return memest.PPOInput{}, fmt.Errorf("prompts: %w", err)
	}
	if n == 0 {
		return memest.PPOInput{}, fmt.Errorf("no prompts: the data's samples have no untrained prefix")
	}
	pol.SeqLen = prompt + Num[int](args.GetAttr("max_new_tokens"))
	in := memest.PPOInput{Policy: pol, PromptLen: prompt, RewardConfig: cfg}
	dir := ArtifactPath(args.GetAttr("reward"))
	if a, _ := stage.ArtifactOf(args.GetAttr("reward")); a.Kind == stage.AdapterArtifact {
		lc, tensors, err := lora.Load(dir)
		if err != nil {
			return memest.PPOInput{}, fmt.Errorf("reward model: %w", err)
		}
		mods, err := llama.AdapterModulesOf(cfg, slices.Collect(maps.Keys(tensors)))
		if err != nil {
			return memest.PPOInput{}, fmt.Errorf("reward model: %w", err)
		}
		in.RewardLoRARank, in.RewardLoRAModules = lc.Rank, mods
	} else if in.RewardConfig, err = llama.LoadConfig(filepath.Join(dir, "config.json")); err != nil {
		return memest.PPOInput{}, fmt.Errorf("reward model: %w", err)
	}
	return in, nil
}

// GuardPPO is Guard for the ppo kind: it estimates the peak memory of the
// policy's training, its reference, the reward model and the rollouts
// (memest.PPO), logs it, and refuses to start when it does not fit, with
// the breakdown and the changes that would (unless forced).
func GuardPPO(req *stage.Request, be tensor.Backend) (release func(), err error) {
	in, err := ppoInput(req.Args)
	if err != nil {
		return nil, err
	}
	est, err := memest.PPO(in)
	if err != nil {
		return nil, err
	}
	limit, source := memoryFor(be)
	Reporter(req).Logf("memory estimate: %s peak (%s: %s)", memest.FormatBytes(est.Total), source, memest.FormatBytes(limit))
	mini := Num[int](req.Args.GetAttr("mini_batch_size"))
	return decide(req, est, limit, source, func() []memest.Option { return memest.FittingPPO(in, mini, limit) })
}

// EstimatePPO is the ppo kind's stage.Kind.Estimate: its peak memory
// (GuardPPO's estimate). There is no time estimate for PPO: generation
// stops when rows do.
func EstimatePPO(args cty.Value) (string, error) {
	in, err := ppoInput(args)
	if err != nil {
		return "", err
	}
	est, err := memest.PPO(in)
	if err != nil {
		return "", err
	}
	s := describeMemory(est.Total)
	return s, nil
}
