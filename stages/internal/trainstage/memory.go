package trainstage

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/memest"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// MemoryLimitEnv overrides the memory a training stage may use (bytes, or a
// number with KiB/MiB/GiB), e.g. to test the guard or to leave room for
// other work on the machine.
const MemoryLimitEnv = "LATHE_MEMORY_LIMIT"

// GuardInput describes a training stage for the memory guard.
type GuardInput struct {
	Config    llama.Config
	Args      cty.Value // the stage's arguments (loop and method)
	ValueHead bool
	Pairs     bool
}

// estimateInput builds the memory model's input from a stage's arguments.
func estimateInput(g GuardInput) (memest.Input, error) {
	args := g.Args
	in := memest.Input{Config: g.Config, Method: memest.Full, ValueHead: g.ValueHead, Pairs: g.Pairs,
		BatchSize: Num[int](args.GetAttr("batch_size")), SeqLen: Num[int](args.GetAttr("max_seq_len")),
		GradAccum: Num[int](args.GetAttr("gradient_accumulation")), Recompute: args.GetAttr("activation_recompute").True(),
		Checkpoints: Num[int](args.GetAttr("save_steps")) > 0}
	if in.SeqLen == 0 {
		in.SeqLen = g.Config.MaxPositions
	}
	if in.SeqLen == 0 {
		in.SeqLen = 2048
	}
	if !args.Type().HasAttribute("method") {
		return in, nil // pretrain: full training
	}
	in.Method = memest.Method(MethodOf(args))
	in.Merge = args.GetAttr("merge").True()
	switch MethodOf(args) {
	case Freeze:
		pred, err := freezePredicate(args.GetAttr("freeze"), g.Config)
		if err != nil {
			return in, err
		}
		in.Trainable = pred
	case LoRA, QLoRA:
		lc, err := loraConfig(args.GetAttr("lora"))
		if err != nil {
			return in, err
		}
		if !args.GetAttr("adapter").IsNull() {
			if c, _, err := lora.Load(ArtifactPath(args.GetAttr("adapter"))); err == nil {
				lc = c
			}
		}
		kinds, err := lora.ResolveTargets(lc.Targets, llama.AdapterKinds(g.Config))
		if err != nil {
			return in, err
		}
		in.LoRARank, in.LoRAModules, in.LoRADropout = lc.Rank, llama.AdapterLinearKinds(g.Config, kinds), lc.Dropout > 0
	}
	return in, nil
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
	limit, source := availableMemory()
	rep := Reporter(req)
	rep.Logf("memory estimate: %s peak (%s: %s)", memest.FormatBytes(est.Total), source, memest.FormatBytes(limit))
	if limit <= 0 || est.Total <= limit {
		return holdMemory(est), nil
	}
	if req.Force {
		rep.Logf("the estimate exceeds the memory available; running anyway (-force)")
		return holdMemory(est), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "this stage needs about %s but %s allows %s:\n%s", memest.FormatBytes(est.Total), source, memest.FormatBytes(limit), est)
	if opts := memest.Fitting(in, limit); len(opts) > 0 {
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

// availableMemory returns the memory a stage may use and where the figure
// comes from.
func availableMemory() (int64, string) {
	if v := os.Getenv(MemoryLimitEnv); v != "" {
		if n, err := parseBytes(v); err == nil {
			return n, MemoryLimitEnv
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 {
			return n, "the cgroup limit"
		}
	}
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err == nil {
				return kb*1024 + memest.ProcessRSS(), "available memory"
			}
		}
	}
	return 0, "unknown"
}

// parseBytes reads "512MiB", "2GiB", "1.5GB" or a number of bytes.
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	mult := 1.0
	for _, u := range []struct {
		suffix string
		m      float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(rest), u.m
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("%s = %q: want a size such as 512MiB", MemoryLimitEnv, s)
	}
	return int64(f * mult), nil
}

// describe is the plan's one-line memory estimate.
func describe(g GuardInput) (string, error) {
	in, err := estimateInput(g)
	if err != nil {
		return "", err
	}
	est, err := memest.Training(in)
	if err != nil {
		return "", err
	}
	limit, source := availableMemory()
	s := fmt.Sprintf("peak memory ≈ %s (RAM; %s: %s)", memest.FormatBytes(est.Total), source, memest.FormatBytes(limit))
	if limit > 0 && est.Total > limit {
		s += " — does not fit, the stage will refuse to start"
	}
	return s, nil
}

// Estimate is a fine-tuning kind's stage.Kind.Estimate: the memory model
// applied to the model artifact's config.json and the arguments.
func Estimate(valueHead, pairs bool) func(args cty.Value) (string, error) {
	return func(args cty.Value) (string, error) {
		cfg, err := llama.LoadConfig(filepath.Join(ArtifactPath(args.GetAttr("model")), "config.json"))
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
