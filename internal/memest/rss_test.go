package memest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/train"
)

// The peak-RSS calibration runs real training in child processes (this
// test binary re-executed with rssChildEnv naming the case) and compares
// each child's peak resident set size with the estimate. The child reports
// its peak (VmHWM, the high-water mark of its own address space) as its
// last line. The child's rusage (ProcessState.SysUsage) is no good here:
// at exec Linux folds the peak of the address space the child had before
// into its ru_maxrss, and a Go child starts vfork-style in its parent's
// address space, so it reports at least the parent's peak (78 MiB once
// the package's other tests have run in it).
const (
	rssChildEnv = "LATHE_MEMEST_RSS_CHILD"
	// rssThreads pins the children's GOMAXPROCS so that the kernels'
	// per-thread scratch is the same on every machine.
	rssThreads = 2
	// rssTolerance is the acceptance bound: |estimate − measured| over
	// measured.
	rssTolerance = 0.15
)

// rssCase is one child run.
type rssCase struct {
	shape  string // testdata config: tiny or stories15M
	method Method
	// limit runs the child under MemoryLimit, as lathe's training stages
	// should; without it the child runs with the default GOGC=100.
	limit bool
	// churn makes, after the step, garbage of 1.5 times the live
	// heap in small objects and at a modest rate: what a long run's
	// batches and metrics add up to.
	churn bool
	// merge writes the merged model at the end (LoRA and QLoRA).
	merge bool
	// ppo runs a PPO step (train.PPO, as stages/ppo: policy with a value
	// head, a reference copy under full training, a reward model) instead
	// of supervised training.
	ppo bool
	// bf16 holds the linear weights as bfloat16 copies (compute_type = "bf16").
	bf16 bool
}

func (c rssCase) String() string {
	s := c.shape + "/" + string(c.method)
	if c.limit {
		s += "/limit"
	} else {
		s += "/gogc"
	}
	if c.churn {
		s += "/churn"
	}
	if c.merge {
		s += "/merge"
	}
	if c.ppo {
		s += "/ppo"
	}
	if c.bf16 {
		s += "/bf16"
	}
	return s
}

func parseRSSCase(s string) (rssCase, error) {
	f := strings.Split(s, "/")
	if len(f) < 3 || len(f) > 4 || (f[2] != "limit" && f[2] != "gogc") || (len(f) == 4 && f[3] != "churn" && f[3] != "merge" && f[3] != "ppo" && f[3] != "bf16") {
		return rssCase{}, fmt.Errorf("bad case %q (want shape/method/limit|gogc[/churn|/merge|/ppo|/bf16])", s)
	}
	c := rssCase{shape: f[0], method: Method(f[1]), limit: f[2] == "limit"}
	if len(f) == 4 {
		c.churn, c.merge, c.ppo, c.bf16 = f[3] == "churn", f[3] == "merge", f[3] == "ppo", f[3] == "bf16"
	}
	return c, nil
}

// rssInput is the training stage of a case: batch 8 of 128 tokens (tiny)
// or 256 (stories15M); LoRA rank 8 on q_proj and v_proj, as
// internal/train's fine-tuning benchmark.
func rssInput(t testing.TB, c rssCase) Input {
	in := Input{Config: loadConfig(t, c.shape), Method: c.method, BatchSize: 8, SeqLen: 128, GradAccum: 1, Threads: rssThreads}
	if c.shape == "stories15M" {
		in.SeqLen = 256
	}
	if c.method == LoRA || c.method == QLoRA {
		in.LoRARank, in.LoRAModules = 8, []string{"q_proj", "v_proj"}
	}
	in.Merge, in.BF16 = c.merge, c.bf16
	return in
}

