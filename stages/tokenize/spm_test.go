package tokenize

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/internal/tokenizer/sentencepiece"
)

// spmFixtures are SentencePiece models trained by Debian's spm_train, with
// the corpus encoded by spm_encode (see internal/tokenizer/sentencepiece's
// golden_test.go).
const spmFixtures = "../../internal/tokenizer/sentencepiece/testdata"

// testdata/baichuan_like.model is a Baichuan-2-style model (BPE, identity
// normalization, no dummy prefix, digits split, byte fallback) whose
// CONTROL pieces 195 and 196 are <reserved_106> and <reserved_107>, as
// Baichuan 2's user and assistant tokens:
//
//	spm_train --input=internal/tokenizer/testdata/corpus.txt --model_prefix=baichuan_like \
//	  --model_type=bpe --vocab_size=900 --character_coverage=0.98 --normalization_rule_name=identity \
//	  --add_dummy_prefix=false --remove_extra_whitespaces=false --split_digits=true --byte_fallback=true \
//	  --control_symbols=<ctl_0>,...,<ctl_85>,<reserved_0>,...,<reserved_107> --minloglevel=2 --num_threads=1

// modelDir makes a model directory whose only tokenizer file is the
// SentencePiece model at src, with files beside it.
func modelDir(t *testing.T, src string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	files[tokenizer.ModelFile] = string(b)
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

type sampleKey struct{ ids, mask string }

// readSamples returns the training samples of a stage's dataset output as
// token and loss-mask strings.
func readSamples(t *testing.T, dir string) []sampleKey {
	t.Helper()
	m, err := data.VerifyDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []sampleKey
	for _, sh := range m.Splits["train"].Shards {
		s, err := data.OpenShard(filepath.Join(dir, sh.File))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < s.NumSamples(); i++ {
			smp := s.Sample(i)
			ids := make([]int, len(smp.Tokens))
			mask := make([]bool, len(smp.Tokens))
			for j, id := range smp.Tokens {
				ids[j], mask[j] = int(id), smp.Mask[j]
			}
			out = append(out, sampleKey{fmt.Sprint(ids), fmt.Sprint(mask)})
		}
		s.Close()
	}
	return out
}

func sameSamples(t *testing.T, got, want []sampleKey) {
	t.Helper()
	cmp := func(a, b sampleKey) int { return strings.Compare(a.ids+a.mask, b.ids+b.mask) }
	slices.SortFunc(got, cmp)
	slices.SortFunc(want, cmp)
	if len(got) != len(want) {
		t.Fatalf("%d samples, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("sample:\n got %s %s\nwant %s %s", got[i].ids, got[i].mask, want[i].ids, want[i].mask)
		}
	}
}

// seq accumulates expected ids and loss mask.
type seq struct {
	ids  []int
	mask []bool
}

func (s *seq) add(train bool, ids ...int) {
	for _, id := range ids {
		s.ids = append(s.ids, id)
		s.mask = append(s.mask, train)
	}
}

func (s *seq) key() sampleKey { return sampleKey{fmt.Sprint(s.ids), fmt.Sprint(s.mask)} }

// TestRunSentencePieceText tokenizes the multilingual corpus as pretraining
// text with a directory holding only tokenizer.model: every sample is
// spm_encode's ids for its line, then EOS.
func TestRunSentencePieceText(t *testing.T) {
	const fixture = "unigram_nmt_bytes"
	dir := modelDir(t, filepath.Join(spmFixtures, fixture+".model"), map[string]string{})
	corpus, err := os.ReadFile("../../internal/tokenizer/testdata/corpus.txt")
	if err != nil {
		t.Fatal(err)
	}
	idLines, err := os.ReadFile(filepath.Join(spmFixtures, fixture+".ids"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(corpus), "\n"), "\n")
	spmIDs := strings.Split(string(idLines), "\n")
	var rows strings.Builder
	var want []sampleKey
	for i, line := range lines {
		// The line with literal <s>, </s>, <unk> splits at them (a special
		// token, not spm_encode's text); lines spm_encode gives no ids are
		// dropped as empty.
		if strings.Contains(line, "<s>") || !utf8.ValidString(line) || strings.TrimSpace(spmIDs[i]) == "" {
			continue
		}
		b, _ := json.Marshal(map[string]string{"text": line})
		rows.Write(append(b, '\n'))
		var s seq
		for _, f := range strings.Fields(spmIDs[i]) {
			id, _ := strconv.Atoi(f)
			s.add(true, id)
		}
		s.add(true, 2) // </s>, the effective eos_token
		want = append(want, s.key())
	}
	path := filepath.Join(t.TempDir(), "corpus.jsonl")
	os.WriteFile(path, []byte(rows.String()), 0o644)
	args := mustArgs(t, `
tokenizer = tok
dataset {
  path   = data
  format = "text"
}
cutoff_len = 4096
`, map[string]cty.Value{"tok": cty.StringVal(dir), "data": cty.StringVal(path)})
	req, _, _, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	sameSamples(t, readSamples(t, req.OutputDir("dataset")), want)
	// The output tokenizer is the SentencePiece model, copied through.
	a, _ := os.ReadFile(filepath.Join(dir, tokenizer.ModelFile))
	b, err := os.ReadFile(filepath.Join(req.OutputDir("tokenizer"), tokenizer.ModelFile))
	if err != nil || string(a) != string(b) {
		t.Fatalf("tokenizer.model not copied through: %v", err)
	}
	tok, _, err := LoadTokenizer(req.OutputDir("tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tok.(*tokenizer.SentencePiece); !ok {
		t.Fatalf("output tokenizer loads as %T", tok)
	}
}

// chatRows are testdata/chat.jsonl's conversations: system, then
// alternating questions and answers.
var chatRows = []struct {
	system string
	turns  []string
}{
	{"", []string{"Hi there", "Hello! How can I help?"}},
	{"", []string{"What is 2+2?", "4", "And 3+3?", "6"}},
	{"Be brief.", []string{"Name a colour", "Blue."}},
}

// TestRunSentencePieceChatGLM3 tokenizes chat.jsonl with template chatglm3
// and a ChatGLM tokenizer.model directory, and checks every sample against
// LLaMA Factory's chatglm3 encoding: [gMASK] sop, <|system|> "\n" system,
// <|user|> "\n" q <|assistant|>, "\n" a, each string slot encoded on its
// own and each token slot its id, EOS after the last answer; "\n" a and the
// EOS trained.
func TestRunSentencePieceChatGLM3(t *testing.T) {
	src := filepath.Join(spmFixtures, "bpe_identity_user.model")
	dir := modelDir(t, src, map[string]string{tokenizer.ConfigFile: `{"tokenizer_class": "ChatGLMTokenizer", "padding_side": "left", "remove_space": false}`})
	m, err := sentencepiece.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	n := m.VocabSize()
	gmask, sop, system, user, assistant := n+1, n+3, n+5, n+6, n+7
	var want []sampleKey
	for _, r := range chatRows {
		var s seq
		s.add(false, gmask, sop)
		if r.system != "" {
			s.add(false, system)
			s.add(false, m.Encode("\n")...)
			s.add(false, m.Encode(r.system)...)
		}
		for i := 0; i < len(r.turns); i += 2 {
			s.add(false, user)
			s.add(false, m.Encode("\n")...)
			s.add(false, m.Encode(r.turns[i])...)
			s.add(false, assistant)
			s.add(true, m.Encode("\n")...)
			s.add(true, m.Encode(r.turns[i+1])...)
		}
		s.add(true, m.EOSID())
		want = append(want, s.key())
	}
	args := mustArgs(t, `
tokenizer = tok
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template = "chatglm3"
`, map[string]cty.Value{"tok": cty.StringVal(dir)})
	req, _, _, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	sameSamples(t, readSamples(t, req.OutputDir("dataset")), want)
}

// TestRunSentencePieceBaichuan2 tokenizes chat.jsonl with template
// baichuan2: the user and assistant markers become ids 195 and 196 (CONTROL
// pieces, which no text encodes to), as Baichuan 2's build_chat_input and
// LLaMA Factory's baichuan2 template give; EOS after the last answer.
func TestRunSentencePieceBaichuan2(t *testing.T) {
	src := filepath.Join("testdata", "baichuan_like.model")
	dir := modelDir(t, src, map[string]string{tokenizer.ConfigFile: `{"tokenizer_class": "BaichuanTokenizer", "add_bos_token": false, "add_eos_token": false,
		"bos_token": {"content": "<s>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
		"eos_token": {"content": "</s>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
		"unk_token": {"content": "<unk>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false},
		"pad_token": {"content": "<unk>", "lstrip": false, "normalized": true, "rstrip": false, "single_word": false}}`})
	m, err := sentencepiece.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if m.PieceToID("<reserved_106>") != 195 || m.PieceToID("<reserved_107>") != 196 || m.Type(195) != sentencepiece.Control {
		t.Fatalf("fixture: <reserved_106> is %d (%v)", m.PieceToID("<reserved_106>"), m.Type(195))
	}
	var want []sampleKey
	for _, r := range chatRows {
		var s seq
		s.add(false, m.Encode(r.system)...)
		for i := 0; i < len(r.turns); i += 2 {
			s.add(false, 195)
			s.add(false, m.Encode(r.turns[i])...)
			s.add(false, 196)
			s.add(true, m.Encode(r.turns[i+1])...)
		}
		s.add(true, m.EOSID())
		want = append(want, s.key())
	}
	args := mustArgs(t, `
tokenizer = tok
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template = "baichuan2"
`, map[string]cty.Value{"tok": cty.StringVal(dir)})
	req, _, _, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	sameSamples(t, readSamples(t, req.OutputDir("dataset")), want)
}

// TestRunSentencePieceErrors: a corrupt tokenizer.model or a directory
// without a tokenizer fails the stage with the file named.
func TestRunSentencePieceErrors(t *testing.T) {
	corrupt := modelDir(t, filepath.Join("testdata", "baichuan_like.model"), map[string]string{})
	b, _ := os.ReadFile(filepath.Join(corrupt, tokenizer.ModelFile))
	os.WriteFile(filepath.Join(corrupt, tokenizer.ModelFile), b[:len(b)/3], 0o644)
	for _, tc := range []struct {
		name, dir, want string
	}{
		{"corrupt", corrupt, filepath.Join(corrupt, tokenizer.ModelFile)},
		{"empty", t.TempDir(), "no tokenizer.json or tokenizer.model"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := mustArgs(t, `
tokenizer = tok
dataset {
  path   = "chat.jsonl"
  format = "sharegpt"
}
template = "baichuan2"
`, map[string]cty.Value{"tok": cty.StringVal(tc.dir)})
			_, _, _, err := runStage(t, args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one mentioning %q", err, tc.want)
			}
		})
	}
}

// TestRunSentencePieceFile: a tokenizer.model given as a file is copied to
// the output as tokenizer.model.
func TestRunSentencePieceFile(t *testing.T) {
	src, _ := filepath.Abs(filepath.Join("testdata", "baichuan_like.model"))
	args := mustArgs(t, `
tokenizer = tok
dataset {
  path   = "text.jsonl"
  format = "text"
}
`, map[string]cty.Value{"tok": cty.StringVal(src)})
	req, res, _, err := runStage(t, args)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(src)
	b, err := os.ReadFile(filepath.Join(req.OutputDir("tokenizer"), tokenizer.ModelFile))
	if err != nil || string(a) != string(b) {
		t.Fatalf("tokenizer.model not in the output: %v", err)
	}
	if got := statInt(t, res.Values["stats"], "samples"); got != 3 {
		t.Errorf("samples = %d, want 3", got)
	}
}
