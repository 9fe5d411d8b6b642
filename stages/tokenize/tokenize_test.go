package tokenize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

type recorder struct {
	mu       sync.Mutex
	logs     []string
	progress int
}

func (r *recorder) Progress(done, total int64, unit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress++
}
func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
func (r *recorder) Metrics(int64, map[string]float64) {}

// decodeArgs decodes an HCL stage body against the kind's schema; vars are
// visible to its expressions.
func decodeArgs(t *testing.T, src string, vars map[string]cty.Value) (cty.Value, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "test.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("parse: %s", diags)
	}
	v, diags := hcldec.Decode(f.Body, Kind().Schema, &hcl.EvalContext{Variables: vars})
	if !diags.HasErrors() {
		_, more := checkedOutputs(v)
		diags = append(diags, more...)
	}
	return v, diags
}

func mustArgs(t *testing.T, src string, vars map[string]cty.Value) cty.Value {
	t.Helper()
	v, diags := decodeArgs(t, src, vars)
	if diags.HasErrors() {
		t.Fatalf("decode: %s", diags)
	}
	return v
}

func testdata(t *testing.T) string {
	t.Helper()
	d, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func runStage(t *testing.T, args cty.Value) (*stage.Request, *stage.Result, *recorder, error) {
	t.Helper()
	dir := t.TempDir()
	rec := &recorder{}
	req := &stage.Request{
		Address: "tokenize.test", Args: args, BaseDir: testdata(t),
		StagingDir: filepath.Join(dir, "staging"), ScratchDir: filepath.Join(dir, "scratch"),
		CheckpointDir: filepath.Join(dir, "ckpt"), Reporter: rec,
	}
	for _, d := range []string{req.StagingDir, req.ScratchDir, req.CheckpointDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	res, err := Kind().Run(context.Background(), req)
	return req, res, rec, err
}

const trainedAlpaca = `
train {
  vocab_size     = 400
  min_frequency  = 2
  special_tokens = ["<|endoftext|>"]
}
dataset {
  path    = "identity.json"
  format  = "alpaca"
  replace = { "{{name}}" = "Lathe", "{{author}}" = "the lathe team" }
}
template   = "qwen"
cutoff_len = 256
val_size   = 0.25
seed       = 7
`

func statInt(t *testing.T, stats cty.Value, name string) int64 {
	t.Helper()
	n, _ := stats.GetAttr(name).AsBigFloat().Int64()
	return n
}

func TestRunTrainedTokenizer(t *testing.T) {
	args := mustArgs(t, trainedAlpaca, nil)
	req, res, rec, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	// The trained tokenizer carries the template's special tokens.
	tok, cfg, err := LoadTokenizer(req.OutputDir("tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"} {
		if id, ok := tok.TokenToID(s); !ok || id != i {
			t.Errorf("special token %q: id %d, %v; want %d", s, id, ok, i)
		}
	}
	if cfg == nil || cfg.EOSToken == nil || *cfg.EOSToken != "<|endoftext|>" {
		t.Errorf("tokenizer_config eos_token = %v, want <|endoftext|>", cfg)
	}
	train, err := data.VerifyDir(req.OutputDir("dataset"))
	if err != nil {
		t.Fatal(err)
	}
	val, err := data.VerifyDir(req.OutputDir("validation"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := train.Splits["train"]; !ok || len(train.Splits) != 1 {
		t.Errorf("dataset splits = %v, want only train", sortedSplits(train))
	}
	if _, ok := val.Splits["validation"]; !ok || len(val.Splits) != 1 {
		t.Errorf("validation splits = %v, want only validation", sortedSplits(val))
	}
	stats := res.Values["stats"]
	if got := statInt(t, stats, "rows"); got != 10 {
		t.Errorf("rows = %d, want 10", got)
	}
	if got := statInt(t, stats, "dropped"); got != 2 {
		t.Errorf("dropped = %d, want 2", got)
	}
	if got, want := statInt(t, stats, "samples"), int64(8); got != want {
		t.Errorf("samples = %d, want %d", got, want)
	}
	if got := statInt(t, stats, "validation_samples"); got != 2 { // ceil(0.25*8)
		t.Errorf("validation_samples = %d, want 2", got)
	}
	if statInt(t, stats, "train_samples")+statInt(t, stats, "validation_samples") != statInt(t, stats, "samples") {
		t.Errorf("train + validation != samples: %#v", stats)
	}
	if tr := statInt(t, stats, "trainable_tokens"); tr <= 0 || tr >= statInt(t, stats, "tokens") {
		t.Errorf("trainable_tokens = %d of %d", tr, statInt(t, stats, "tokens"))
	}
	if !stats.Type().Equals(outputs["stats"].Type) {
		t.Errorf("stats type %s, declared %s", stats.Type().FriendlyName(), outputs["stats"].Type.FriendlyName())
	}
	// Drop examples name the file as the stage does, not by absolute path.
	if len(train.DropExamples) != 2 || train.DropExamples[0].Source != "identity.json:10" {
		t.Errorf("drop examples = %+v, want identity.json:10 first", train.DropExamples)
	}
	// The drop summary is logged.
	if !strings.Contains(strings.Join(rec.logs, "\n"), "dropped 2 rows") {
		t.Errorf("logs do not report the drops:\n%s", strings.Join(rec.logs, "\n"))
	}
	// The placeholders were replaced before tokenizing: decode the first
	// training sample and look for the name.
	sh, err := data.OpenShard(filepath.Join(req.OutputDir("dataset"), train.Splits["train"].Shards[0].File))
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	var all strings.Builder
	for i := 0; i < sh.NumSamples(); i++ {
		s := sh.Sample(i)
		ids := make([]int, len(s.Tokens))
		for j, id := range s.Tokens {
			ids[j] = int(id)
		}
		all.WriteString(tok.Decode(ids, false))
	}
	if strings.Contains(all.String(), "{{name}}") || !strings.Contains(all.String(), "<|im_start|>assistant\n") {
		t.Errorf("decoded samples look wrong:\n%s", all.String())
	}

	// A second run is byte-identical.
	req2, _, _, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer/tokenizer.json", "tokenizer/tokenizer_config.json", "dataset/manifest.json", "validation/manifest.json", "dataset/" + train.Splits["train"].Shards[0].File} {
		a, err1 := os.ReadFile(filepath.Join(req.StagingDir, f))
		b, err2 := os.ReadFile(filepath.Join(req2.StagingDir, f))
		if err1 != nil || err2 != nil || !bytes.Equal(a, b) {
			t.Errorf("%s differs between runs (%v, %v)", f, err1, err2)
		}
	}
}

func sortedSplits(m *data.Manifest) []string {
	var out []string
	for k := range m.Splits {
		out = append(out, k)
	}
	return out
}

// trainTokenizerDir trains a small tokenizer for the tests that load one.
func trainTokenizerDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	corpus := func(yield func(string) bool) {
		for _, s := range []string{"Hi there", "Hello! How can I help?", "What is 2+2? 4. And 3+3? 6", "Be brief. Name a colour. Blue."} {
			if !yield(s) {
				return
			}
		}
	}
	if _, _, err := TrainTokenizer(corpus, dir, TrainOptions{VocabSize: 300, MinFrequency: 1, Special: []string{"<|endoftext|>", "<|im_start|>", "<|im_end|>"}}); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRunGivenTokenizer(t *testing.T) {
	tokDir := trainTokenizerDir(t)
	for _, tc := range []struct {
		name, path string
		files      []string
	}{
		{"directory", tokDir, []string{"tokenizer.json", "tokenizer_config.json"}},
		{"file", filepath.Join(tokDir, "tokenizer.json"), []string{"tokenizer.json"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := mustArgs(t, `
tokenizer = tok
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template = "chatml"
mask_history = true
`, map[string]cty.Value{"tok": cty.StringVal(tc.path)})
			req, res, _, err := runStage(t, args)
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				a, _ := os.ReadFile(filepath.Join(tokDir, f))
				b, err := os.ReadFile(filepath.Join(req.OutputDir("tokenizer"), f))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s not copied through: %v", f, err)
				}
			}
			m, err := data.VerifyDir(req.OutputDir("validation"))
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Splits) != 0 || m.SamplesWritten != 0 {
				t.Errorf("val_size = 0: validation holds %d samples", m.SamplesWritten)
			}
			if got := statInt(t, res.Values["stats"], "train_samples"); got != 3 {
				t.Errorf("train_samples = %d, want 3", got)
			}
		})
	}
}

func TestRunFilesArtifactAndText(t *testing.T) {
	tokDir := trainTokenizerDir(t)
	art := stage.ArtifactVal(stage.Artifact{Kind: stage.DatasetArtifact, Digest: "sha256:00", Path: testdata(t)})
	args := mustArgs(t, `
tokenizer = tok
dataset {
  files  = art
  path   = "text.jsonl"
  format = "text"
}
cutoff_len = 16
packing    = true
`, map[string]cty.Value{"tok": cty.StringVal(tokDir), "art": art})
	req, res, _, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	m, err := data.VerifyDir(req.OutputDir("dataset"))
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != data.KindPretrain || !m.Packing {
		t.Errorf("manifest kind %q packing %v, want pretrain packed", m.Kind, m.Packing)
	}
	if got := statInt(t, res.Values["stats"], "rows"); got != 3 {
		t.Errorf("rows = %d, want 3", got)
	}
}

func TestRunErrors(t *testing.T) {
	tokDir := trainTokenizerDir(t)
	tests := []struct {
		name, body string
		want       []string
		allDropped bool
	}{
		{"malformed jsonl", `dataset {
  path = "broken.jsonl"
  format = "alpaca"
}
template = "qwen"`, []string{"broken.jsonl:3"}, false},
		{"every row dropped", `dataset {
  path = "empty_answers.json"
  format = "alpaca"
}
template = "qwen"`, []string{"every row was dropped", "2"}, true},
		{"missing file", `dataset {
  path = "nope.json"
  format = "alpaca"
}
template = "qwen"`, []string{"nope.json"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := mustArgs(t, "tokenizer = tok\n"+tc.body, map[string]cty.Value{"tok": cty.StringVal(tokDir)})
			_, _, _, err := runStage(t, args)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if tc.allDropped != errors.Is(err, data.ErrAllDropped) {
				t.Errorf("errors.Is(err, ErrAllDropped) = %v: %v", !tc.allDropped, err)
			}
		})
	}
}

func TestSchemaDiagnostics(t *testing.T) {
	const ds = "dataset {\n  path = \"identity.json\"\n  format = \"alpaca\"\n}\n"
	tests := []struct {
		name, src string
		want      []string // substrings of the diagnostics; none = valid
	}{
		{"valid", "tokenizer = \"tok\"\ntemplate = \"qwen\"\n" + ds, nil},
		{"typo template", "tokenizer = \"tok\"\ntemplate = \"qwne\"\n" + ds, []string{`unknown template "qwne"`, `Did you mean "qwen"?`, `"llama3"`}},
		{"auto template", "tokenizer = \"tok\"\ntemplate = \"auto\"\n" + ds, nil},
		{"auto template, trained tokenizer", "train {\n  vocab_size = 300\n}\ntemplate = \"auto\"\n" + ds, []string{`"auto"`, "trained by this stage has none"}},
		{"bad format", "tokenizer = \"tok\"\ntemplate = \"qwen\"\ndataset {\n  path = \"x\"\n  format = \"sharegtp\"\n}\n", []string{`Did you mean "sharegpt"?`}},
		{"bad column", "tokenizer = \"tok\"\ntemplate = \"qwen\"\ndataset {\n  path = \"x\"\n  format = \"alpaca\"\n  columns = { promt = \"q\" }\n}\n", []string{`Did you mean "prompt"?`}},
		{"no tokenizer", "template = \"qwen\"\n" + ds, []string{"Missing tokenizer"}},
		{"both tokenizers", "tokenizer = \"tok\"\ntrain {\n  vocab_size = 300\n}\ntemplate = \"qwen\"\n" + ds, []string{"either tokenizer or a train block"}},
		{"no template", "tokenizer = \"tok\"\n" + ds, []string{"Missing template"}},
		{"no dataset", "tokenizer = \"tok\"\ntemplate = \"qwen\"\n", []string{"dataset"}},
		{"no path", "tokenizer = \"tok\"\ntemplate = \"qwen\"\ndataset {\n  format = \"alpaca\"\n}\n", []string{"Missing dataset path"}},
		{"bad val_size", "tokenizer = \"tok\"\ntemplate = \"qwen\"\nval_size = 1.5\n" + ds, []string{"val_size"}},
		{"small vocab", "train {\n  vocab_size = 10\n}\ntemplate = \"qwen\"\n" + ds, []string{"vocab_size"}},
		{"string as files", "tokenizer = \"tok\"\ntemplate = \"qwen\"\ndataset {\n  files = \"dir\"\n  format = \"alpaca\"\n}\n", []string{"dataset or files artifact"}},
		{"model artifact tokenizer", "tokenizer = model\ntemplate = \"qwen\"\n" + ds, nil},
		{"adapter artifact tokenizer", "tokenizer = adapter\ntemplate = \"qwen\"\n" + ds, []string{"tokenizer must be"}},
	}
	vars := map[string]cty.Value{
		"model":   stage.ArtifactVal(stage.Artifact{Kind: stage.ModelArtifact, Digest: "sha256:1"}),
		"adapter": stage.ArtifactVal(stage.Artifact{Kind: stage.AdapterArtifact, Digest: "sha256:2"}),
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, diags := decodeArgs(t, tc.src, vars)
			if len(tc.want) == 0 {
				if diags.HasErrors() {
					t.Fatalf("unexpected diagnostics: %s", diags)
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatalf("no diagnostics, want %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(diags.Error(), w) {
					t.Errorf("diagnostics %q do not mention %q", diags.Error(), w)
				}
			}
		})
	}
}

