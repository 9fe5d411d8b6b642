package lora

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/safetensors"
)

// testShapes are the [out, in] of the adapted modules of a small model.
var testShapes = map[string][2]int{
	"model.layers.0.self_attn.q_proj": {8, 8},
	"model.layers.0.self_attn.v_proj": {4, 8},
	"model.layers.1.self_attn.q_proj": {8, 8},
	"model.layers.1.mlp.down_proj":    {8, 12},
}

// makeTensors builds random A [rank, in] and B [out, rank] for the modules.
func makeTensors(seed int64, rank int, shapes map[string][2]int) map[string]Tensor {
	rng := rand.New(rand.NewSource(seed))
	out := make(map[string]Tensor)
	for _, m := range slices.Sorted(maps.Keys(shapes)) {
		s := shapes[m]
		out[m+".lora_A.weight"] = Tensor{Shape: []int{rank, s[1]}, Data: randSlice(rng, rank*s[1])}
		out[m+".lora_B.weight"] = Tensor{Shape: []int{s[0], rank}, Data: randSlice(rng, s[0]*rank)}
	}
	return out
}

func testConfig() Config {
	return Config{Rank: 4, Alpha: 16, Dropout: 0.05, Targets: []string{"all"}, RSLoRA: true, BaseModel: "Qwen/Qwen2.5-0.5B"}
}

// roundTrip is v stored as dtype and read back.
func roundTrip(t *testing.T, dtype safetensors.DType, v []float32) []float32 {
	t.Helper()
	raw, err := safetensors.EncodeFloat32(dtype, v)
	if err != nil {
		t.Fatal(err)
	}
	back, err := safetensors.DecodeFloat32(dtype, raw)
	if err != nil {
		t.Fatal(err)
	}
	return back
}

func TestSaveLoadRoundTrip(t *testing.T) {
	tests := []struct {
		dtype, stored safetensors.DType
		targets       []string
	}{
		{safetensors.F32, safetensors.F32, []string{"all"}},
		{"", safetensors.F32, []string{"v_proj", "q_proj", "down_proj", "gate_proj"}},
		{safetensors.BF16, safetensors.BF16, []string{"all"}},
		{safetensors.F16, safetensors.F16, []string{"q_proj", "v_proj", "down_proj"}},
	}
	for _, tc := range tests {
		t.Run(string(tc.stored)+"/"+strings.Join(tc.targets, ","), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "adapter")
			c := testConfig()
			c.Targets = tc.targets
			tensors := makeTensors(1, c.Rank, testShapes)
			if err := Save(dir, c, tensors, tc.dtype); err != nil {
				t.Fatal(err)
			}
			entries, err := os.ReadDir(dir)
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if want := []string{ConfigFile, WeightsFile}; !slices.Equal(names, want) {
				t.Fatalf("directory holds %q, want %q (no temporary files left)", names, want)
			}

			// The file has PEFT's names, the dtype and format=pt.
			f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
			if err != nil {
				t.Fatal(err)
			}
			if md := f.Metadata(); !reflect.DeepEqual(md, map[string]string{"format": "pt"}) {
				t.Errorf("metadata %v", md)
			}
			var fileNames []string
			for _, ti := range f.Tensors() {
				fileNames = append(fileNames, ti.Name)
				if ti.DType != tc.stored {
					t.Errorf("%s: dtype %s, want %s", ti.Name, ti.DType, tc.stored)
				}
			}
			f.Close()
			var wantNames []string
			for n := range tensors {
				wantNames = append(wantNames, "base_model.model."+n)
			}
			slices.Sort(wantNames)
			if !slices.Equal(fileNames, wantNames) {
				t.Fatalf("file tensors %q, want %q", fileNames, wantNames)
			}

			gotCfg, got, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			wantCfg := c
			wantCfg.Targets = []string{"down_proj", "q_proj", "v_proj"}
			if !reflect.DeepEqual(gotCfg, wantCfg) {
				t.Errorf("config %+v, want %+v", gotCfg, wantCfg)
			}
			if len(got) != len(tensors) {
				t.Fatalf("loaded %d tensors, want %d", len(got), len(tensors))
			}
			for name, want := range tensors {
				g, ok := got[name]
				if !ok {
					t.Fatalf("tensor %q missing after load", name)
				}
				if !slices.Equal(g.Shape, want.Shape) {
					t.Errorf("%s: shape %v, want %v", name, g.Shape, want.Shape)
				}
				if w := roundTrip(t, tc.stored, want.Data); !slices.Equal(g.Data, w) {
					t.Errorf("%s: values differ", name)
				}
				if tc.stored == safetensors.F32 && !slices.Equal(g.Data, want.Data) {
					t.Errorf("%s: F32 values are not exact", name)
				}
			}

			// Saving what was loaded gives the same files.
			dir2 := filepath.Join(t.TempDir(), "again")
			if err := Save(dir2, gotCfg, got, tc.stored); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{ConfigFile, WeightsFile} {
				a, _ := os.ReadFile(filepath.Join(dir, name))
				b, _ := os.ReadFile(filepath.Join(dir2, name))
				if !bytes.Equal(a, b) {
					t.Errorf("%s differs after load and save", name)
				}
			}
		})
	}
}

