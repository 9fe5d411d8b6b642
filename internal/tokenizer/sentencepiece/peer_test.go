package sentencepiece

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// peerConfigs are the spm_train settings the cross-check covers. The corpus
// has ~570 distinct characters, so vocabularies this small need a character
// coverage below 1, which also makes unknown characters (and byte fallback)
// common.
var peerConfigs = []struct {
	name string
	args []string
}{
	{"bpe_nmt", []string{"--model_type=bpe", "--vocab_size=400", "--character_coverage=0.98"}},
	{"bpe_nmt_bytes", []string{"--model_type=bpe", "--vocab_size=600", "--character_coverage=0.98", "--byte_fallback=true"}},
	{"bpe_identity", []string{"--model_type=bpe", "--vocab_size=400", "--character_coverage=0.98", "--normalization_rule_name=identity"}},
	{"bpe_identity_bytes_user", []string{"--model_type=bpe", "--vocab_size=600", "--character_coverage=0.98", "--normalization_rule_name=identity", "--byte_fallback=true", "--user_defined_symbols=<|im_start|>,<|im_end|>,<|im_start|><|im_start|>"}},
	{"unigram_nmt", []string{"--model_type=unigram", "--vocab_size=400", "--character_coverage=0.98"}},
	{"unigram_nmt_bytes", []string{"--model_type=unigram", "--vocab_size=600", "--character_coverage=0.98", "--byte_fallback=true"}},
	{"unigram_identity", []string{"--model_type=unigram", "--vocab_size=400", "--character_coverage=0.98", "--normalization_rule_name=identity"}},
	{"unigram_identity_bytes_user", []string{"--model_type=unigram", "--vocab_size=600", "--character_coverage=0.98", "--normalization_rule_name=identity", "--byte_fallback=true", "--user_defined_symbols=<|im_start|>,<|im_end|>"}},
	{"unigram_nmt_nodummy_keepws", []string{"--model_type=unigram", "--vocab_size=400", "--character_coverage=0.98", "--add_dummy_prefix=false", "--remove_extra_whitespaces=false", "--split_digits=true"}},
	{"bpe_nmt_suffix_nodummy", []string{"--model_type=bpe", "--vocab_size=400", "--character_coverage=0.98", "--treat_whitespace_as_suffix=true", "--add_dummy_prefix=false", "--user_defined_symbols=<|im_end|>"}},
	{"bpe_identity_keepws", []string{"--model_type=bpe", "--vocab_size=400", "--character_coverage=0.98", "--normalization_rule_name=identity", "--remove_extra_whitespaces=false"}},
	{"unigram_nmt_keepws_bytes", []string{"--model_type=unigram", "--vocab_size=600", "--character_coverage=0.98", "--remove_extra_whitespaces=false", "--byte_fallback=true"}},
	{"unigram_custom_ids", []string{"--model_type=unigram", "--vocab_size=400", "--character_coverage=0.98", "--pad_id=0", "--unk_id=1", "--bos_id=2", "--eos_id=3", "--control_symbols=<sep>,<cls>", "--unk_surface=<?>"}},
	{"bpe_bytes_digits_short", []string{"--model_type=bpe", "--vocab_size=600", "--character_coverage=0.98", "--byte_fallback=true", "--split_digits=true", "--max_sentencepiece_length=4"}},
	{"unigram_nmt_userdefs", []string{"--model_type=unigram", "--vocab_size=400", "--character_coverage=0.98", "--user_defined_symbols=<|im_start|>,<|im_end|>,▁hi,ab"}},
	{"char_nmt", []string{"--model_type=char", "--vocab_size=400", "--character_coverage=0.98", "--user_defined_symbols=<|im_end|>"}},
	{"word_identity", []string{"--model_type=word", "--vocab_size=300", "--character_coverage=0.98", "--normalization_rule_name=identity", "--use_all_vocab=false"}},
	{"word_nmt_keepws", []string{"--model_type=word", "--vocab_size=300", "--character_coverage=0.98", "--remove_extra_whitespaces=false"}},
	{"unigram_nfkc_cf_full", []string{"--model_type=unigram", "--vocab_size=700", "--character_coverage=1.0", "--hard_vocab_limit=false", "--normalization_rule_name=nmt_nfkc_cf"}},
}

