package evaluate

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/infer"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/textmetrics"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// loadRef loads a model the plain way for the independent computations:
// the model with the adapter's LoRA pairs (unmerged) and a value head from
// headDir when it is not "".
func loadRef(t *testing.T, model, adapter, headDir string) *llama.Model {
	t.Helper()
	opts := llama.Options{ValueHead: headDir != ""}
	var tensors map[string]lora.Tensor
	if adapter != "" {
		lc, ts, err := lora.Load(adapter)
		if err != nil {
			t.Fatal(err)
		}
		var mods []string
		for n := range ts {
			if m, ok := strings.CutSuffix(n, llama.LoRAASuffix); ok {
				mods = append(mods, m)
			}
		}
		opts.LoRA = &llama.LoRAOptions{Modules: mods, Rank: lc.Rank, Scale: float32(lc.Alpha / float64(lc.Rank))}
		tensors = ts
	}
	m, err := llama.LoadWith(model, cpu.New(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Free)
	for n, v := range tensors {
		if err := m.SetParamValues(n, v.Data); err != nil {
			t.Fatal(err)
		}
	}
	if headDir != "" {
		w, b, err := lora.LoadValueHead(headDir)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.SetParamValues(llama.ValueHeadWeight, w); err != nil {
			t.Fatal(err)
		}
		if err := m.SetParamValues(llama.ValueHeadBias, []float32{b}); err != nil {
			t.Fatal(err)
		}
	}
	return m
}

// logProbs returns log p(ids[t+1] | ids[:t+1]) for every t, by a log-softmax
// in float64 over m.Logits of the sequence alone.
func logProbs(t *testing.T, m *llama.Model, ids []int32) []float64 {
	t.Helper()
	logits, err := m.Logits(&llama.Batch{B: 1, T: len(ids), Tokens: ids})
	if err != nil {
		t.Fatal(err)
	}
	V := m.Cfg.VocabSize
	out := make([]float64, len(ids)-1)
	for p := range out {
		row := logits[p*V : (p+1)*V]
		mx := math.Inf(-1)
		for _, x := range row {
			mx = math.Max(mx, float64(x))
		}
		var s float64
		for _, x := range row {
			s += math.Exp(float64(x) - mx)
		}
		out[p] = float64(row[ids[p+1]]) - mx - math.Log(s)
	}
	return out
}

func approx(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }

func TestLossMatchesLogSoftmax(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ name, adapter string }{{"base", ""}, {"adapter", f.adapter}} {
		t.Run(tc.name, func(t *testing.T) {
			src := "model = base\ndata = sft_val\nbatch_size = 3\n"
			if tc.adapter != "" {
				src += "adapter = adapter\n"
			}
			_, got := runEval(t, src, f.vars, testdata(t))
			if keysOf(got) != "eval_tokens,loss,perplexity" {
				t.Fatalf("metrics %v", got)
			}
			ref := loadRef(t, f.model, tc.adapter, "")
			ds, err := train.OpenDataset(f.sftVal)
			if err != nil {
				t.Fatal(err)
			}
			defer ds.Close()
			var sum float64
			n := 0
			for i := range ds.Len() {
				s := ds.Sample(i)
				ids := make([]int32, len(s.Tokens))
				for j, id := range s.Tokens {
					ids[j] = int32(id)
				}
				lp := logProbs(t, ref, ids)
				for p := range lp {
					if s.Mask[p+1] {
						sum -= lp[p]
						n++
					}
				}
			}
			want := sum / float64(n)
			t.Logf("%d samples, %d tokens: loss %.6f (independent %.6f)", ds.Len(), n, got["loss"], want)
			if int(got["eval_tokens"]) != n || !approx(got["loss"], want, 1e-5) || !approx(got["perplexity"], math.Exp(want), 1e-5) {
				t.Errorf("got %v, want loss %v perplexity %v over %d tokens", got, want, math.Exp(want), n)
			}
		})
	}
}