func TestSaveConfigGolden(t *testing.T) {
	dir := t.TempDir()
	if err := Save(dir, testConfig(), makeTensors(1, 4, testShapes), safetensors.F32); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join("testdata", "adapter_config.golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("adapter_config.json:\n%s\nwant:\n%s", got, want)
	}

	// Without a base model the field is null; alpha and dropout keep their
	// fractions.
	c := Config{Rank: 4, Alpha: 6.5, Dropout: 0, Targets: []string{"all"}}
	if err := Save(dir, c, makeTensors(1, 4, testShapes), safetensors.F32); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	data, _ := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if v, ok := m["base_model_name_or_path"]; !ok || v != nil {
		t.Errorf("base_model_name_or_path = %v (present %v), want null", v, ok)
	}
	if m["lora_alpha"] != 6.5 || m["lora_dropout"] != 0.0 || m["use_rslora"] != false {
		t.Errorf("config %v", m)
	}
}

// TestLoadPEFTFixture reads an adapter written as PEFT writes it (BF16, a
// PEFT 0.13 adapter_config.json with keys lathe ignores), made by
// testdata/peft_ref.py write testdata/peft_bf16 BF16 0.
func TestLoadPEFTFixture(t *testing.T) {
	dir := filepath.Join("testdata", "peft_bf16")
	c, tensors, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{Rank: 4, Alpha: 16, Dropout: 0.05, Targets: []string{"q_proj", "v_proj"}, RSLoRA: true, BaseModel: "Qwen/Qwen2.5-0.5B"}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config %+v, want %+v", c, want)
	}
	checkExpect(t, filepath.Join(dir, "expect.json"), tensors)
}

// checkExpect compares tensors with an expect.json of testdata/peft_ref.py.
func checkExpect(t *testing.T, path string, tensors map[string]Tensor) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Tensors map[string]struct {
			Shape  []int     `json:"shape"`
			Values []float32 `json:"values"`
		} `json:"tensors"`
	}
	if err := json.Unmarshal(data, &exp); err != nil {
		t.Fatal(err)
	}
	if len(exp.Tensors) == 0 || len(tensors) != len(exp.Tensors) {
		t.Fatalf("loaded %d tensors, %s has %d", len(tensors), path, len(exp.Tensors))
	}
	for name, e := range exp.Tensors {
		g, ok := tensors[name]
		if !ok {
			t.Fatalf("tensor %q missing", name)
		}
		if !slices.Equal(g.Shape, e.Shape) || !slices.Equal(g.Data, e.Values) {
			t.Errorf("%s: got %v %v, want %v %v", name, g.Shape, g.Data, e.Shape, e.Values)
		}
	}
}