// TestPeakRSSChild is the child process's body; it does nothing unless
// rssChildEnv is set. The case "idle" only measures the test binary.
func TestPeakRSSChild(t *testing.T) {
	spec := os.Getenv(rssChildEnv)
	switch spec {
	case "":
		t.Skip("runs as a child of TestPeakRSS")
	case "idle":
		fmt.Printf("%s%d\n", rssPeakPrefix, peakRSS(t))
		return
	}
	c, err := parseRSSCase(spec)
	if err != nil {
		t.Fatal(err)
	}
	if c.ppo {
		ppoChild(t, c)
		fmt.Printf("%s%d\n", rssPeakPrefix, peakRSS(t))
		return
	}
	in := rssInput(t, c)
	est, err := Training(in) // the baseline is this process, now
	if err != nil {
		t.Fatal(err)
	}
	if c.limit {
		debug.SetMemoryLimit(MemoryLimit(est))
	}
	m, err := llama.NewWith(in.Config, cpu.New(), options(in))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(1, 0.02); err != nil {
		t.Fatal(err)
	}
	tr := &train.Trainer{Model: m, Train: samples(in.BatchSize, in.SeqLen, in.Config.VocabSize),
		Cfg: train.Config{BatchSize: in.BatchSize, MaxSeqLen: in.SeqLen, MaxSteps: 1, LR: 1e-3, Scheduler: "constant"}}
	if c.churn {
		tr.OnStep = func(int, int) {
			churn()
		}
	}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Write the result as the stage would: the model, or the adapters.
	dir := t.TempDir()
	switch {
	case c.method == Full || c.method == Freeze:
		err = m.Save(dir, safetensors.F32)
	case c.merge:
		err = m.SaveMerged(dir, safetensors.F32)
	default:
		err = m.SaveTrainable(filepath.Join(dir, "adapter.safetensors"))
	}
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("%s%d\n", rssPeakPrefix, peakRSS(t))
}

const rssPeakPrefix = "memest peak rss: "

// peakRSS returns this process's peak resident set size (VmHWM).
func peakRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(v)
			if kb, err := strconv.ParseInt(f[0], 10, 64); err == nil && len(f) == 2 && f[1] == "kB" {
				return kb << 10
			}
		}
	}
	t.Fatalf("no VmHWM in /proc/self/status:\n%s", b)
	return 0
}

// churn allocates garbage of 1.5 times the live heap in 4 KiB objects, a
// MiB at a time with a pause after each, so that the collector paces it
// as it would a long run's trickle of garbage.
func churn() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	var keep [][]byte
	for made := uint64(0); made < 3*ms.HeapAlloc/2; made += 4096 {
		b := make([]byte, 4096)
		b[0], b[len(b)-1] = 1, 1
		keep = append(keep, b)
		if len(keep) == 256 {
			keep = keep[:0]
			time.Sleep(time.Millisecond)
		}
	}
}

// runRSSChild runs one child and returns its peak resident set size.
func runRSSChild(spec string) (int64, error) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSSChild$", "-test.v")
	cmd.Env = append(os.Environ(), rssChildEnv+"="+spec, fmt.Sprintf("GOMAXPROCS=%d", rssThreads))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("child %s: %w\n%s", spec, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, rssPeakPrefix); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("child %s: %q: %w", spec, line, err)
			}
			return n, nil
		}
	}
	return 0, fmt.Errorf("child %s did not report its peak:\n%s", spec, out)
}

// TestPeakRSS checks the estimate against the peak RSS of full, LoRA and
// QLoRA training of the tiny and stories15M shapes (stories15M not in
// -short mode), under the memory limit and under plain GOGC=100 (a short
// run makes little garbage, so both agree), and of a long run's garbage
// under the limit; it logs that long run under GOGC=100, which the
// estimate does not model, for comparison.
func TestPeakRSS(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peak RSS is read from Linux rusage (KiB)")
	}
	var cases []rssCase
	shapes := []string{"tiny"}
	if !testing.Short() {
		shapes = append(shapes, "stories15M")
	}
	for _, s := range shapes {
		for _, m := range []Method{Full, LoRA, QLoRA} {
			cases = append(cases, rssCase{shape: s, method: m, limit: true})
		}
		cases = append(cases, rssCase{shape: s, method: LoRA, limit: true, merge: true},
			rssCase{shape: s, method: LoRA, limit: true, bf16: true}, rssCase{shape: s, method: Full, limit: true, bf16: true},
			rssCase{shape: s, method: Full},
			rssCase{shape: s, method: Full, limit: true, churn: true})
	}
	cases = append(cases, rssCase{shape: "tiny", method: QLoRA, limit: true, merge: true},
		rssCase{shape: "tiny", method: Full, churn: true})
	for _, s := range shapes {
		for _, m := range []Method{Full, LoRA} {
			cases = append(cases, rssCase{shape: s, method: m, limit: true, ppo: true})
		}
	}
	baseline, err := runRSSChild("idle")
	if err != nil {
		t.Fatal(err)
	}
	// Two children at a time: each measures only itself.
	peaks, errs := make([]int64, len(cases)), make([]error, len(cases))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 2)
	for i, c := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			peaks[i], errs[i] = runRSSChild(c.String())
		}()
	}
	wg.Wait()
	var table strings.Builder
	fmt.Fprintf(&table, "baseline (test binary, idle) %s\n%-28s %10s %10s %8s\n", FormatBytes(baseline), "case", "estimate", "measured", "error")
	for i, c := range cases {
		if errs[i] != nil {
			t.Error(errs[i])
			continue
		}
		var e Estimate
		if c.ppo {
			in := ppoInput(t, c)
			in.Policy.Baseline = baseline
			e, err = PPO(in)
		} else {
			in := rssInput(t, c)
			in.Baseline = baseline
			e, err = Training(in)
		}
		if err != nil {
			t.Fatal(err)
		}
		got := peaks[i]
		rel := float64(e.Total-got) / float64(got)
		fmt.Fprintf(&table, "%-28s %10s %10s %+7.1f%%\n", c, FormatBytes(e.Total), FormatBytes(got), 100*rel)
		// A long run's garbage under GOGC=100 alone is logged, not
		// checked: that is what the memory limit is for.
		if (c.limit || !c.churn) && (rel > rssTolerance || rel < -rssTolerance) {
			t.Errorf("%s: estimate %s, measured peak RSS %s (%+.1f%%, bound ±%.0f%%)\n%s", c, FormatBytes(e.Total), FormatBytes(got), 100*rel, 100*rssTolerance, e)
		}
	}
	t.Logf("peak RSS, estimate vs measured (GOMAXPROCS=%d):\n%s", rssThreads, table.String())
}