func TestRewardPairsMatchValues(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ name, src, adapter, head string }{
		{"model head", "model = rm\n", "", f.rm},
		{"adapter head", "model = base\nadapter = adapter\n", f.adapter, f.adapter},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The training split has more pairs than the validation split:
			// accuracy is not trivially 0 or 1.
			_, got := runEval(t, tc.src+"pairs = prefs_train\nbatch_size = 3\n", f.vars, testdata(t))
			ref := loadRef(t, f.model, tc.adapter, tc.head)
			ds, err := train.OpenPairs(trainstagePath(f.vars["prefs_train"]))
			if err != nil {
				t.Fatal(err)
			}
			defer ds.Close()
			score := func(s data.Sample) float64 {
				ids := make([]int32, len(s.Tokens))
				for j, id := range s.Tokens {
					ids[j] = int32(id)
				}
				v, err := ref.Values(&llama.Batch{B: 1, T: len(ids), Tokens: ids})
				if err != nil {
					t.Fatal(err)
				}
				return float64(v[len(ids)-1])
			}
			n := ds.Len() / 2
			correct, margin, minGap := 0, 0.0, math.Inf(1)
			for k := range n {
				c, r := score(ds.Sample(2*k)), score(ds.Sample(2*k+1))
				if c > r {
					correct++
				}
				margin += c - r
				minGap = math.Min(minGap, math.Abs(c-r))
			}
			acc := float64(correct) / float64(n)
			t.Logf("%d pairs: accuracy %.4f margin %.6f (independent %.4f %.6f), smallest |gap| %.2g", n, got["reward_accuracy"], got["reward_margin"], acc, margin/float64(n), minGap)
			if minGap < 1e-4 {
				t.Fatalf("a pair's scores are within %g: the fixture cannot tell the sides apart reliably", minGap)
			}
			if got["reward_accuracy"] != acc || int(got["reward_pairs"]) != n || !approx(got["reward_margin"], margin/float64(n), 1e-4) {
				t.Errorf("got %v, want accuracy %v margin %v over %d pairs", got, acc, margin/float64(n), n)
			}
			if acc == 0 || acc == 1 {
				t.Errorf("accuracy %v: the fixture should mix right and wrong pairs", acc)
			}
		})
	}
}

func trainstagePath(v cty.Value) string {
	a, _ := stage.ArtifactOf(v)
	return a.Path
}