// rawAdapter is an adapter directory's content before it is written: the
// config as a JSON object and the tensors under their names in the file.
type rawAdapter struct {
	cfg     map[string]any
	tensors map[string]safetensors.Tensor
}

// baseRaw is a valid adapter (F32, r = 4, q_proj/v_proj/down_proj) as raw
// content, from Save's output.
func baseRaw(t *testing.T) rawAdapter {
	t.Helper()
	dir := t.TempDir()
	if err := Save(dir, testConfig(), makeTensors(3, 4, testShapes), safetensors.F32); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	r := rawAdapter{tensors: map[string]safetensors.Tensor{}}
	if err := json.Unmarshal(data, &r.cfg); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, ti := range f.Tensors() {
		b, err := f.Bytes(ti.Name)
		if err != nil {
			t.Fatal(err)
		}
		r.tensors[ti.Name] = safetensors.Tensor{Name: ti.Name, DType: ti.DType, Shape: ti.Shape, Data: b}
	}
	return r
}

func (r rawAdapter) write(t *testing.T, dir string) {
	t.Helper()
	if r.cfg != nil {
		data, err := json.Marshal(r.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if r.tensors != nil {
		var ts []safetensors.Tensor
		for _, name := range slices.Sorted(maps.Keys(r.tensors)) {
			tt := r.tensors[name]
			tt.Name = name
			ts = append(ts, tt)
		}
		if err := safetensors.WriteFile(filepath.Join(dir, WeightsFile), ts, map[string]string{"format": "pt"}); err != nil {
			t.Fatal(err)
		}
	}
}

// rename moves tensor from to to.
func (r rawAdapter) rename(from, to string) {
	tt := r.tensors[from]
	delete(r.tensors, from)
	r.tensors[to] = tt
}

// f32Tensor is a raw F32 tensor of the shape filled with 0.5.
func f32Tensor(t *testing.T, shape ...int) safetensors.Tensor {
	t.Helper()
	n := 1
	for _, d := range shape {
		n *= d
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = 0.5
	}
	tt, err := safetensors.Float32Tensor("x", safetensors.F32, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	return tt
}

const (
	q0A = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
	q0B = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"
	v0A = "base_model.model.model.layers.0.self_attn.v_proj.lora_A.weight"
)

func TestLoadDefaultAdapterNames(t *testing.T) {
	for _, which := range []string{"all", "some"} {
		t.Run(which, func(t *testing.T) {
			r := baseRaw(t)
			dir := t.TempDir()
			r.write(t, dir)
			wantCfg, want, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range slices.Sorted(maps.Keys(r.tensors)) {
				if which == "some" && !strings.Contains(name, "lora_A") {
					continue
				}
				base, _ := strings.CutSuffix(name, ".weight")
				r.rename(name, base+".default.weight")
			}
			dir2 := t.TempDir()
			r.write(t, dir2)
			gotCfg, got, err := Load(dir2)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotCfg, wantCfg) || !reflect.DeepEqual(got, want) {
				t.Fatal("names with .default load differently")
			}
		})
	}
}

func TestLoadAccepts(t *testing.T) {
	tests := []struct {
		name  string
		mut   func(r rawAdapter)
		check func(t *testing.T, c Config)
	}{
		{"target_modules all-linear", func(r rawAdapter) { r.cfg["target_modules"] = "all-linear" }, nil},
		{"target_modules regex", func(r rawAdapter) { r.cfg["target_modules"] = `.*\.(q_proj|v_proj|down_proj)` }, nil},
		{"target_modules null", func(r rawAdapter) { r.cfg["target_modules"] = nil }, nil},
		{"target_modules absent", func(r rawAdapter) { delete(r.cfg, "target_modules") }, nil},
		{"target_modules path suffixes", func(r rawAdapter) {
			r.cfg["target_modules"] = []string{"self_attn.q_proj", "model.layers.0.self_attn.v_proj", "down_proj", "gate_proj"}
		}, nil},
		{"PEFT defaults for alpha and dropout", func(r rawAdapter) {
			delete(r.cfg, "lora_alpha")
			delete(r.cfg, "lora_dropout")
			delete(r.cfg, "use_rslora")
		}, func(t *testing.T, c Config) {
			if c.Alpha != 8 || c.Dropout != 0 || c.RSLoRA {
				t.Errorf("config %+v, want PEFT's defaults alpha 8, dropout 0, no rsLoRA", c)
			}
		}},
		{"nulls and empties", func(r rawAdapter) {
			r.cfg["rank_pattern"] = nil
			r.cfg["alpha_pattern"] = nil
			r.cfg["use_dora"] = nil
			r.cfg["bias"] = nil
			r.cfg["modules_to_save"] = []string{}
			r.cfg["base_model_name_or_path"] = nil
		}, func(t *testing.T, c Config) {
			if c.BaseModel != "" {
				t.Errorf("base model %q", c.BaseModel)
			}
		}},
		{"keys of newer PEFT versions", func(r rawAdapter) {
			r.cfg["lora_bias"] = false
			r.cfg["eva_config"] = nil
			r.cfg["exclude_modules"] = nil
			r.cfg["loftq_config"] = map[string]any{}
			r.cfg["init_lora_weights"] = "gaussian"
			r.cfg["task_type"] = nil
		}, nil},
		{"layers_to_transform", func(r rawAdapter) { r.cfg["layers_to_transform"] = []int{0, 1} }, nil},
		{"r by default", func(r rawAdapter) {
			delete(r.cfg, "r")
			for name, tt := range r.tensors {
				if strings.Contains(name, "lora_A") {
					r.tensors[name] = f32Tensor(t, 8, tt.Shape[1])
				} else {
					r.tensors[name] = f32Tensor(t, tt.Shape[0], 8)
				}
			}
		}, func(t *testing.T, c Config) {
			if c.Rank != 8 {
				t.Errorf("rank %d, want PEFT's default 8", c.Rank)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRaw(t)
			tc.mut(r)
			dir := t.TempDir()
			r.write(t, dir)
			c, tensors, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(c.Targets, []string{"down_proj", "q_proj", "v_proj"}) || len(tensors) != 8 {
				t.Errorf("targets %q, %d tensors", c.Targets, len(tensors))
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestLoadRejects(t *testing.T) {
	tests := []struct {
		name   string
		mut    func(r *rawAdapter)
		setup  func(t *testing.T, dir string)
		wantIn []string
	}{
		{name: "peft_type", mut: func(r *rawAdapter) { r.cfg["peft_type"] = "PREFIX_TUNING" },
			wantIn: []string{ConfigFile, `peft_type is "PREFIX_TUNING"`, "only LORA"}},
		{name: "peft_type missing", mut: func(r *rawAdapter) { delete(r.cfg, "peft_type") },
			wantIn: []string{ConfigFile, "peft_type is missing"}},
		{name: "use_dora", mut: func(r *rawAdapter) { r.cfg["use_dora"] = true },
			wantIn: []string{ConfigFile, "use_dora is true", "DoRA"}},
		{name: "fan_in_fan_out", mut: func(r *rawAdapter) { r.cfg["fan_in_fan_out"] = true },
			wantIn: []string{ConfigFile, "fan_in_fan_out is true"}},
		{name: "rank_pattern", mut: func(r *rawAdapter) { r.cfg["rank_pattern"] = map[string]any{"q_proj": 16} },
			wantIn: []string{ConfigFile, "rank_pattern has 1 entries"}},
		{name: "alpha_pattern", mut: func(r *rawAdapter) { r.cfg["alpha_pattern"] = map[string]any{"v_proj": 32, "q_proj": 8} },
			wantIn: []string{ConfigFile, "alpha_pattern has 2 entries"}},
		{name: "bias", mut: func(r *rawAdapter) { r.cfg["bias"] = "lora_only" },
			wantIn: []string{ConfigFile, `bias is "lora_only"`}},
		{name: "modules_to_save", mut: func(r *rawAdapter) { r.cfg["modules_to_save"] = []string{"lm_head"} },
			wantIn: []string{ConfigFile, "modules_to_save", "lm_head"}},
		{name: "fractional r", mut: func(r *rawAdapter) { r.cfg["r"] = 4.5 },
			wantIn: []string{ConfigFile, "r must be a positive integer, got 4.5"}},
		{name: "zero r", mut: func(r *rawAdapter) { r.cfg["r"] = 0 },
			wantIn: []string{ConfigFile, "r must be a positive integer, got 0"}},
		{name: "r as string", mut: func(r *rawAdapter) { r.cfg["r"] = "4" },
			wantIn: []string{ConfigFile, "invalid JSON", "r"}},
		{name: "target_modules type", mut: func(r *rawAdapter) { r.cfg["target_modules"] = 5 },
			wantIn: []string{ConfigFile, "target_modules must be a list of names or a string, got 5"}},
		{name: "module not targeted", mut: func(r *rawAdapter) { r.cfg["target_modules"] = []string{"q_proj", "v_proj"} },
			wantIn: []string{WeightsFile, `module "model.layers.1.mlp.down_proj"`, "matches no entry of target_modules"}},
		{name: "dropout", mut: func(r *rawAdapter) { r.cfg["lora_dropout"] = 1.0 },
			wantIn: []string{ConfigFile, "dropout must be in [0, 1), got 1"}},
		{name: "alpha", mut: func(r *rawAdapter) { r.cfg["lora_alpha"] = -16 },
			wantIn: []string{ConfigFile, "alpha must be a finite number > 0, got -16"}},
		{name: "missing B", mut: func(r *rawAdapter) { delete(r.tensors, q0B) },
			wantIn: []string{WeightsFile, `tensor "` + q0A + `" has no partner "` + q0B + `"`}},
		{name: "missing A", mut: func(r *rawAdapter) { delete(r.tensors, q0A) },
			wantIn: []string{WeightsFile, `tensor "` + q0B + `" has no partner "` + q0A + `"`}},
		{name: "missing A with .default names", mut: func(r *rawAdapter) {
			delete(r.tensors, q0A)
			r.rename(q0B, strings.Replace(q0B, ".weight", ".default.weight", 1))
		}, wantIn: []string{WeightsFile, `lora_B.default.weight" has no partner "` + q0A + `"`}},
		{name: "config rank differs", mut: func(r *rawAdapter) { r.cfg["r"] = 2 },
			wantIn: []string{WeightsFile, "shape [4 8], want lora_A [r, in] with r = 2 (r in adapter_config.json)"}},
		{name: "B rank differs from A", mut: func(r *rawAdapter) { r.tensors[q0B] = f32Tensor(t, 8, 3) },
			wantIn: []string{WeightsFile, q0B, "shape [8 3], want lora_B [out, r] with r = 4"}},
		{name: "A rank differs", mut: func(r *rawAdapter) { r.tensors[v0A] = f32Tensor(t, 5, 8) },
			wantIn: []string{WeightsFile, v0A, "shape [5 8], want lora_A [r, in] with r = 4"}},
		{name: "3-D tensor", mut: func(r *rawAdapter) { r.tensors[q0A] = f32Tensor(t, 4, 8, 1) },
			wantIn: []string{WeightsFile, q0A, "shape [4 8 1] is not a matrix"}},
		{name: "zero dimension", mut: func(r *rawAdapter) { r.tensors[q0A] = f32Tensor(t, 4, 0) },
			wantIn: []string{WeightsFile, q0A, "not a matrix with positive dimensions"}},
		{name: "not a LoRA tensor", mut: func(r *rawAdapter) { r.tensors["base_model.model.lm_head.weight"] = f32Tensor(t, 2, 2) },
			wantIn: []string{WeightsFile, `"base_model.model.lm_head.weight"`, "not a LoRA weight"}},
		{name: "DoRA magnitude", mut: func(r *rawAdapter) {
			r.tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = f32Tensor(t, 8)
		}, wantIn: []string{WeightsFile, "lora_magnitude_vector", "not a LoRA weight"}},
		{name: "other adapter name", mut: func(r *rawAdapter) { r.rename(q0A, strings.Replace(q0A, ".weight", ".other.weight", 1)) },
			wantIn: []string{WeightsFile, "lora_A.other.weight", "not a LoRA weight"}},
		{name: "no prefix", mut: func(r *rawAdapter) { r.rename(q0A, strings.TrimPrefix(q0A, "base_model.model.")) },
			wantIn: []string{WeightsFile, `does not start with "base_model.model."`}},
		{name: "empty module", mut: func(r *rawAdapter) { r.tensors["base_model.model..lora_A.weight"] = f32Tensor(t, 4, 2) },
			wantIn: []string{WeightsFile, "not a LoRA weight"}},
		{name: "duplicate with .default", mut: func(r *rawAdapter) {
			r.tensors[strings.Replace(q0A, ".weight", ".default.weight", 1)] = r.tensors[q0A]
		}, wantIn: []string{WeightsFile, "are the same parameter", "model.layers.0.self_attn.q_proj.lora_A.weight"}},
		{name: "dtype F64", mut: func(r *rawAdapter) {
			tt, _ := safetensors.Float32Tensor("x", safetensors.F64, []int{4, 8}, make([]float32, 32))
			r.tensors[q0A] = tt
		}, wantIn: []string{WeightsFile, q0A, "dtype F64 is not supported"}},
		{name: "dtype I32", mut: func(r *rawAdapter) {
			r.tensors[q0A] = safetensors.Tensor{DType: safetensors.I32, Shape: []int{4, 8}, Data: make([]byte, 4*32)}
		}, wantIn: []string{WeightsFile, q0A, "dtype I32 is not supported"}},
		{name: "no tensors", mut: func(r *rawAdapter) { clear(r.tensors) },
			wantIn: []string{WeightsFile, "no LoRA tensors"}},
		{name: "invalid JSON", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`{"peft_type": "LORA",`), 0o644)
		}, wantIn: []string{ConfigFile, "invalid JSON"}},
		{name: "JSON array", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`["LORA"]`), 0o644)
		}, wantIn: []string{ConfigFile, "invalid JSON"}},
		{name: "JSON null", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, ConfigFile), []byte(`null`), 0o644)
		}, wantIn: []string{ConfigFile, "peft_type is missing"}},
		{name: "no config", setup: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, ConfigFile)) },
			wantIn: []string{ConfigFile, "no such file"}},
		{name: "no weights", setup: func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, WeightsFile)) },
			wantIn: []string{WeightsFile, "no such file"}},
		{name: "pickle weights", setup: func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, WeightsFile))
			os.WriteFile(filepath.Join(dir, "adapter_model.bin"), []byte("PK"), 0o644)
		}, wantIn: []string{WeightsFile, "pickle adapter_model.bin"}},
		{name: "corrupt weights", setup: func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, WeightsFile), []byte("\x10\x00\x00\x00\x00\x00\x00\x00{"), 0o644)
		}, wantIn: []string{WeightsFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := baseRaw(t)
			if tc.mut != nil {
				tc.mut(&r)
			}
			dir := t.TempDir()
			r.write(t, dir)
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			c, tensors, err := Load(dir)
			if err == nil {
				t.Fatalf("Load accepted it: %+v, %d tensors", c, len(tensors))
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "lora: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			for _, w := range tc.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestSaveRejects(t *testing.T) {
	tests := []struct {
		name   string
		mut    func(c *Config, ts map[string]Tensor)
		dtype  safetensors.DType
		wantIn []string
	}{
		{name: "dtype F64", dtype: safetensors.F64, wantIn: []string{`dtype "F64" is not supported`}},
		{name: "dtype I8", dtype: safetensors.I8, wantIn: []string{`dtype "I8" is not supported`}},
		{name: "invalid config", mut: func(c *Config, _ map[string]Tensor) { c.Rank, c.Dropout = 0, 2 },
			wantIn: []string{"invalid config", "rank must be >= 1", "dropout must be in [0, 1)"}},
		{name: "no tensors", mut: func(_ *Config, ts map[string]Tensor) { clear(ts) }, wantIn: []string{"no LoRA tensors"}},
		{name: "missing B", mut: func(_ *Config, ts map[string]Tensor) { delete(ts, "model.layers.0.self_attn.q_proj.lora_B.weight") },
			wantIn: []string{`tensor "model.layers.0.self_attn.q_proj.lora_A.weight" has no partner "model.layers.0.self_attn.q_proj.lora_B.weight"`}},
		{name: "rank differs", mut: func(c *Config, _ map[string]Tensor) { c.Rank = 8 },
			wantIn: []string{"want lora_A [r, in] with r = 8"}},
		{name: "B rank", mut: func(_ *Config, ts map[string]Tensor) {
			ts["model.layers.0.self_attn.v_proj.lora_B.weight"] = Tensor{Shape: []int{4, 2}, Data: make([]float32, 8)}
		}, wantIn: []string{`"model.layers.0.self_attn.v_proj.lora_B.weight": shape [4 2], want lora_B [out, r] with r = 4`}},
		{name: "data length", mut: func(_ *Config, ts map[string]Tensor) {
			ts["model.layers.0.self_attn.v_proj.lora_B.weight"] = Tensor{Shape: []int{4, 4}, Data: make([]float32, 15)}
		}, wantIn: []string{"shape [4 4] needs 16 values, got 15"}},
		{name: "vector", mut: func(_ *Config, ts map[string]Tensor) {
			ts["model.layers.0.self_attn.v_proj.lora_B.weight"] = Tensor{Shape: []int{4}, Data: make([]float32, 4)}
		}, wantIn: []string{"shape [4] is not a matrix"}},
		{name: "not a LoRA name", mut: func(_ *Config, ts map[string]Tensor) {
			ts["model.layers.0.self_attn.q_proj.weight"] = Tensor{Shape: []int{2, 2}, Data: make([]float32, 4)}
		}, wantIn: []string{`"model.layers.0.self_attn.q_proj.weight" is not a LoRA weight`}},
		{name: "kind not targeted", mut: func(c *Config, _ map[string]Tensor) { c.Targets = []string{"q_proj", "v_proj"} },
			wantIn: []string{`module "model.layers.1.mlp.down_proj"`, `kind "down_proj" is not among the targets`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig()
			ts := makeTensors(1, 4, testShapes)
			if tc.mut != nil {
				tc.mut(&c, ts)
			}
			dir := filepath.Join(t.TempDir(), "adapter")
			err := Save(dir, c, ts, tc.dtype)
			if err == nil {
				t.Fatal("Save accepted it")
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "lora: save ") {
				t.Errorf("error %q lacks the prefix", err)
			}
			for _, w := range tc.wantIn {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if _, statErr := os.Stat(dir); statErr == nil {
				t.Errorf("Save created %s although it failed", dir)
			}
		})
	}

	// A directory that cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	if err := Save(filepath.Join(file, "adapter"), testConfig(), makeTensors(1, 4, testShapes), ""); err == nil {
		t.Error("Save under a regular file succeeded")
	}
}

func TestValueHeadRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rm")
	w := []float32{0.25, -1.5, 3, 1e-3, -7}
	if err := SaveValueHead(dir, w, -0.125); err != nil {
		t.Fatal(err)
	}
	f, err := safetensors.Open(filepath.Join(dir, ValueHeadFile))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ti := range f.Tensors() {
		got = append(got, fmt.Sprintf("%s %s %v", ti.Name, ti.DType, ti.Shape))
	}
	f.Close()
	if want := []string{"v_head.summary.bias F32 [1]", "v_head.summary.weight F32 [1 5]"}; !slices.Equal(got, want) {
		t.Fatalf("value head file holds %q, want %q", got, want)
	}
	gw, gb, err := LoadValueHead(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gw, w) || gb != -0.125 {
		t.Fatalf("LoadValueHead = %v, %v", gw, gb)
	}
	if err := SaveValueHead(dir, nil, 0); err == nil || !strings.Contains(err.Error(), "empty weight") {
		t.Errorf("SaveValueHead(nil) = %v", err)
	}
}

