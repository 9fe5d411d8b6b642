package gguf

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// nodeLlamaCpp returns node and testdata/js/node_modules, which holds
// node-llama-cpp (llama.cpp's prebuilt CPU library for Linux x64 with
// JavaScript bindings; `make deps` installs it). It skips the test when
// either is missing, unless LATHE_REQUIRE_PEERS=1 makes that a failure.
func nodeLlamaCpp(t *testing.T) (node, modules string) {
	t.Helper()
	modules, err := filepath.Abs(filepath.Join("testdata", "js", "node_modules"))
	if err != nil {
		t.Fatal(err)
	}
	node, err = exec.LookPath("node")
	msg := ""
	if err != nil {
		msg = "no node: " + err.Error()
	} else if _, err := os.Stat(filepath.Join(modules, "node-llama-cpp", "dist", "index.js")); err != nil {
		msg = "no node-llama-cpp in testdata/js (make deps installs it)"
	}
	if msg != "" {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatal(msg + " (LATHE_REQUIRE_PEERS=1)")
		}
		t.Skip(msg)
	}
	return node, modules
}

// TestPeerLlamaCpp loads the F32 GGUF file of each family and of the
// Llama/Qwen specs in llama.cpp itself (through node-llama-cpp) and
// compares its logits at every position with lathe's engine on the source
// model: llama.cpp must compute the same function from the file as lathe
// does from the checkpoint.
func TestPeerLlamaCpp(t *testing.T) {
	node, modules := nodeLlamaCpp(t)
	ids := []int32{5, 17, 42, 100, 3, 250, 1, 77, 31, 8, 199, 64}
	var idStr []string
	for _, id := range ids {
		idStr = append(idStr, strconv.Itoa(int(id)))
	}
	run := func(t *testing.T, dir string, V int) {
		want := famLogits(t, dir)
		tmp := t.TempDir()
		path := filepath.Join(tmp, "m.gguf")
		if _, err := WriteFromHF(path, dir, WriteOptions{Type: F32, Name: "tiny"}); err != nil {
			t.Fatal(err)
		}
		outPath := filepath.Join(tmp, "logits.json")
		cmd := exec.Command(node, filepath.Join("testdata", "js", "logits.mjs"), modules, path, strings.Join(idStr, ","), outPath)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("node-llama-cpp: %v\n%s", err, out)
		}
		raw, err := os.ReadFile(outPath)
		if err != nil {
			t.Fatal(err)
		}
		var rows []map[string]float64
		if err := json.Unmarshal(raw, &rows); err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(ids) {
			t.Fatalf("llama.cpp gave %d rows of logits, want %d", len(rows), len(ids))
		}
		scale, diff := 0.0, 0.0
		for p, row := range rows {
			if len(row) != V {
				t.Fatalf("position %d: %d logits, want %d", p, len(row), V)
			}
			for tok, got := range row {
				id, _ := strconv.Atoi(tok)
				w := float64(want[p*V+id])
				scale = max(scale, math.Abs(w))
				diff = max(diff, math.Abs(got-w))
			}
		}
		t.Logf("max |logit diff| llama.cpp vs lathe %.3g (max |logit| %.3g)", diff, scale)
		if diff > 1e-3*scale {
			t.Errorf("llama.cpp's logits differ from lathe's by %g (max |logit| %g)", diff, scale)
		}
	}
	// llama.cpp's loader needs a token for every byte, which the small
	// fixtures lack; the architecture is what this checks.
	bytesTok := map[string]any{"eos_token": "<|endoftext|>"}
	for _, fc := range famCases() {
		t.Run(fc.name, func(t *testing.T) {
			fc.tok, fc.tokConfig = "bytes", bytesTok
			if rs := fc.config["rope_scaling"]; rs != nil {
				// llama.cpp picks longrope's long factors when its context
				// (at least 256: it pads) exceeds the original length,
				// transformers and lathe when the sequence does; and it
				// ignores Phi-3's window. Keep both out of the comparison.
				fc.base.MaxPositions, fc.edit = 1024, nil
				fc.config = map[string]any{"original_max_position_embeddings": 256, "rope_scaling": rs}
			}
			dir, _ := makeFamilyDir(t, fc)
			run(t, dir, fc.base.VocabSize)
		})
	}
	for _, s := range specs() {
		t.Run(s.name, func(t *testing.T) {
			dir, _ := makeModelDir(t, s)
			writeJSONFile(t, filepath.Join(dir, "tokenizer.json"), byteTokenizer())
			writeJSONFile(t, filepath.Join(dir, "tokenizer_config.json"), bytesTok)
			run(t, dir, s.int("vocab_size"))
		})
	}
}