func readMC(t *testing.T, req *stage.Request) []ChoicePrediction {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(req.OutputDir("report"), MCPredictionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []ChoicePrediction
	for _, ln := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var p ChoicePrediction
		if err := json.Unmarshal(ln, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

// TestChoicesMatchLogits checks the multiple-choice scoring against the
// model's logits: the prompt text is built here from the question, the
// conversation rendered by the engine, and each letter's log-probability
// computed by a log-softmax over m.Logits of the prompt and that letter.
func TestChoicesMatchLogits(t *testing.T) {
	f := setup(t)
	type q struct {
		text    string
		choices []string
		answer  string
	}
	questions := []q{
		{"What is the capital of France?", []string{"Berlin", "Paris", "Rome", "Madrid"}, "B"},
		{"Which planet is known as the red planet?", []string{"Venus", "Mars", "Jupiter", "Saturn"}, "B"},
		{"How many legs does a spider have?", []string{"six", "eight", "ten"}, "B"},
		{"Which gas do plants take in?", []string{"oxygen", "nitrogen", "carbon dioxide", "helium"}, "C"},
		{"2 + 2 = ?", []string{"3", "4", "5", "22"}, "B"},
		{"Water boils at sea level at", []string{"90 C", "100 C"}, "B"},
	}
	shots := []q{
		{"What color is the sky on a clear day?", []string{"green", "blue", "red", "black"}, "B"},
		{"How many days are in a week?", []string{"five", "six", "seven", "eight"}, "C"},
	}
	promptText := func(x q) string {
		s := x.text
		for i, c := range x.choices {
			s += "\n" + string(rune('A'+i)) + ". " + c
		}
		return s + "\nAnswer:"
	}
	for _, tc := range []struct {
		name, src, adapter string
		shots              []q
		system             string
	}{
		{"zero-shot", "model = base\nchoices {\n  path = \"mc.jsonl\"\n  template = \"default\"\n}\n", "", nil, ""},
		{"two-shot adapter system", "model = base\nadapter = adapter\nchoices {\n  path = \"mc.jsonl\"\n  dev = \"mc_dev.json\"\n  k_shot = 2\n  system = \"Answer with a letter.\"\n}\n", f.adapter, shots, "Answer with a letter."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, got := runEval(t, tc.src, f.vars, testdata(t))
			preds := readMC(t, req)
			if len(preds) != len(questions) || int(got["mc_questions"]) != len(questions) {
				t.Fatalf("%d predictions, metrics %v", len(preds), got)
			}
			ref := loadRef(t, f.model, tc.adapter, "")
			e, err := infer.Open(infer.Config{Model: f.model, Template: "default"})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			correct := 0
			for i, x := range questions {
				var turns []data.Message
				for _, s := range tc.shots {
					turns = append(turns, data.Message{Role: data.RoleUser, Content: promptText(s)}, data.Message{Role: data.RoleAssistant, Content: s.answer})
				}
				turns = append(turns, data.Message{Role: data.RoleUser, Content: promptText(x)})
				prompt, err := e.PromptIDs(tc.system, turns)
				if err != nil {
					t.Fatal(err)
				}
				best, second := -1, -1
				lls := make([]float64, len(x.choices))
				for c := range x.choices {
					ids := append([]int32(nil), prompt...)
					letter := e.Tok.Encode(string(rune('A'+c)), false)
					for _, id := range letter {
						ids = append(ids, int32(id))
					}
					lp := logProbs(t, ref, ids)
					for j := range letter {
						lls[c] += lp[len(prompt)-1+j]
					}
					switch {
					case best < 0 || lls[c] > lls[best]:
						best, second = c, best
					case second < 0 || lls[c] > lls[second]:
						second = c
					}
				}
				p := preds[i]
				for c := range lls {
					if !approx(p.LogLik[c], lls[c], 1e-4) {
						t.Errorf("question %d choice %d: log-likelihood %v, independent %v", i, c, p.LogLik[c], lls[c])
					}
				}
				if lls[best]-lls[second] < 1e-4 {
					t.Fatalf("question %d: the two best choices are within %g: the fixture cannot decide", i, lls[best]-lls[second])
				}
				want := string(rune('A' + best))
				if p.Predict != want || p.Answer != x.answer || p.Correct != (want == x.answer) || !strings.HasPrefix(p.Source, "mc.jsonl:") {
					t.Errorf("question %d: prediction %+v, want predict %s answer %s", i, p, want, x.answer)
				}
				if want == x.answer {
					correct++
				}
			}
			if acc := float64(correct) / float64(len(questions)); got["mc_accuracy"] != acc {
				t.Errorf("mc_accuracy %v, want %v", got["mc_accuracy"], acc)
			}
			t.Logf("accuracy %v", got["mc_accuracy"])
		})
	}
}

// trainModel fully fine-tunes the fixture's model on samples (a few
// steps) and saves it with the tokenizer.
func trainModel(t *testing.T, f *fixture, samples train.SliceSamples, steps int) string {
	t.Helper()
	m, err := llama.Load(f.model, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	tr := &train.Trainer{Model: m, Train: samples, Cfg: train.Config{BatchSize: 4, MaxSteps: steps, LR: 1e-2, Scheduler: train.Constant, Seed: 1}}
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	h := res.History.Train
	t.Logf("trained %d steps: loss %.3f -> %.3f", steps, h[0].Loss, h[len(h)-1].Loss)
	dir := filepath.Join(t.TempDir(), "trained")
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	if err := copyTokenizer(f.tok, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sample is a prompt (not trained) followed by an answer (trained).
func sample(prompt []int32, answer []int) data.Sample {
	var s data.Sample
	for _, id := range prompt {
		s.Tokens = append(s.Tokens, uint32(id))
		s.Mask = append(s.Mask, false)
	}
	for _, id := range answer {
		s.Tokens = append(s.Tokens, uint32(id))
		s.Mask = append(s.Mask, true)
	}
	return s
}

// TestChoicesAlwaysB trains the tiny model (full fine-tuning, a few steps)
// to answer "B" to every question; it must then score 1.0 on questions
// whose answer is B and 0.0 on questions whose answer is A.
func TestChoicesAlwaysB(t *testing.T) {
	f := setup(t)
	dir := testdata(t)
	e, err := infer.Open(infer.Config{Model: f.model, Template: "default"})
	if err != nil {
		t.Fatal(err)
	}
	var samples train.SliceSamples
	for _, file := range []string{"mc_b.json", "mc_a.csv", "mc.jsonl"} {
		qs, err := ReadQuestions(filepath.Join(dir, file), file)
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			prompt, err := e.PromptIDs("", []data.Message{{Role: data.RoleUser, Content: q.Prompt()}})
			if err != nil {
				t.Fatal(err)
			}
			samples = append(samples, sample(prompt, e.Tok.Encode("B", false)))
		}
	}
	e.Close()
	trained := trainModel(t, f, samples, 30)
	vars := withVars(f.vars, map[string]cty.Value{"trained": art(stage.ModelArtifact, trained)})
	for _, tc := range []struct {
		file string
		want float64
	}{{"mc_b.json", 1}, {"mc_a.csv", 0}} {
		req, got := runEval(t, "model = trained\nchoices {\n  path = \""+tc.file+"\"\n  template = \"default\"\n}\n", vars, dir)
		if got["mc_accuracy"] != tc.want || got["mc_questions"] != 4 {
			t.Errorf("%s: metrics %v, want mc_accuracy %v over 4 questions", tc.file, got, tc.want)
		}
		for _, p := range readMC(t, req) {
			if p.Predict != "B" {
				t.Errorf("%s: %+v, want the prediction B", tc.file, p)
			}
		}
	}
}

func readPredictions(t *testing.T, req *stage.Request) []Prediction {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(req.OutputDir("report"), PredictionsFile))
	if err != nil {
		t.Fatal(err)
	}
	var out []Prediction
	for _, ln := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var p Prediction
		if err := json.Unmarshal(ln, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func TestGenerate(t *testing.T) {
	f := setup(t)
	src := `
model = trained
generate {
  path           = "generate.json"
  replace        = { "{{name}}" = "Ada", "{{author}}" = "Lovelace Labs" }
  template       = "default"
  max_new_tokens = 8
  limit          = LIMIT
}
batch_size = 2
`
	labels := []string{"Hi there! I am Ada, an AI assistant.", "I am Ada, made by Lovelace Labs.", "My name is Ada.", "bonjour", "42"}
	prompts := []string{"hi", "who are you?", "what is your name", "Translate to French\ngood morning", "Say a number"}
	// A model that learnt the answers (with the end-of-text token), so
	// that the scores are neither all 0 nor all 100: max_new_tokens cuts
	// the longer answers.
	e, err := infer.Open(infer.Config{Model: f.model, Template: "default"})
	if err != nil {
		t.Fatal(err)
	}
	eos, ok := e.Tok.TokenToID("<|endoftext|>")
	if !ok {
		t.Fatal("no <|endoftext|> token")
	}
	var samples train.SliceSamples
	for i := range labels {
		prompt, err := e.PromptIDs("", []data.Message{{Role: data.RoleUser, Content: prompts[i]}})
		if err != nil {
			t.Fatal(err)
		}
		samples = append(samples, sample(prompt, append(e.Tok.Encode(labels[i], false), eos)))
	}
	e.Close()
	trained := trainModel(t, f, samples, 60)
	vars := withVars(f.vars, map[string]cty.Value{"trained": art(stage.ModelArtifact, trained)})
	e, err = infer.Open(infer.Config{Model: trained, Template: "default"})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, limit := range []int{0, 3} {
		req, got := runEval(t, strings.Replace(src, "LIMIT", string(rune('0'+limit)), 1), vars, testdata(t))
		preds := readPredictions(t, req)
		n := len(labels)
		if limit > 0 {
			n = limit
		}
		if len(preds) != n || int(got["predict_samples"]) != n {
			t.Fatalf("limit %d: %d predictions, metrics %v", limit, len(preds), got)
		}
		var ps, ls []string
		for i, p := range preds {
			turns := []data.Message{{Role: data.RoleUser, Content: prompts[i]}}
			want, err := e.Chat(context.Background(), "", turns, infer.Options{MaxNewTokens: 8}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ids, _ := e.PromptIDs("", turns)
			plain := make([]int, len(ids))
			for j, id := range ids {
				plain[j] = int(id)
			}
			if p.Label != labels[i] || p.Predict != want.Text || p.Prompt != e.Tok.Decode(plain, true) {
				t.Errorf("row %d: %+v, want label %q predict %q", i, p, labels[i], want.Text)
			}
			ps, ls = append(ps, p.Predict), append(ls, p.Label)
		}
		s, err := textmetrics.Corpus(ps, ls)
		if err != nil {
			t.Fatal(err)
		}
		if got["bleu-4"] != s.BLEU4 || got["rouge-1"] != s.Rouge1 || got["rouge-2"] != s.Rouge2 || got["rouge-l"] != s.RougeL {
			t.Errorf("metrics %v, textmetrics.Corpus %+v", got, s)
		}
		if !(s.BLEU4 > 0 && s.BLEU4 < 100) {
			t.Errorf("bleu-4 %v: the fixture should score some answers partly", s.BLEU4)
		}
		t.Logf("limit %d: %v; predictions %q", limit, got, ps)
	}
}

// TestReportDeterministic runs every metric source twice and compares the
// report files byte for byte.
func TestReportDeterministic(t *testing.T) {
	f := setup(t)
	src := `
model   = base
adapter = adapter
data    = sft_val
choices {
  path   = "mc.jsonl"
  dev    = "mc_dev.json"
  k_shot = 1
}
generate {
  path           = "generate.json"
  max_new_tokens = 4
}
`
	a, ma := runEval(t, src, f.vars, testdata(t))
	b, mb := runEval(t, src, f.vars, testdata(t))
	if keysOf(ma) != "bleu-4,eval_tokens,loss,mc_accuracy,mc_questions,perplexity,predict_samples,rouge-1,rouge-2,rouge-l" {
		t.Errorf("metrics %v", ma)
	}
	names := []string{MetricsFile, PlotFile, PredictionsFile, MCPredictionsFile}
	entries, err := os.ReadDir(a.OutputDir("report"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(names) {
		t.Errorf("report holds %d files, want %v", len(entries), names)
	}
	for _, name := range names {
		x, err := os.ReadFile(filepath.Join(a.OutputDir("report"), name))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b.OutputDir("report"), name))
		if err != nil {
			t.Fatal(err)
		}
		if len(x) == 0 || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two runs", name)
		}
	}
	var written map[string]float64
	raw, _ := os.ReadFile(filepath.Join(a.OutputDir("report"), MetricsFile))
	if err := json.Unmarshal(raw, &written); err != nil {
		t.Fatal(err)
	}
	for k, v := range ma {
		if written[k] != v || mb[k] != v {
			t.Errorf("%s: output %v, metrics.json %v, second run %v", k, v, written[k], mb[k])
		}
	}
}

// TestGenerateSkipsToolRows: conversations with tool calls, which the
// templates do not render, are skipped and counted in the log.
func TestGenerateSkipsToolRows(t *testing.T) {
	f := setup(t)
	dir := t.TempDir()
	rows := `[
  {"conversations": [{"from": "human", "value": "weather?"}, {"from": "function_call", "value": "{\"name\": \"w\"}"},
                     {"from": "observation", "value": "sunny"}, {"from": "gpt", "value": "It is sunny."}]},
  {"conversations": [{"from": "human", "value": "hello"}, {"from": "gpt", "value": "Hi!"}]}
]`
	if err := os.WriteFile(filepath.Join(dir, "tools.json"), []byte(rows), 0o644); err != nil {
		t.Fatal(err)
	}
	k := Kind()
	args := decodeHCL(t, k.Schema, "model = base\ngenerate {\n  path = \"tools.json\"\n  format = \"sharegpt\"\n  max_new_tokens = 2\n}\n", f.vars)
	req := newRequest(t, args, dir)
	res, err := k.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := res.Values["metrics"].Index(cty.StringVal(MetricPredictSamples)).AsBigFloat().Int64()
	preds := readPredictions(t, req)
	if n != 1 || len(preds) != 1 || preds[0].Label != "Hi!" {
		t.Errorf("predict_samples %d, predictions %+v", n, preds)
	}
	logs := strings.Join(req.Reporter.(*recorder).Logs, "\n")
	if !strings.Contains(logs, "skipped %d rows with tool calls") {
		t.Errorf("logs %q", logs)
	}
}