type keyCtx struct {
	base   string
	hashed []string
}

func (k *keyCtx) BaseDir() string { return k.base }
func (k *keyCtx) HashPath(p string) (string, error) {
	k.hashed = append(k.hashed, p)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return "sha256:" + filepath.Base(p), nil
}

func TestKeyLines(t *testing.T) {
	art := stage.ArtifactVal(stage.Artifact{Kind: stage.FilesArtifact, Digest: "sha256:00", Path: "/store/x"})
	args := mustArgs(t, `
tokenizer = "tok.json"
dataset {
  path   = "identity.json"
  format = "alpaca"
}
dataset {
  files  = art
  path   = "in/artifact.json"
  format = "alpaca"
}
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template = "qwen"
`, map[string]cty.Value{"art": art})
	base := testdata(t)
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	kc := &keyCtx{base: base}
	_, err := keyLines(kc, args)
	if err == nil || !strings.Contains(err.Error(), "tok.json") {
		t.Fatalf("missing tokenizer file: err = %v", err)
	}
	args = mustArgs(t, `
tokenizer = art
dataset {
  path   = "identity.json"
  format = "alpaca"
}
dataset {
  files  = art
  path   = "in/artifact.json"
  format = "alpaca"
}
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template = "qwen"
`, map[string]cty.Value{"art": art})
	kc = &keyCtx{base: base}
	lines, err := keyLines(kc, args)
	if err != nil {
		t.Fatal(err)
	}
	want := []stage.KeyLine{{Label: "dataset[0] file", Value: "sha256:identity.json"}, {Label: "dataset[2] file", Value: "sha256:chat.jsonl"}}
	if len(lines) != len(want) || lines[0] != want[0] || lines[1] != want[1] {
		t.Errorf("key lines = %v, want %v", lines, want)
	}
	if kc.hashed[0] != filepath.Join(base, "identity.json") {
		t.Errorf("hashed %v, want paths resolved against the base dir", kc.hashed)
	}
}

