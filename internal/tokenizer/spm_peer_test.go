package tokenizer

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// spmTool returns the path of a Debian sentencepiece tool, skipping (or
// failing under LATHE_REQUIRE_PEERS=1) when it is missing.
func spmTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		msg := fmt.Sprintf("%s not found (apt-get install sentencepiece): %v", name, err)
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return p
}

func runSpm(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return out
}

// TestPeerSentencePieceDir trains a BPE and a unigram model with spm_train
// on the multilingual corpus, puts each in a model directory as its only
// tokenizer file (with a Baichuan-style tokenizer_config.json), and checks
// that the tokenizer LoadDir gives encodes every corpus line to
// spm_encode's ids.
func TestPeerSentencePieceDir(t *testing.T) {
	train, encode := spmTool(t, "spm_train"), spmTool(t, "spm_encode")
	corpusPath := filepath.Join("testdata", "corpus.txt")
	corpus, err := os.ReadFile(corpusPath)
	if err != nil {
		t.Fatal(err)
	}
	// The one line with literal <s>/</s>/<unk> is split at them by the
	// slow-tokenizer rules (TestSentencePieceGolden checks it).
	var lines []string
	for _, l := range splitLines(string(corpus)) {
		if !strings.Contains(l, "<s>") {
			lines = append(lines, l)
		}
	}
	input := []byte(strings.Join(lines, "\n") + "\n")
	for _, c := range []struct {
		name string
		args []string
	}{
		// Baichuan 2's settings: BPE, no normalization, no dummy prefix,
		// digits split, byte fallback, user-defined reserved tokens.
		{"bpe_baichuan_like", []string{"--model_type=bpe", "--vocab_size=600", "--character_coverage=0.98", "--normalization_rule_name=identity",
			"--add_dummy_prefix=false", "--remove_extra_whitespaces=false", "--split_digits=true", "--byte_fallback=true", "--user_defined_symbols=<reserved_106>,<reserved_107>"}},
		{"unigram_nmt", []string{"--model_type=unigram", "--vocab_size=500", "--character_coverage=0.98"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			prefix := filepath.Join(dir, "m")
			runSpm(t, nil, train, append([]string{"--input=" + corpusPath, "--model_prefix=" + prefix, "--minloglevel=2", "--num_threads=1", "--seed_sentencepiece_size=20000"}, c.args...)...)
			mdir := filepath.Join(dir, "model")
			os.Mkdir(mdir, 0o755)
			b, err := os.ReadFile(prefix + ".model")
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(filepath.Join(mdir, ModelFile), b, 0o644)
			os.WriteFile(filepath.Join(mdir, ConfigFile), []byte(`{"tokenizer_class": "BaichuanTokenizer", "add_bos_token": false, "add_eos_token": false,
				"bos_token": {"content": "<s>", "special": true}, "eos_token": {"content": "</s>", "special": true}, "unk_token": "<unk>", "pad_token": "<unk>"}`), 0o644)
			codec, _, err := LoadDir(mdir)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := codec.(*SentencePiece); !ok {
				t.Fatalf("LoadDir gave %T", codec)
			}
			out := runSpm(t, input, encode, "--model="+prefix+".model", "--output_format=id")
			want := splitLines(string(out))
			if len(want) != len(lines) {
				t.Fatalf("spm_encode gave %d lines for %d", len(want), len(lines))
			}
			batch := codec.EncodeBatch(lines, false)
			bad := 0
			for i, line := range lines {
				var w []int
				for _, f := range strings.Fields(want[i]) {
					v, _ := strconv.Atoi(f)
					w = append(w, v)
				}
				got := codec.Encode(line, false)
				if !reflect.DeepEqual(got, w) && (len(got) > 0 || len(w) > 0) || !reflect.DeepEqual(batch[i], got) {
					if bad++; bad <= 5 {
						t.Errorf("line %d %q:\n got %v\nwant %v", i+1, line, got, w)
					}
				}
			}
			if bad > 0 {
				t.Fatalf("%d of %d lines differ from spm_encode", bad, len(lines))
			}
		})
	}
}