func TestLoadValueHead(t *testing.T) {
	bf16 := func(name string, shape []int, v []float32) safetensors.Tensor {
		tt, err := safetensors.Float32Tensor(name, safetensors.BF16, shape, v)
		if err != nil {
			t.Fatal(err)
		}
		return tt
	}
	goodW := bf16("v_head.summary.weight", []int{1, 3}, []float32{1, 2, 3})
	goodB := bf16("v_head.summary.bias", []int{1}, []float32{0.5})
	tests := []struct {
		name    string
		tensors []safetensors.Tensor
		setup   func(dir string)
		wantIn  []string // nil: accepted
	}{
		{name: "bf16", tensors: []safetensors.Tensor{goodW, goodB}},
		{name: "weight vector", tensors: []safetensors.Tensor{bf16("v_head.summary.weight", []int{3}, []float32{1, 2, 3}), goodB},
			wantIn: []string{`"v_head.summary.weight": shape [3], want [1, hidden]`}},
		{name: "two outputs", tensors: []safetensors.Tensor{bf16("v_head.summary.weight", []int{2, 3}, make([]float32, 6)), goodB},
			wantIn: []string{"shape [2 3], want [1, hidden]"}},
		{name: "scalar bias", tensors: []safetensors.Tensor{goodW, bf16("v_head.summary.bias", []int{}, []float32{1})},
			wantIn: []string{`"v_head.summary.bias": shape [], want [1]`}},
		{name: "missing bias", tensors: []safetensors.Tensor{goodW},
			wantIn: []string{`"v_head.summary.bias" is missing`}},
		{name: "missing weight", tensors: []safetensors.Tensor{goodB},
			wantIn: []string{`"v_head.summary.weight" is missing`}},
		{name: "extra tensor", tensors: []safetensors.Tensor{goodW, goodB, bf16("lm_head.weight", []int{1}, []float32{1})},
			wantIn: []string{`unexpected tensor "lm_head.weight"`}},
		{name: "int dtype", tensors: []safetensors.Tensor{goodW, {Name: "v_head.summary.bias", DType: safetensors.I32, Shape: []int{1}, Data: make([]byte, 4)}},
			wantIn: []string{"dtype I32 is not supported"}},
		{name: "missing file", wantIn: []string{ValueHeadFile, "no such file"}},
		{name: "pickle", setup: func(dir string) { os.WriteFile(filepath.Join(dir, "value_head.bin"), []byte("PK"), 0o644) },
			wantIn: []string{"pickle value_head.bin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.tensors != nil {
				if err := safetensors.WriteFile(filepath.Join(dir, ValueHeadFile), tc.tensors, nil); err != nil {
					t.Fatal(err)
				}
			}
			if tc.setup != nil {
				tc.setup(dir)
			}
			w, b, err := LoadValueHead(dir)
			if tc.wantIn == nil {
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(w, []float32{1, 2, 3}) || b != 0.5 {
					t.Fatalf("LoadValueHead = %v, %v", w, b)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadValueHead accepted it")
			}
			if !strings.HasPrefix(err.Error(), "lora: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			for _, s := range tc.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
		})
	}
}