func TestParseRSSCase(t *testing.T) {
	for _, s := range []string{"tiny/full/limit", "stories15M/qlora/gogc/churn", "tiny/lora/limit/merge"} {
		c, err := parseRSSCase(s)
		if err != nil || c.String() != s {
			t.Errorf("parseRSSCase(%q) = %v, %v", s, c, err)
		}
	}
	for _, s := range []string{"", "tiny/full", "tiny/full/never", "tiny/full/limit/spin", "a/b/limit/churn/x"} {
		if _, err := parseRSSCase(s); err == nil {
			t.Errorf("parseRSSCase(%q) accepted", s)
		}
	}
}

// ppoInput is a PPO case's stage: batch_size 8 of prompts of 32 tokens
// (tiny) or 64 (stories15M) and as many new tokens, LoRA as rssInput's;
// the reward model is a full model of the same shape.
func ppoInput(t testing.TB, c rssCase) PPOInput {
	in := rssInput(t, c)
	in.SeqLen /= 2 // prompt + new tokens: 64 (tiny) or 128 (stories15M)
	return PPOInput{Policy: in, PromptLen: in.SeqLen / 2, RewardConfig: in.Config}
}

// ppoChild runs one PPO step as stages/ppo does: the policy with its value
// head (trained by the method), the reference (a full-method copy under
// full training), a reward model with a value head; one rollout batch,
// one optimisation epoch in two mini-batches; then it writes the result.
func ppoChild(t *testing.T, c rssCase) {
	in := ppoInput(t, c)
	p := in.Policy
	p.ValueHead = true
	est, err := PPO(in)
	if err != nil {
		t.Fatal(err)
	}
	if c.limit {
		debug.SetMemoryLimit(MemoryLimit(est))
	}
	be := cpu.New()
	newModel := func(o llama.Options, seed uint64) *llama.Model {
		m, err := llama.NewWith(p.Config, be, o)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.InitRandom(seed, 0.02); err != nil {
			t.Fatal(err)
		}
		return m
	}
	policy := newModel(options(p), 1)
	defer policy.Free()
	var reference *llama.Model
	if p.Method == Full {
		reference = newModel(llama.Options{}, 1)
		defer reference.Free()
	}
	reward := newModel(llama.Options{Trainable: func(string) bool { return false }, ValueHead: true}, 2)
	defer reward.Free()
	prompts := make([][]int32, 2*p.BatchSize)
	for i, s := range samples(len(prompts), in.PromptLen, p.Config.VocabSize) {
		for _, tok := range s.Tokens {
			prompts[i] = append(prompts[i], int32(tok))
		}
	}
	tr := &train.PPO{Policy: policy, Reference: reference, Scorer: train.ValueScorer{Model: reward}, Prompts: prompts,
		Cfg: train.PPOConfig{Steps: 2, BatchSize: p.BatchSize, MiniBatch: p.BatchSize / 2, PPOEpochs: 1,
			MaxNewTokens: p.SeqLen - in.PromptLen, LR: 1e-5, Seed: 1}}
	if _, err := tr.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if p.Method == Full {
		err = policy.Save(dir, safetensors.F32)
	} else {
		err = policy.SaveTrainable(filepath.Join(dir, "adapter.safetensors"))
	}
	if err != nil {
		t.Fatal(err)
	}
}