// peerTools returns the spm_* binaries, skipping (or failing under
// LATHE_REQUIRE_PEERS=1) when Debian's sentencepiece package is missing.
func peerTools(t *testing.T) (train, encode, decode string) {
	t.Helper()
	var paths []string
	for _, name := range []string{"spm_train", "spm_encode", "spm_decode"} {
		p, err := exec.LookPath(name)
		if err != nil {
			msg := fmt.Sprintf("%s not found (apt-get install sentencepiece): %v", name, err)
			if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		paths = append(paths, p)
	}
	return paths[0], paths[1], paths[2]
}

// splitLines splits like std::getline: on '\n', keeping '\r', without a
// final empty line after a trailing newline.
func splitLines(b []byte) []string {
	s := strings.TrimSuffix(string(b), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func parseIDLines(t *testing.T, out []byte) [][]int {
	t.Helper()
	var res [][]int
	for _, line := range splitLines(out) {
		ids := []int{}
		for _, f := range strings.Fields(line) {
			v, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("spm_encode output %q: %v", line, err)
			}
			ids = append(ids, v)
		}
		res = append(res, ids)
	}
	return res
}

func runTool(t *testing.T, stdin []byte, name string, args ...string) []byte {
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

func formatIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, " ")
}

// randomLines builds deterministic pseudo-random lines from fragments of the
// corpus (words, single characters, runs of spaces, user-defined symbols,
// stray bytes) to reach segmentations the corpus lines alone do not.
func randomLines(corpus []byte, n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	runes := []rune(strings.ReplaceAll(string(corpus), "\n", " "))
	words := strings.Fields(string(corpus))
	frags := []string{" ", "  ", "\t", "<|im_start|>", "<|im_end|>", "\xff", "\xe2\x82", "\u2581", "\u3000", "\u200b", "0", "12", "ab", "hi"}
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		k := 1 + r.IntN(12)
		for j := 0; j < k; j++ {
			switch r.IntN(4) {
			case 0:
				b.WriteString(words[r.IntN(len(words))])
			case 1:
				b.WriteRune(runes[r.IntN(len(runes))])
			case 2:
				b.WriteString(frags[r.IntN(len(frags))])
			default:
				w := words[r.IntN(len(words))]
				b.WriteString(w[:r.IntN(len(w)+1)])
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// TestPeerSpm trains models with spm_train and checks that Encode gives
// spm_encode's ids line by line and Decode gives spm_decode's text.
func TestPeerSpm(t *testing.T) {
	train, encode, decode := peerTools(t)
	corpusPath := filepath.Join("..", "testdata", "corpus.txt")
	corpus, err := os.ReadFile(corpusPath)
	if err != nil {
		t.Fatal(err)
	}
	extra, err := os.ReadFile(filepath.Join("testdata", "extra.txt"))
	if err != nil {
		t.Fatal(err)
	}
	input := append(append([]byte{}, corpus...), extra...)
	input = append(input, randomLines(corpus, 1500)...)
	lines := splitLines(input)
	dir := t.TempDir()
	for _, cfg := range peerConfigs {
		t.Run(cfg.name, func(t *testing.T) {
			prefix := filepath.Join(dir, cfg.name)
			args := append([]string{"--input=" + corpusPath, "--model_prefix=" + prefix,
				"--minloglevel=2", "--num_threads=1", "--seed_sentencepiece_size=20000"}, cfg.args...)
			runTool(t, nil, train, args...)
			model := prefix + ".model"
			m, err := Load(model)
			if err != nil {
				t.Fatal(err)
			}
			tr := m.Proto().Trainer
			for _, c := range []struct {
				name      string
				got, want int
			}{{"bos", m.BOSID(), int(tr.BOSID)}, {"eos", m.EOSID(), int(tr.EOSID)}, {"pad", m.PadID(), int(tr.PadID)}, {"unk", m.UnkID(), int(tr.UnkID)}} {
				if c.got != c.want {
					t.Errorf("%s id = %d, trainer_spec says %d", c.name, c.got, c.want)
				}
			}
			want := parseIDLines(t, runTool(t, input, encode, "--model="+model, "--output_format=id"))
			if len(want) != len(lines) {
				t.Fatalf("spm_encode gave %d lines for %d inputs", len(want), len(lines))
			}
			var ours bytes.Buffer
			bad := 0
			for i, line := range lines {
				got := m.Encode(line)
				if formatIDs(got) != formatIDs(want[i]) {
					bad++
					if bad <= 5 {
						t.Errorf("line %d %q:\n got %v\nwant %v\nnormalized %q", i+1, line, got, want[i], m.Normalize(line))
					}
				}
				fmt.Fprintln(&ours, formatIDs(want[i]))
			}
			if bad > 0 {
				t.Fatalf("%d of %d lines differ from spm_encode", bad, len(lines))
			}
			wantText := splitLines(runTool(t, ours.Bytes(), decode, "--model="+model, "--input_format=id"))
			for i := range lines {
				var w string
				if i < len(wantText) {
					w = wantText[i]
				}
				if got := m.Decode(want[i]); got != w {
					t.Errorf("line %d: Decode(%v) = %q, spm_decode %q", i+1, want[i], got, w)
				}
			}
		})
	}
}
