package export

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/gguf"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

var update = flag.Bool("update", false, "rewrite the golden Modelfiles in testdata/modelfile")

type recorder struct {
	mu   sync.Mutex
	logs []string
}

func (r *recorder) Progress(int64, int64, string)     {}
func (r *recorder) Metrics(int64, map[string]float64) {}
func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}

func (r *recorder) has(sub string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, l := range r.logs {
		if strings.Contains(l, sub) {
			return true
		}
	}
	return false
}

// tinyConfig is a small llama whose down_proj rows (80) are not whole
// quantisation blocks, so Q8_0/Q4_0 exports fall back to F16 there.
var tinyConfig = llama.Config{ModelType: "llama", Architecture: "LlamaForCausalLM", VocabSize: 328, Hidden: 64,
	Intermediate: 80, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, RopeTheta: 10000, RMSNormEps: 1e-5,
	MaxPositions: 128, BOSTokenID: 319, EOSTokenIDs: []int{321}}

// tinyModel writes a random model (F32) with the testdata tokenizer (a
// byte-level BPE that adds <|begin_of_text|>, and a tokenizer_config.json
// with Llama 3's chat template) and no generation_config.json.
func tinyModel(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	m, err := llama.New(tinyConfig, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(3, 0.05); err != nil {
		t.Fatal(err)
	}
	if err := m.Save(dir, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func art(kind, dir string) cty.Value {
	return stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: "sha256:" + filepath.Base(dir), Path: dir})
}

func decode(src string, vars map[string]cty.Value) (cty.Value, hcl.Diagnostics) {
	f, diags := hclparse.NewParser().ParseHCL([]byte(src), "test.hcl")
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return hcldec.Decode(f.Body, Kind().Schema, &hcl.EvalContext{Variables: vars})
}

// runExport decodes the stage body src (model and adapter are variables)
// and runs the kind; it returns the output directory.
func runExport(t *testing.T, src string, vars map[string]cty.Value) (string, *recorder) {
	t.Helper()
	args, diags := decode(src, vars)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	outs, diags := Kind().Outputs(args)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if len(outs) != 1 {
		t.Fatalf("outputs %v", outs)
	}
	var out string
	for name := range outs {
		out = name
	}
	dir := t.TempDir()
	req := &stage.Request{Address: `export.test`, Args: args, StagingDir: filepath.Join(dir, "staging"),
		ScratchDir: filepath.Join(dir, "scratch"), CheckpointDir: filepath.Join(dir, "ckpt"), Reporter: &recorder{}}
	for _, d := range []string{req.StagingDir, req.ScratchDir, req.CheckpointDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Kind().Run(context.Background(), req); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(req.StagingDir)
	if len(entries) != 1 || entries[0].Name() != out {
		t.Fatalf("staging holds %v, want only %s", entries, out)
	}
	return req.OutputDir(out), req.Reporter.(*recorder)
}

var probeBatch = &llama.Batch{B: 2, T: 7, Tokens: []int32{319, 5, 77, 120, 200, 300, 321, 319, 9, 18, 250, 322, 321, 40}}

func logitsOf(t *testing.T, m *llama.Model) []float32 {
	t.Helper()
	defer m.Free()
	lg, err := m.Logits(probeBatch)
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

func loadLogits(t *testing.T, dir string) []float32 {
	t.Helper()
	m, err := llama.Load(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	return logitsOf(t, m)
}

// relErr is max|a-b| / max|b|.
func relErr(a, b []float32) float64 {
	var d, s float64
	for i := range b {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
		s = max(s, math.Abs(float64(b[i])))
	}
	return d / s
}

func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[rel] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameTree(t *testing.T, a, b string) {
	t.Helper()
	ta, tb := readTree(t, a), readTree(t, b)
	if len(ta) != len(tb) {
		t.Fatalf("%d files vs %d", len(ta), len(tb))
	}
	for n, x := range ta {
		if !bytes.Equal(x, tb[n]) {
			t.Fatalf("%s differs between two runs", n)
		}
	}
}

func TestExportHF(t *testing.T) {
	base := tinyModel(t)
	want := loadLogits(t, base)
	vars := map[string]cty.Value{"base": art(stage.ModelArtifact, base)}
	cases := []struct {
		name, body string
		dtype      safetensors.DType
		torch      string
		shards     bool
		maxShard   int64
		tol        float64 // on relErr; 0: bit-identical logits
	}{
		{"bf16 sharded", `dtype = "bf16"` + "\n" + `max_shard_size = "20KB"`, safetensors.BF16, "bfloat16", true, 20000, 2e-2},
		{"default dtype, one file", ``, safetensors.BF16, "bfloat16", false, 5e9, 2e-2},
		{"f32 exact", `dtype = "f32"`, safetensors.F32, "float32", false, 5e9, 0},
		{"f16 bytes as a number", `dtype = "f16"` + "\n" + `max_shard_size = 65536`, safetensors.F16, "float16", true, 65536, 2e-3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := "model = base\n" + c.body
			out, rep := runExport(t, src, vars)
			var cfg map[string]any
			b, err := os.ReadFile(filepath.Join(out, "config.json"))
			if err == nil {
				err = json.Unmarshal(b, &cfg)
			}
			if err != nil || cfg["torch_dtype"] != c.torch {
				t.Fatalf("config.json torch_dtype %v (%v), want %s", cfg["torch_dtype"], err, c.torch)
			}
			_, indexErr := os.Stat(filepath.Join(out, safetensors.IndexFileName))
			_, singleErr := os.Stat(filepath.Join(out, safetensors.SingleFileName))
			if c.shards != (indexErr == nil) || c.shards == (singleErr == nil) {
				t.Fatalf("sharded = %v: index %v, single file %v", c.shards, indexErr, singleErr)
			}
			set, err := safetensors.OpenDir(out)
			if err != nil {
				t.Fatal(err)
			}
			if c.shards {
				if n := len(set.Files()); n < 3 {
					t.Fatalf("%d shards", n)
				}
				for _, f := range set.Files() {
					st, _ := os.Stat(f)
					fh, _ := safetensors.Open(f)
					ts := fh.Tensors()
					fh.Close()
					if st.Size() > c.maxShard+4096 && len(ts) > 1 {
						t.Errorf("%s: %d bytes holding %d tensors, max shard %d", f, st.Size(), len(ts), c.maxShard)
					}
				}
			}
			for _, ti := range set.Tensors() {
				if ti.DType != c.dtype {
					t.Errorf("%s is %s, want %s", ti.Name, ti.DType, c.dtype)
				}
			}
			set.Close()
			for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
				a, _ := os.ReadFile(filepath.Join(base, f))
				b, err := os.ReadFile(filepath.Join(out, f))
				if err != nil || !bytes.Equal(a, b) {
					t.Errorf("%s not carried over (%v)", f, err)
				}
			}
			var gen map[string]any
			b, err = os.ReadFile(filepath.Join(out, "generation_config.json"))
			if err == nil {
				err = json.Unmarshal(b, &gen)
			}
			if err != nil || gen["bos_token_id"] != 319.0 || gen["eos_token_id"] != 321.0 || gen["pad_token_id"] != 320.0 {
				t.Errorf("generation_config.json %v (%v)", gen, err)
			}
			if !rep.has("hf: ") {
				t.Errorf("no size report in %q", rep.logs)
			}
			got := loadLogits(t, out)
			e := relErr(got, want)
			t.Logf("%s: logits rel err %g", c.name, e)
			if c.tol == 0 && !slices.Equal(got, want) {
				t.Fatalf("f32 export: logits differ (rel err %g)", e)
			}
			if e > c.tol || (c.tol > 0 && e == 0) {
				t.Fatalf("logits rel err %g, want (0, %g]", e, c.tol)
			}
			again, _ := runExport(t, src, vars)
			sameTree(t, out, again)
			if c.shards {
				peerCheckHF(t, base, out, "")
			}
		})
	}
}

// makeAdapter writes a PEFT adapter with random A and non-zero B on the
// q, v and down projections, and returns its directory and tensors.
func makeAdapter(t *testing.T) (string, lora.Config, map[string]lora.Tensor) {
	t.Helper()
	c := lora.Config{Rank: 4, Alpha: 12, Targets: []string{"q_proj", "v_proj", "down_proj"}}
	rng := rand.New(rand.NewPCG(11, 12))
	randn := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64() * 0.1)
		}
		return v
	}
	H, I, KV := tinyConfig.Hidden, tinyConfig.Intermediate, tinyConfig.KVHeads*tinyConfig.HeadDim
	tensors := map[string]lora.Tensor{}
	for l := range tinyConfig.Layers {
		for _, m := range []struct {
			path    string
			in, out int
		}{{"self_attn.q_proj", H, H}, {"self_attn.v_proj", H, KV}, {"mlp.down_proj", I, H}} {
			name := fmt.Sprintf("model.layers.%d.%s", l, m.path)
			tensors[name+llama.LoRAASuffix] = lora.Tensor{Shape: []int{c.Rank, m.in}, Data: randn(c.Rank * m.in)}
			tensors[name+llama.LoRABSuffix] = lora.Tensor{Shape: []int{m.out, c.Rank}, Data: randn(m.out * c.Rank)}
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := lora.Save(dir, c, tensors, safetensors.F32); err != nil {
		t.Fatal(err)
	}
	return dir, c, tensors
}

func TestExportAdapterMerged(t *testing.T) {
	base := tinyModel(t)
	adapter, c, tensors := makeAdapter(t)
	var modules []string
	for n := range tensors {
		if m, ok := strings.CutSuffix(n, llama.LoRAASuffix); ok {
			modules = append(modules, m)
		}
	}
	m, err := llama.LoadWith(base, cpu.New(), llama.Options{LoRA: &llama.LoRAOptions{Modules: modules, Rank: c.Rank, Scale: float32(c.Scale())}})
	if err != nil {
		t.Fatal(err)
	}
	for n, v := range tensors {
		if err := m.SetParamValues(n, v.Data); err != nil {
			t.Fatal(err)
		}
	}
	want := logitsOf(t, m)
	if e := relErr(loadLogits(t, base), want); e < 1e-3 {
		t.Fatalf("the adapter barely changes the model (rel err %g): the test would prove nothing", e)
	}
	vars := map[string]cty.Value{"base": art(stage.ModelArtifact, base), "lora": art(stage.AdapterArtifact, adapter)}
	for _, format := range []string{"hf", "gguf"} {
		t.Run(format, func(t *testing.T) {
			body := "model = base\nadapter = lora\nformat = \"" + format + "\"\n"
			if format == "hf" {
				body += "dtype = \"f32\"\n"
			} else {
				body += "quantization = \"f32\"\n"
			}
			out, rep := runExport(t, body, vars)
			if !rep.has("merged the adapter") {
				t.Errorf("no merge report in %q", rep.logs)
			}
			dir := out
			if format == "gguf" {
				dir = filepath.Join(t.TempDir(), "back")
				if err := gguf.ReadHF(filepath.Join(out, ggufFile), dir); err != nil {
					t.Fatal(err)
				}
			} else {
				peerCheckHF(t, base, out, adapter)
			}
			got := loadLogits(t, dir)
			var d float64
			for i := range want {
				d = max(d, math.Abs(float64(got[i]-want[i])))
			}
			if d > 1e-4 {
				t.Fatalf("merged logits differ from the adapted model's by %g", d)
			}
		})
	}
}

func TestExportGGUF(t *testing.T) {
	base := tinyModel(t)
	want := loadLogits(t, base)
	vars := map[string]cty.Value{"base": art(stage.ModelArtifact, base)}
	cases := []struct {
		quant    string
		typ      gguf.Type
		fileType uint32
		fallback bool
		tol      float64
	}{
		{"f32", gguf.F32, 0, false, 0},
		{"f16", gguf.F16, 1, false, 2e-3},
		{"bf16", gguf.BF16, 32, false, 2e-2},
		{"q8_0", gguf.Q8_0, 7, true, 3e-2},
		// Q4_0's step is 127/7 ≈ 18× Q8_0's: the logits' error (max over
		// max|logit|) grows alike, from about 1.7% to about 25% on this
		// random model.
		{"q4_0", gguf.Q4_0, 2, true, 0.4},
	}
	for _, c := range cases {
		t.Run(c.quant, func(t *testing.T) {
			body := fmt.Sprintf("model = base\nformat = \"gguf\"\nquantization = %q\nname = \"tiny-%s\"\n", c.quant, c.quant)
			out, rep := runExport(t, body, vars)
			entries, _ := os.ReadDir(out)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{modelfileName, ggufFile}) {
				t.Fatalf("files %v", names)
			}
			f, err := gguf.Open(filepath.Join(out, ggufFile))
			if err != nil {
				t.Fatal(err)
			}
			md := f.Metadata
			if md["general.name"] != "tiny-"+c.quant || md["general.architecture"] != "llama" || md["general.file_type"] != c.fileType {
				t.Errorf("metadata name %v arch %v file_type %v", md["general.name"], md["general.architecture"], md["general.file_type"])
			}
			if md["tokenizer.chat_template"] != tokenizerChatTemplate(t) {
				t.Errorf("tokenizer.chat_template %q", md["tokenizer.chat_template"])
			}
			types := map[string]gguf.Type{}
			for _, ti := range f.Tensors {
				types[ti.Name] = ti.Type
			}
			f.Close()
			down := c.typ
			if c.fallback {
				down = gguf.F16
			}
			for name, typ := range map[string]gguf.Type{"token_embd.weight": c.typ, "blk.1.attn_q.weight": c.typ,
				"blk.0.ffn_gate.weight": c.typ, "blk.0.ffn_down.weight": down, "blk.0.attn_norm.weight": gguf.F32, "output_norm.weight": gguf.F32} {
				if types[name] != typ {
					t.Errorf("%s is %s, want %s", name, types[name], typ)
				}
			}
			if got := rep.has("ffn_down.weight written as F16"); got != c.fallback {
				t.Errorf("fallback logged %v, want %v: %q", got, c.fallback, rep.logs)
			}
			if !rep.has("gguf: llama") {
				t.Errorf("no size report in %q", rep.logs)
			}
			back := filepath.Join(t.TempDir(), "back")
			if err := gguf.ReadHF(filepath.Join(out, ggufFile), back); err != nil {
				t.Fatal(err)
			}
			got := loadLogits(t, back)
			e := relErr(got, want)
			t.Logf("%s: logits rel err %g", c.quant, e)
			if c.tol == 0 && !slices.Equal(got, want) {
				t.Fatalf("f32 GGUF: logits differ (rel err %g)", e)
			}
			if e > c.tol || (c.tol > 0 && e == 0) {
				t.Fatalf("logits rel err %g, want (0, %g]", e, c.tol)
			}
			again, _ := runExport(t, body, vars)
			sameTree(t, out, again)
		})
	}
}

