package lora

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/lathe-ml/lathe/internal/safetensors"
)

var (
	torchOnce   sync.Once
	torchPython string
	torchErr    error
)

// needTorch returns a python3 that imports torch (Debian's python3-torch
// lives in /usr/bin/python3, which a python3 earlier on PATH may not see).
// It skips the test when there is none, unless LATHE_REQUIRE_PEERS=1.
func needTorch(t *testing.T) string {
	t.Helper()
	torchOnce.Do(func() {
		var msgs []string
		for _, p := range []string{"python3", "/usr/bin/python3"} {
			out, err := exec.Command(p, "-c", "import torch").CombinedOutput()
			if err == nil {
				torchPython = p
				return
			}
			msgs = append(msgs, p+": "+strings.TrimSpace(lastLine(string(out)))+" ("+err.Error()+")")
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

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

func runPeer(t *testing.T, python string, args ...string) {
	t.Helper()
	cmd := exec.Command(python, append([]string{filepath.Join("testdata", "peft_ref.py")}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("peft_ref.py %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPeerReadsSavedAdapter has a tiny independent safetensors parser
// (struct + json) read what Save and SaveValueHead wrote: names, shapes,
// dtypes, values against torch's rounding, adapter_config.json against
// PEFT's fields and layout. PyTorch also merges the adapter, and Merge must
// agree.
func TestPeerReadsSavedAdapter(t *testing.T) {
	python := needTorch(t)
	for _, dtype := range []safetensors.DType{safetensors.F32, safetensors.BF16, safetensors.F16} {
		t.Run(string(dtype), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			c := testConfig()
			tensors := makeTensors(7, c.Rank, testShapes)
			if err := Save(dir, c, tensors, dtype); err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewSource(8))
			vw := randSlice(rng, 8)
			if err := SaveValueHead(dir, vw, 0.375); err != nil {
				t.Fatal(err)
			}

			type tj struct {
				Shape  []int     `json:"shape"`
				Values []float32 `json:"values"`
			}
			exp := map[string]any{
				"dtype": dtype,
				"config": map[string]any{
					"r": c.Rank, "lora_alpha": c.Alpha, "lora_dropout": c.Dropout,
					"target_modules": []string{"down_proj", "q_proj", "v_proj"},
					"use_rslora":     c.RSLoRA, "base_model_name_or_path": c.BaseModel,
				},
				"scale":      c.Scale(),
				"value_head": map[string]any{"w": vw, "bias": 0.375},
			}
			ts := map[string]tj{}
			for name, tt := range tensors {
				ts[name] = tj{tt.Shape, tt.Data}
			}
			exp["tensors"] = ts
			base := map[string][]float32{}
			for m, s := range testShapes {
				base[m] = randSlice(rng, s[0]*s[1])
			}
			exp["merge"] = base
			expPath, outPath := filepath.Join(t.TempDir(), "expect.json"), filepath.Join(t.TempDir(), "out.json")
			writeJSON(t, expPath, exp)

			runPeer(t, python, "read", dir, expPath, outPath)

			var out struct {
				Merged map[string][]float32 `json:"merged"`
			}
			data, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(data, &out); err != nil {
				t.Fatal(err)
			}
			_, loaded, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(out.Merged) != len(testShapes) {
				t.Fatalf("peer merged %d modules, want %d", len(out.Merged), len(testShapes))
			}
			for m, s := range testShapes {
				a, b := loaded[m+".lora_A.weight"], loaded[m+".lora_B.weight"]
				got := Merge(base[m], s[0], s[1], a.Data, b.Data, c.Rank, c.Scale())
				want := out.Merged[m]
				if len(want) != len(got) {
					t.Fatalf("%s: peer merged %d values, want %d", m, len(want), len(got))
				}
				for i := range got {
					// torch's float64 matmul may sum in another order: allow
					// a float32 rounding step.
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*math.Max(1, math.Abs(float64(want[i]))) {
						t.Fatalf("%s[%d]: Merge %v, torch %v", m, i, got[i], want[i])
					}
				}
			}
		})
	}
}

// TestPeerWrittenAdapterLoads loads adapters written by the peer the way PEFT
// lays them out, with and without ".default" in the names.
func TestPeerWrittenAdapterLoads(t *testing.T) {
	python := needTorch(t)
	tests := []struct {
		dtype   string
		dflt    string
		targets []string
	}{
		{"F16", "1", []string{"q_proj", "v_proj"}},
		{"BF16", "0", []string{"q_proj", "v_proj"}},
		{"F32", "1", []string{"q_proj", "v_proj"}},
	}
	for _, tc := range tests {
		t.Run(tc.dtype+"/default="+tc.dflt, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			runPeer(t, python, "write", dir, tc.dtype, tc.dflt)
			c, tensors, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			want := Config{Rank: 4, Alpha: 16, Dropout: 0.05, Targets: tc.targets, RSLoRA: true, BaseModel: "Qwen/Qwen2.5-0.5B"}
			if !reflect.DeepEqual(c, want) {
				t.Errorf("config %+v, want %+v", c, want)
			}
			checkExpect(t, filepath.Join(dir, "expect.json"), tensors)
		})
	}
}