func TestTemplateSpecialTokens(t *testing.T) {
	tests := []struct {
		template string
		want     []string
	}{
		{"qwen", []string{"<|im_start|>", "<|im_end|>"}},
		{"llama3", []string{"<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"}},
		// ChatGLM's "sop" is a plain word: left out, or a trained
		// tokenizer would split "isopropyl" at it.
		{"chatglm3", []string{"[gMASK]", "<|system|>", "<|user|>", "<|assistant|>", "</s>"}},
		{"baichuan2", []string{"<reserved_106>", "<reserved_107>", "</s>"}},
	}
	for _, tc := range tests {
		tpl, err := data.LookupTemplate(tc.template)
		if err != nil {
			t.Fatal(err)
		}
		got := TemplateSpecialTokens(tpl)
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s: special tokens %q, want %q", tc.template, got, tc.want)
		}
	}
}

func TestEncoderAdapter(t *testing.T) {
	tok, _, err := LoadTokenizer(trainTokenizerDir(t))
	if err != nil {
		t.Fatal(err)
	}
	text := "<|im_start|>Hello there<|im_end|>"
	ids := tok.Encode(text, true)
	got := Encoder(tok).Encode(text, true)
	if len(got) != len(ids) || len(ids) == 0 {
		t.Fatalf("adapter gave %v, tokenizer %v", got, ids)
	}
	for i := range ids {
		if int(got[i]) != ids[i] {
			t.Fatalf("adapter gave %v, tokenizer %v", got, ids)
		}
	}
	if _, ok := tok.TokenToID("<|im_end|>"); !ok || int(got[len(got)-1]) != mustID(t, tok, "<|im_end|>") {
		t.Errorf("special token not encoded as one id: %v", got)
	}
}

