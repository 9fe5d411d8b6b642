package train

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/tensor"
)

func tinyModel(t *testing.T, modelType string, seed uint64, opts ...llama.Options) *llama.Model {
	t.Helper()
	js := fmt.Sprintf(`{"model_type": %q, "vocab_size": 32, "hidden_size": 16, "intermediate_size": 32,
		"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 64}`, modelType)
	cfg, err := llama.ParseConfig([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	var o llama.Options
	if len(opts) > 0 {
		o = opts[0]
	}
	m, err := llama.NewWith(cfg, cpu.New(), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InitRandom(seed, 0.1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	return m
}

func params(t *testing.T, m *llama.Model) []byte {
	t.Helper()
	b := make([]byte, m.ParamBuffer().Bytes())
	if err := tensor.DownloadBytes(m.Backend(), b, m.ParamBuffer()); err != nil {
		t.Fatal(err)
	}
	return b
}

func grads(t *testing.T, m *llama.Model) []float32 {
	t.Helper()
	g := make([]float32, m.GradBuffer().Len())
	if err := tensor.DownloadF32(m.Backend(), g, m.GradBuffer()); err != nil {
		t.Fatal(err)
	}
	return g
}

// corpus returns n rows of a repeating token pattern with varied lengths
// and the first token of each row untrained.
func corpus(n int) SliceSamples {
	var s SliceSamples
	for i := range n {
		L := 8 + i%5
		row := data.Sample{}
		for j := range L {
			row.Tokens = append(row.Tokens, uint32(1+(i+j)%7))
			row.Mask = append(row.Mask, j > 0)
		}
		s = append(s, row)
	}
	return s
}

func TestSchedule(t *testing.T) {
	for _, tc := range []struct {
		s    Schedule
		want []float64 // lr at steps 0..len-1
	}{
		{Schedule{Kind: Constant, LR: 1, TotalSteps: 4}, []float64{1, 1, 1, 1}},
		{Schedule{Kind: Constant, LR: 1, WarmupSteps: 2, TotalSteps: 4}, []float64{0, 0.5, 1, 1}},
		{Schedule{Kind: Linear, LR: 1, TotalSteps: 4}, []float64{1, 0.75, 0.5, 0.25, 0}},
		{Schedule{Kind: Linear, LR: 2, WarmupSteps: 1, TotalSteps: 5}, []float64{0, 2, 1.5, 1, 0.5, 0}},
		{Schedule{Kind: Cosine, LR: 1, TotalSteps: 4}, []float64{1, 0.5 * (1 + math.Cos(math.Pi/4)), 0.5, 0.5 * (1 + math.Cos(3*math.Pi/4)), 0}},
		// warmup_ratio 0.25 of 8 steps = 2 warmup steps
		{Schedule{Kind: Cosine, LR: 1, WarmupRatio: 0.25, TotalSteps: 8}, []float64{0, 0.5, 1, 0.5 * (1 + math.Cos(math.Pi/6)), 0.75, 0.5, 0.25, 0.5 * (1 + math.Cos(5*math.Pi/6))}},
		// ratio rounds up: ceil(0.1*15) = 2
		{Schedule{Kind: Linear, LR: 1, WarmupRatio: 0.1, TotalSteps: 15}, []float64{0, 0.5, 1, 12.0 / 13}},
		{Schedule{Kind: Linear, LR: 1, TotalSteps: 2}, []float64{1, 0.5, 0, 0}}, // never negative past the end
	} {
		for step, want := range tc.want {
			if got := tc.s.At(step); math.Abs(got-want) > 1e-12 {
				t.Errorf("%+v: At(%d) = %v, want %v", tc.s, step, got, want)
			}
		}
	}
	for _, bad := range []Schedule{{Kind: "step", LR: 1}, {Kind: Cosine, LR: -1}, {Kind: Linear, LR: 1, WarmupRatio: 1.5}} {
		if bad.Validate() == nil {
			t.Errorf("%+v: Validate accepted it", bad)
		}
	}
}

func TestNoDecayGroups(t *testing.T) {
	m := tinyModel(t, "qwen2", 1) // qwen2: q/k/v biases
	decay, noDecay := Groups(m)
	if len(decay)+len(noDecay) != len(m.Params) || len(noDecay) == 0 {
		t.Fatalf("groups: %d decay, %d no-decay of %d", len(decay), len(noDecay), len(m.Params))
	}
	for _, p := range noDecay {
		if !strings.HasSuffix(p.Name, "norm.weight") && !strings.HasSuffix(p.Name, ".bias") {
			t.Errorf("no-decay group holds %s", p.Name)
		}
	}
	for _, p := range decay {
		if strings.HasSuffix(p.Name, "norm.weight") || strings.HasSuffix(p.Name, ".bias") {
			t.Errorf("decay group holds %s", p.Name)
		}
	}
	// With zero gradients an AdamW step only decays: decay-group weights
	// scale by 1-lr·wd, no-decay weights (norms = 1, biases) stay.
	before := map[string][]float32{}
	for _, p := range m.Params {
		v := make([]float32, p.Len())
		tensor.DownloadF32(m.Backend(), v, p.W)
		before[p.Name] = v
	}
	opt, err := NewAdamW(m, 0.9, 0.999, 1e-8, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	defer opt.Free()
	m.ZeroGrad()
	if err := opt.Update(0.1); err != nil {
		t.Fatal(err)
	}
	for _, p := range m.Params {
		v := make([]float32, p.Len())
		tensor.DownloadF32(m.Backend(), v, p.W)
		f := float32(1 - 0.1*0.5)
		if p.NoDecay {
			f = 1
		}
		for i := range v {
			if want := before[p.Name][i] * f; math.Abs(float64(v[i]-want)) > 1e-7 {
				t.Fatalf("%s[%d] = %v after a zero-gradient step, want %v", p.Name, i, v[i], want)
			}
		}
	}
}

func TestMakeBatch(t *testing.T) {
	rows := []data.Sample{
		{Tokens: []uint32{5, 6, 7, 8}, Mask: []bool{false, false, true, true}},
		{Tokens: []uint32{1, 2, 3, 4, 9}, Mask: []bool{true, true, true, true, true}, SegmentIDs: []uint32{0, 0, 1, 1, 1}},
	}
	b, n := MakeBatch(rows, 0)
	want := &llama.Batch{B: 2, T: 5,
		Tokens:    []int32{5, 6, 7, 8, 0, 1, 2, 3, 4, 9},
		Targets:   []int32{-1, 7, 8, -1, -1, 2, -1, 4, 9, -1},
		Positions: []int32{0, 1, 2, 3, 4, 0, 1, 0, 1, 2},
		Segments:  []int32{0, 0, 0, 0, 1, 0, 0, 1, 1, 1},
	}
	if fmt.Sprint(b) != fmt.Sprint(want) || n != 5 {
		t.Errorf("MakeBatch = %v (%d trained)\nwant        %v (5)", b, n, want)
	}
	b, n = MakeBatch(rows[:1], 3)
	if b.T != 3 || fmt.Sprint(b.Targets) != "[-1 7 -1]" || b.Segments != nil || n != 1 {
		t.Errorf("truncated MakeBatch = %v (%d)", b, n)
	}
}

func baseCfg() Config {
	return Config{BatchSize: 4, GradAccum: 1, MaxSteps: 6, LR: 1e-2, Scheduler: Cosine, WarmupSteps: 1,
		WeightDecay: 0.1, MaxGradNorm: 1, Seed: 3, SaveSteps: 2, SaveTotalLimit: 2}
}

func TestAccumulationEquivalence(t *testing.T) {
	data := corpus(8)
	run := func(bs, ga int) (float64, int, []float32) {
		m := tinyModel(t, "llama", 7)
		cfg := baseCfg()
		cfg.BatchSize, cfg.GradAccum = bs, ga
		tr := &Trainer{Model: m, Train: data, Cfg: cfg}
		if err := tr.defaults(); err != nil {
			t.Fatal(err)
		}
		tr.cur = newCursor(data.Len(), bs, 0, cfg.Seed)
		loss, n, _, _, ok, err := tr.accumulate()
		if err != nil || !ok {
			t.Fatal(ok, err)
		}
		return loss, n, grads(t, m)
	}
	l1, n1, g1 := run(4, 1)
	for _, split := range [][2]int{{2, 2}, {1, 4}} {
		l2, n2, g2 := run(split[0], split[1])
		if n1 != n2 || math.Abs(l1-l2) > 1e-5 {
			t.Errorf("B=%d×%d: loss %v over %d tokens, one batch: %v over %d", split[0], split[1], l2, n2, l1, n1)
		}
		var worst float64
		for i := range g1 {
			worst = math.Max(worst, math.Abs(float64(g1[i]-g2[i]))/(1e-4+math.Abs(float64(g1[i]))))
		}
		if worst > 1e-3 {
			t.Errorf("B=%d×%d: gradients differ from one batch by relative %g", split[0], split[1], worst)
		}
	}
}

// TestResumeBitIdentical, for float32 weights and for bfloat16 working
// copies (whose restore rounds them from the checkpoint's masters).
func TestResumeBitIdentical(t *testing.T) {
	for _, bf16 := range []bool{false, true} {
		t.Run(fmt.Sprintf("bf16=%v", bf16), func(t *testing.T) { testResume(t, llama.Options{BF16: bf16, BF16Activations: bf16}) })
	}
}

func testResume(t *testing.T, o llama.Options) {
	data, val := corpus(10), corpus(3)
	straight := tinyModel(t, "llama", 11, o)
	cfg := baseCfg()
	cfg.MaxSteps, cfg.EvalSteps = 0, 2
	cfg.Epochs = 3 // 3 micro-batches per epoch: 9 steps, crossing epochs
	cfg.CheckpointDir = t.TempDir()
	tr := &Trainer{Model: straight, Train: data, Eval: val, Cfg: cfg}
	want, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want.Steps != 9 {
		t.Fatalf("steps = %d, want 9", want.Steps)
	}

	// Interrupted after step 5 (between saves: the cancellation saves),
	// then resumed by a fresh trainer on a freshly initialised model.
	cfg.CheckpointDir = t.TempDir()
	m := tinyModel(t, "llama", 11, o)
	ctx, cancel := context.WithCancel(context.Background())
	tr = &Trainer{Model: m, Train: data, Eval: val, Cfg: cfg, OnStep: func(step, total int) {
		if step == 5 {
			cancel()
		}
	}}
	if _, err := tr.Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	steps, _, _ := Checkpoints(cfg.CheckpointDir)
	if fmt.Sprint(steps) != "[4 5]" {
		t.Fatalf("checkpoints after the interruption: %v, want [4 5] (save_total_limit 2)", steps)
	}
	m2 := tinyModel(t, "llama", 99, o) // different init: the checkpoint must overwrite it
	tr = &Trainer{Model: m2, Train: data, Eval: val, Cfg: cfg}
	got, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got.ResumedFrom != 5 {
		t.Errorf("resumed from %d, want 5", got.ResumedFrom)
	}
	if !bytes.Equal(params(t, straight), params(t, m2)) {
		t.Error("resumed run's weights differ from the uninterrupted run's")
	}
	if fmt.Sprint(got.History) != fmt.Sprint(want.History) || got.Tokens != want.Tokens {
		t.Errorf("history after resume:\n%v\nwant\n%v", got.History, want.History)
	}
}

func TestLossFalls(t *testing.T) {
	m := tinyModel(t, "llama", 5)
	cfg := baseCfg()
	cfg.MaxSteps, cfg.LR, cfg.Scheduler, cfg.SaveSteps = 40, 3e-2, Constant, 0
	res, err := (&Trainer{Model: m, Train: corpus(16), Cfg: cfg}).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	first, last := res.History.Train[0].Loss, res.History.Train[len(res.History.Train)-1].Loss
	if !(last < 0.3*first) {
		t.Errorf("loss %v -> %v: want it to fall below 30%% on a repetitive corpus", first, last)
	}
	img, err := LossPNG(res.History)
	if err != nil {
		t.Fatal(err)
	}
	pic, err := png.Decode(bytes.NewReader(img))
	if err != nil || pic.Bounds().Dx() != 640 {
		t.Fatalf("loss.png: %v %v", err, pic)
	}
}

func TestNaNStop(t *testing.T) {
	m := tinyModel(t, "llama", 5)
	cfg := baseCfg()
	cfg.CheckpointDir = t.TempDir()
	tr := &Trainer{Model: m, Train: corpus(16), Cfg: cfg, OnStep: func(step, total int) {
		if step == 3 { // poison the weights: step 4's loss is NaN
			nan := make([]float32, m.Params[0].Len())
			for i := range nan {
				nan[i] = float32(math.NaN())
			}
			tensor.UploadF32(m.Backend(), m.Params[0].W, nan)
		}
	}}
	_, err := tr.Run(context.Background())
	want := "diverged at step 4 (loss NaN"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "last good checkpoint: "+filepath.Join(cfg.CheckpointDir, "checkpoint-2")) {
		t.Fatalf("err = %v, want %q naming checkpoint-2", err, want)
	}
}

func TestOpenDataset(t *testing.T) {
	dir := t.TempDir()
	rows := corpus(5)
	var shards []data.ShardInfo
	for i, part := range [][]data.Sample{rows[:3], rows[3:]} {
		w := data.NewShardWriter(0)
		for _, s := range part {
			if err := w.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		si, err := w.WriteFile(filepath.Join(dir, fmt.Sprintf("train-%05d.shard", i)))
		if err != nil {
			t.Fatal(err)
		}
		si.File = filepath.Base(si.File)
		shards = append(shards, si)
	}
	man := fmt.Sprintf(`{"shard_version": 1, "kind": "pretrain", "splits": {"train": {"samples": 5, "shards": [%s, %s]}}}`, jsonOf(t, shards[0]), jsonOf(t, shards[1]))
	if err := os.WriteFile(filepath.Join(dir, data.ManifestName), []byte(man), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := OpenDataset(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Len() != 5 {
		t.Fatalf("Len = %d", d.Len())
	}
	for i := range 5 {
		if got := d.Sample(i); fmt.Sprint(got.Tokens) != fmt.Sprint(rows[i].Tokens) {
			t.Errorf("Sample(%d) = %v, want %v", i, got.Tokens, rows[i].Tokens)
		}
	}
}

func TestThreadCountIndependent(t *testing.T) {
	for _, bf16 := range []bool{false, true} {
		t.Run(fmt.Sprintf("bf16=%v", bf16), func(t *testing.T) { testThreadCount(t, llama.Options{BF16: bf16, BF16Activations: bf16}) })
	}
}

func testThreadCount(t *testing.T, o llama.Options) {
	var ref []byte
	for _, procs := range []int{1, 2} {
		prev := runtime.GOMAXPROCS(procs)
		m := tinyModel(t, "llama", 21, o)
		cfg := baseCfg()
		cfg.MaxSteps, cfg.GradAccum, cfg.SaveSteps = 3, 2, 0
		_, err := (&Trainer{Model: m, Train: corpus(12), Cfg: cfg}).Run(context.Background())
		runtime.GOMAXPROCS(prev)
		if err != nil {
			t.Fatal(err)
		}
		if p := params(t, m); ref == nil {
			ref = p
		} else if !bytes.Equal(ref, p) {
			t.Errorf("GOMAXPROCS=%d: weights differ from GOMAXPROCS=1", procs)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.BatchSize = 0 }, "batch_size 0"},
		{func(c *Config) { c.MaxSteps, c.Epochs = 0, 0 }, "set epochs or max_steps"},
		{func(c *Config) { c.MaxSeqLen = 65 }, "exceeds the model's max_position_embeddings 64"},
		{func(c *Config) { c.Scheduler = "step" }, `lr_scheduler "step"`},
	} {
		cfg := baseCfg()
		tc.edit(&cfg)
		_, err := (&Trainer{Model: tinyModel(t, "llama", 1), Train: corpus(4), Cfg: cfg}).Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("err = %v, want %q", err, tc.want)
		}
	}
}

// TestAdamWRuns: adjacent parameters of one group share a kernel call, the
// runs cover every trainable element once, in the moments' layout, and a
// step through the runs equals a step parameter by parameter.
func TestAdamWRuns(t *testing.T) {
	m := tinyModel(t, "qwen2", 3)
	params := m.Trainable()
	runs := adamRuns(params)
	if len(runs) >= len(params) {
		t.Errorf("%d runs for %d parameters: nothing merged", len(runs), len(params))
	}
	off := 0
	for _, r := range runs {
		if r.off != off || r.w.Len() != r.grad.Len() {
			t.Fatalf("run at %d: off %d, %d weights, %d gradients", off, r.off, r.w.Len(), r.grad.Len())
		}
		off += r.w.Len()
	}
	if off != m.NumTrainable() {
		t.Fatalf("runs cover %d elements, want %d", off, m.NumTrainable())
	}

	// Two identical models and gradients: one step through the runs, one
	// parameter by parameter.
	step := func(perParam bool) []float32 {
		m := tinyModel(t, "qwen2", 3)
		batch := randomTokens(2, 8, 32)
		if _, err := m.ForwardBackward(batch); err != nil {
			t.Fatal(err)
		}
		o, err := NewAdamW(m, 0.9, 0.95, 1e-8, 0.1)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Free()
		if perParam {
			o.runs = o.runs[:0]
			off := 0
			for _, p := range m.Trainable() {
				o.runs = append(o.runs, adamRun{w: p.W, grad: p.Grad, off: off, noDecay: p.NoDecay})
				off += p.Len()
			}
		}
		if err := o.Update(1e-2); err != nil {
			t.Fatal(err)
		}
		var all []float32
		for _, p := range m.Trainable() {
			w := make([]float32, p.Len())
			if err := tensor.DownloadF32(m.Backend(), w, p.W); err != nil {
				t.Fatal(err)
			}
			all = append(all, w...)
		}
		return all
	}
	runs1, each := step(false), step(true)
	for i := range runs1 {
		if math.Float32bits(runs1[i]) != math.Float32bits(each[i]) {
			t.Fatalf("weight %d: %v through the runs, %v parameter by parameter", i, runs1[i], each[i])
		}
	}
}