func tokenizerChatTemplate(t *testing.T) string {
	t.Helper()
	var cfg struct {
		ChatTemplate string `json:"chat_template"`
	}
	b, err := os.ReadFile(filepath.Join("testdata", "tokenizer_config.json"))
	if err == nil {
		err = json.Unmarshal(b, &cfg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg.ChatTemplate
}

// TestModelfileGolden exports the tiny model with every built-in template
// and compares the Modelfile with testdata/modelfile/<template>.Modelfile
// (go test -update rewrites them). Without a template argument the
// model's chat template (Llama 3's) is recognised.
func TestModelfileGolden(t *testing.T) {
	base := tinyModel(t)
	vars := map[string]cty.Value{"base": art(stage.ModelArtifact, base)}
	for _, name := range append(data.TemplateNames(), "") {
		t.Run("template="+name, func(t *testing.T) {
			body := "model = base\nformat = \"gguf\"\n"
			golden := name
			if name != "" {
				body += fmt.Sprintf("template = %q\n", name)
			} else {
				golden = "llama3"
			}
			out, rep := runExport(t, body, vars)
			got, err := os.ReadFile(filepath.Join(out, modelfileName))
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "modelfile", golden+".Modelfile")
			if *update && name != "" {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Modelfile differs from %s:\n%s", path, got)
			}
			if name == "" && !rep.has(`template: "llama3", recognised`) {
				t.Errorf("recognition not logged: %q", rep.logs)
			}
			if name != "" && name != "llama3" && !rep.has("the model's own chat template") {
				t.Errorf("template mismatch not logged: %q", rep.logs)
			}
			if leadingBOS(name, tokens{BOS: "<|begin_of_text|>"}) == "<|begin_of_text|>" && !rep.has("TEMPLATE leaves it out") {
				t.Errorf("BOS handling not logged: %q", rep.logs)
			}
		})
	}
}

// argsOf builds an argument object with the schema's type: the given
// attributes, the others null (format "hf" unless given).
func argsOf(attrs map[string]cty.Value) cty.Value {
	ty := hcldec.ImpliedType(Kind().Schema)
	vals := map[string]cty.Value{}
	for name, at := range ty.AttributeTypes() {
		vals[name] = cty.NullVal(at)
	}
	vals["format"] = cty.StringVal(FormatHF)
	vals["model"] = art(stage.ModelArtifact, "/nonexistent/model")
	for k, v := range attrs {
		vals[k] = v
	}
	return cty.ObjectVal(vals)
}

func TestOutputsAndArgumentErrors(t *testing.T) {
	s := cty.StringVal
	cases := []struct {
		name    string
		attrs   map[string]cty.Value
		outputs []string
		err     string // substring of summary + detail
	}{
		{"hf", nil, []string{"model"}, ""},
		{"hf with its arguments", map[string]cty.Value{"dtype": s("f16"), "max_shard_size": s("1GiB")}, []string{"model"}, ""},
		{"gguf", map[string]cty.Value{"format": s("gguf"), "quantization": s("q4_0"), "template": s("qwen3"), "name": s("x")}, []string{"gguf"}, ""},
		{"unknown format", map[string]cty.Value{"format": cty.UnknownVal(cty.String)}, nil, "Unknown format"},
		{"bad format", map[string]cty.Value{"format": s("onnx")}, nil, `format must be one of ["hf" "gguf"], got "onnx"`},
		{"dtype with gguf", map[string]cty.Value{"format": s("gguf"), "dtype": s("bf16")}, nil, `dtype applies to format "hf" only`},
		{"max_shard_size with gguf", map[string]cty.Value{"format": s("gguf"), "max_shard_size": s("2GB")}, nil, `Argument not used by format "gguf"`},
		{"quantization with hf", map[string]cty.Value{"quantization": s("q8_0")}, nil, `quantization applies to format "gguf" only`},
		{"template with hf", map[string]cty.Value{"template": s("chatml")}, nil, `template applies to format "gguf" only`},
		{"name with hf", map[string]cty.Value{"name": s("x")}, nil, `name applies to format "gguf" only`},
		{"bad max_shard_size", map[string]cty.Value{"max_shard_size": s("5 gigs")}, nil, `Invalid max_shard_size`},
		{"bits in max_shard_size", map[string]cty.Value{"max_shard_size": s("5Gb")}, nil, `lowercase b can mean bits`},
		{"unknown template", map[string]cty.Value{"format": s("gguf"), "template": s("gpt4")}, nil, `template must be one of ["alpaca"`},
		{"bad dtype", map[string]cty.Value{"dtype": s("int8")}, nil, `dtype must be one of ["f32" "bf16" "f16"], got "int8"`},
		{"bad quantization", map[string]cty.Value{"format": s("gguf"), "quantization": s("q4_k")}, nil, `got "q4_k"`},
		{"empty name", map[string]cty.Value{"format": s("gguf"), "name": s(" ")}, nil, "name must not be empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outs, diags := Kind().Outputs(argsOf(c.attrs))
			if c.err == "" {
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				var names []string
				for n, o := range outs {
					names = append(names, n)
					if !o.IsArtifact() {
						t.Errorf("%s is not an artifact", n)
					}
				}
				if !slices.Equal(names, c.outputs) {
					t.Fatalf("outputs %v, want %v", names, c.outputs)
				}
				return
			}
			if !diags.HasErrors() {
				t.Fatalf("no error, want %q", c.err)
			}
			var msgs []string
			for _, d := range diags {
				msgs = append(msgs, d.Summary+": "+d.Detail)
			}
			if !strings.Contains(strings.Join(msgs, "\n"), c.err) {
				t.Fatalf("diagnostics %q, want %q", msgs, c.err)
			}
		})
	}
	// Wholly unknown arguments (the engine's fallback) give an error, not
	// a panic.
	if _, diags := Kind().Outputs(cty.UnknownVal(hcldec.ImpliedType(Kind().Schema))); !diags.HasErrors() {
		t.Error("no error for unknown arguments")
	}
	// Decoding checks single arguments with their source range.
	_, diags := decode("model = base\nformat = \"gguf\"\ntemplate = \"gpt4\"\n", map[string]cty.Value{"base": art(stage.ModelArtifact, "/x")})
	if !diags.HasErrors() || diags[0].Subject == nil || diags[0].Subject.Start.Line != 3 {
		t.Errorf("decode diagnostics %v", diags)
	}
	_, diags = decode("format = \"gguf\"\n", nil)
	if !diags.HasErrors() {
		t.Error("no error without a model")
	}
}

func TestParseSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int64
		err  string
	}{
		{"5GB", 5_000_000_000, ""},
		{"2GiB", 2 << 30, ""},
		{"500MB", 500_000_000, ""},
		{"1.5GB", 1_500_000_000, ""},
		{"100", 100, ""},
		{"10 KB", 10_000, ""},
		{"1KIB", 1024, ""},
		{"3kiB", 3072, ""},
		{"1kib", 0, "write KiB"},
		{"64B", 64, ""},
		{"", 0, "not a size"},
		{"GB", 0, "not a size"},
		{"5 gigs", 0, "unknown unit"},
		{"5Gb", 0, "write GB"},
		{"0", 0, "out of range"},
		{"0.1", 0, "out of range"},
		{"-1", 0, "not a size"},
		{"1e3", 0, "not a size"},
		{"99999999999TB", 0, "too large"},
	} {
		got, err := ParseSize(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: %d, %v; want an error containing %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}

// The PyTorch peer: testdata/hf_ref.py reads the export's safetensors
// (shards and index) with numpy and checks every tensor against the
// source converted by torch (and, with an adapter, against W + scale·B·A
// computed by torch in float64).

var (
	torchOnce   sync.Once
	torchPython string
	torchErr    error
)

// needTorch returns a python3 that imports torch (Debian's python3-torch
// lives in /usr/bin/python3, which a python3 earlier on PATH may not see);
// it skips the test without one unless LATHE_REQUIRE_PEERS=1.
func needTorch(t *testing.T) string {
	t.Helper()
	torchOnce.Do(func() {
		var msgs []string
		for _, p := range []string{"python3", "/usr/bin/python3"} {
			out, err := exec.Command(p, "-c", "import torch, numpy").CombinedOutput()
			if err == nil {
				torchPython = p
				return
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			msgs = append(msgs, p+": "+lines[len(lines)-1])
		}
		torchErr = errors.New(strings.Join(msgs, "; "))
	})
	if torchErr != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PyTorch peer required (LATHE_REQUIRE_PEERS=1): %v", torchErr)
		}
		t.Skipf("PyTorch peer unavailable: %v", torchErr)
	}
	return torchPython
}

func peerCheckHF(t *testing.T, src, out, adapter string) {
	t.Helper()
	py := needTorch(t)
	args := []string{filepath.Join("testdata", "hf_ref.py"), src, out}
	if adapter != "" {
		args = append(args, adapter)
	}
	if b, err := exec.Command(py, args...).CombinedOutput(); err != nil {
		t.Fatalf("hf_ref.py: %v\n%s", err, b)
	}
}