func mustID(t *testing.T, tok tokenizer.Codec, s string) int {
	id, ok := tok.TokenToID(s)
	if !ok {
		t.Fatalf("no token %q", s)
	}
	return id
}

func TestRunCanceled(t *testing.T) {
	tokDir := trainTokenizerDir(t)
	for _, tc := range []struct{ name, src string }{
		{"training", trainedAlpaca},
		{"tokenizing", "tokenizer = tok\ntemplate = \"qwen\"\ndataset {\n  path = \"identity.json\"\n  format = \"alpaca\"\n}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := mustArgs(t, tc.src, map[string]cty.Value{"tok": cty.StringVal(tokDir)})
			dir := t.TempDir()
			req := &stage.Request{Args: args, BaseDir: testdata(t), StagingDir: filepath.Join(dir, "s"), ScratchDir: filepath.Join(dir, "x"), Reporter: &recorder{}}
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			_, err := Kind().Run(ctx, req)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
	}
}

func TestFilesArtifactPath(t *testing.T) {
	tokDir := trainTokenizerDir(t)
	single := t.TempDir()
	b, err := os.ReadFile(filepath.Join(testdata(t), "chat.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(single, "only.jsonl"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dir, path string
		want            string // error substring; "" = success
	}{
		{"escape", testdata(t), `path = "../tokenize.go"`, "must be relative to the files artifact"},
		{"absolute", testdata(t), `path = "/etc/passwd"`, "must be relative to the files artifact"},
		{"ambiguous", testdata(t), ``, "name one with path"},
		{"single file", single, ``, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			art := stage.ArtifactVal(stage.Artifact{Kind: stage.FilesArtifact, Digest: "sha256:00", Path: tc.dir})
			args := mustArgs(t, "tokenizer = tok\ntemplate = \"chatml\"\ndataset {\n  files = art\n  "+tc.path+"\n  format = \"sharegpt\"\n}\n",
				map[string]cty.Value{"tok": cty.StringVal(tokDir), "art": art})
			_, _, _, err := runStage(t, args)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}
