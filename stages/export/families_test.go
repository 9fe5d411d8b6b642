package export

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/gguf"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// familyModel saves a random model of the family with tinyConfig's shape
// (edit changes the family config) and the testdata tokenizer files.
func familyModel(t *testing.T, modelType string, edit func(*llama.Config)) string {
	t.Helper()
	cfg, err := llama.NewConfig(modelType, tinyConfig)
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(&cfg)
	}
	m, err := llama.New(cfg, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Free()
	if err := m.InitRandom(5, 0.05); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), modelType)
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

// TestExportGGUFFamilies: the gguf format writes the other families in
// their llama.cpp architectures (the f32 file reads back to the same
// logits), logs what llama.cpp reads differently, and fails with
// internal/gguf's reason for a model llama.cpp would misread.
func TestExportGGUFFamilies(t *testing.T) {
	for _, c := range []struct {
		modelType string
		edit      func(*llama.Config)
		arch      string // "" when refused
		log, err  string
	}{
		{modelType: "gemma", edit: func(c *llama.Config) { c.TieEmbeddings = true }, arch: "gemma"},
		{modelType: "phi3", edit: func(c *llama.Config) { c.SlidingWindow = 16 }, arch: "phi3",
			log: "gguf: note: llama.cpp currently ignores Phi-3's sliding window"},
		{modelType: "chatglm", arch: "chatglm"},
		{modelType: "baichuan", err: "applies RoPE only to 32-layer models"},
	} {
		t.Run(c.modelType, func(t *testing.T) {
			base := familyModel(t, c.modelType, c.edit)
			vars := map[string]cty.Value{"base": art(stage.ModelArtifact, base)}
			body := "model = base\nformat = \"gguf\"\nquantization = \"f32\"\nname = \"tiny\"\n"
			if c.err != "" {
				args, diags := decode(body, vars)
				if diags.HasErrors() {
					t.Fatal(diags)
				}
				dir := t.TempDir()
				req := &stage.Request{Address: `export.test`, Args: args, StagingDir: filepath.Join(dir, "staging"),
					ScratchDir: filepath.Join(dir, "scratch"), CheckpointDir: filepath.Join(dir, "ckpt"), Reporter: &recorder{}}
				for _, d := range []string{req.StagingDir, req.ScratchDir, req.CheckpointDir} {
					if err := os.MkdirAll(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
				_, err := Kind().Run(context.Background(), req)
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				return
			}
			out, rep := runExport(t, body, vars)
			f, err := gguf.Open(filepath.Join(out, ggufFile))
			if err != nil {
				t.Fatal(err)
			}
			arch := f.Metadata["general.architecture"]
			f.Close()
			if arch != c.arch {
				t.Errorf("architecture %v, want %s", arch, c.arch)
			}
			if c.log != "" && !rep.has(c.log) {
				t.Errorf("no %q in %q", c.log, rep.logs)
			}
			back := filepath.Join(t.TempDir(), "back")
			if err := gguf.ReadHF(filepath.Join(out, ggufFile), back); err != nil {
				t.Fatal(err)
			}
			if got, want := loadLogits(t, back), loadLogits(t, base); !slices.Equal(got, want) {
				t.Errorf("f32 GGUF: logits differ (rel err %g)", relErr(got, want))
			}
		})
	}
}
