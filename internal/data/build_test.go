package data

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// byteEncoder is a trivial Encoder: special-token text maps to one id
// (1000+), every other byte to its value.
type byteEncoder struct{}

var testSpecials = []string{"<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "</s>", "<s>"}

func (byteEncoder) Encode(text string, _ bool) []uint32 {
	var out []uint32
outer:
	for len(text) > 0 {
		for k, sp := range testSpecials {
			if strings.HasPrefix(text, sp) {
				out = append(out, uint32(1000+k))
				text = text[len(sp):]
				continue outer
			}
		}
		out = append(out, uint32(text[0]))
		text = text[1:]
	}
	return out
}

func decode(ids []uint32) string {
	var b strings.Builder
	for _, id := range ids {
		if id >= 1000 {
			b.WriteString(testSpecials[id-1000])
		} else {
			b.WriteByte(byte(id))
		}
	}
	return b.String()
}

// sliceSource serves examples from memory.
type sliceSource struct {
	ex []Example
	i  int
}

func (s *sliceSource) Next() (Example, error) {
	if s.i >= len(s.ex) {
		return Example{}, io.EOF
	}
	s.i++
	return s.ex[s.i-1], nil
}

func TestInferSeqLen(t *testing.T) {
	for _, tc := range []struct{ s, t, c, ws, wt int }{
		{10, 10, 100, 10, 10},  // fits
		{300, 10, 100, 90, 10}, // short target: truncate source
		{10, 300, 100, 10, 90}, // short source: truncate target
		{300, 100, 100, 75, 25},
		{100, 300, 100, 25, 75},
		{60, 60, 100, 50, 50},
		{0, 0, 5, 0, 0},
	} {
		s, tt := inferSeqLen(tc.s, tc.t, tc.c)
		if s != tc.ws || tt != tc.wt {
			t.Errorf("inferSeqLen(%d,%d,%d) = %d,%d want %d,%d", tc.s, tc.t, tc.c, s, tt, tc.ws, tc.wt)
		}
	}
}

func buildOne(t *testing.T, ex []Example, opt BuildOptions) (*Manifest, string) {
	t.Helper()
	dir := t.TempDir()
	if opt.Encoder == nil {
		opt.Encoder = byteEncoder{}
	}
	m, err := Build(&sliceSource{ex: ex}, dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyDir(dir); err != nil {
		t.Fatal(err)
	}
	return m, dir
}

func readSplit(t *testing.T, dir string, m *Manifest, split string) []Sample {
	t.Helper()
	var out []Sample
	sp := m.Splits[split]
	if sp == nil {
		return nil
	}
	for _, si := range sp.Shards {
		s, err := OpenShard(filepath.Join(dir, si.File))
		if err != nil {
			t.Fatal(err)
		}
		for i := range s.NumSamples() {
			out = append(out, s.Sample(i))
		}
		s.Close()
	}
	return out
}

func maskedText(s Sample, want bool) string {
	var ids []uint32
	for i, id := range s.Tokens {
		if s.Mask[i] == want {
			ids = append(ids, id)
		}
	}
	return decode(ids)
}

func TestBuildMasking(t *testing.T) {
	qwen, _ := LookupTemplate("qwen")
	ex := []Example{{System: convSys.sys, Turns: convSys.turns, Source: "x:1"}}
	for _, tc := range []struct {
		name    string
		opt     RenderOptions
		trained string
	}{
		{"default", RenderOptions{}, "Hello!<|im_end|>Fine.<|im_end|>"},
		{"mask_history", RenderOptions{MaskHistory: true}, "Fine.<|im_end|>"},
		{"train_on_prompt", RenderOptions{TrainOnPrompt: true}, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := buildOne(t, ex, BuildOptions{Template: qwen, Render: tc.opt, CutoffLen: 1024})
			got := readSplit(t, dir, m, "train")
			if len(got) != 1 {
				t.Fatalf("%d samples", len(got))
			}
			if full := decode(got[0].Tokens); full != "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>\n" {
				t.Errorf("tokens decode to %q", full)
			}
			if tr := maskedText(got[0], true); tr != tc.trained {
				t.Errorf("trained %q want %q", tr, tc.trained)
			}
			if m.TrainableTokens != int64(got[0].Trainable()) || m.Truncated != 0 || m.Kind != KindSFT || m.Template != "qwen" {
				t.Errorf("manifest %+v", m)
			}
		})
	}
}

func TestBuildTruncation(t *testing.T) {
	tm, _ := LookupTemplate("default")
	// Turn 0: source "Human: aaaaaaaaaa</s>\nAssistant:" (29), target "bbbbbbbbbb</s>\n" (12: 10 + </s> + \n)
	// Turn 1: source "Human: c</s>\nAssistant:" (20), target "dddd</s>\n" (6)
	ex := []Example{{Turns: msgs("user", "aaaaaaaaaa", "assistant", "bbbbbbbbbb", "user", "c", "assistant", "dddd"), Source: "x:1"}}
	for _, tc := range []struct {
		name   string
		cutoff int
		mask   bool
		want   string
	}{
		// turn 0 fits (41), turn 1 gets 4 left: 6*2 >= 4 and 20*2 >= 4 -> t = int(4*6/26) = 0, s = 4
		{"cut last turn", 45, false, "Human: aaaaaaaaaa</s>\nAssistant:bbbbbbbbbb</s>\nHuma"},
		// turn 0: 12*2 >= 20 and 29*2 >= 20 -> t = int(20*12/41) = 5, s = 15; no budget for turn 1
		{"cut first turn", 20, false, "Human: aaaaaaaabbbbb"},
		// mask_history budgets the last turn first: all 26; turn 0 gets 4 -> t = int(4*12/41) = 1, s = 3
		{"mask history keeps last turn", 30, true, "Hum" + "b" + "Human: c</s>\nAssistant:dddd</s>\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := buildOne(t, ex, BuildOptions{Template: tm, Render: RenderOptions{MaskHistory: tc.mask}, CutoffLen: tc.cutoff})
			got := readSplit(t, dir, m, "train")
			if s := decode(got[0].Tokens); s != tc.want {
				t.Errorf("got %q want %q", s, tc.want)
			}
			if len(got[0].Tokens) > tc.cutoff || m.Truncated != 1 {
				t.Errorf("len %d truncated %d", len(got[0].Tokens), m.Truncated)
			}
		})
	}
	// A cutoff too small to keep any answer token leaves nothing to train
	// on: the sample is dropped, and with nothing left the build fails.
	long := []Example{{Turns: msgs("user", strings.Repeat("q", 100), "assistant", "a"), Source: "x:1"}}
	_, err := Build(&sliceSource{ex: long}, t.TempDir(), BuildOptions{Template: tm, Encoder: byteEncoder{}, CutoffLen: 1})
	if err == nil || !strings.Contains(err.Error(), DropNoTrainable) {
		t.Errorf("error %v", err)
	}
}

func TestBuildPacking(t *testing.T) {
	var ex []Example
	for i := range 40 {
		ex = append(ex, Example{Text: strings.Repeat(string(rune('a'+i%26)), 1+i*7%50), Source: fmt.Sprintf("x:%d", i)})
	}
	m, dir := buildOne(t, ex, BuildOptions{CutoffLen: 64, Packing: true, Seed: 1, TextEOS: "</s>"})
	rows := readSplit(t, dir, m, "train")
	if !m.Packing || len(rows) >= 40 {
		t.Fatalf("packing %v, %d rows", m.Packing, len(rows))
	}
	var pieces []string
	for _, r := range rows {
		if len(r.Tokens) > 64 {
			t.Errorf("row of %d tokens", len(r.Tokens))
		}
		pos := r.Positions()
		start := 0
		for i := range r.Tokens {
			if i == len(r.Tokens)-1 || r.SegmentIDs[i+1] != r.SegmentIDs[i] {
				seg := decode(r.Tokens[start : i+1])
				if !strings.HasSuffix(seg, "</s>") || pos[start] != 0 || pos[i] != uint32(i-start) {
					t.Errorf("segment %q positions %v", seg, pos[start:i+1])
				}
				pieces = append(pieces, seg)
				start = i + 1
			}
		}
	}
	var want []string
	for _, e := range ex {
		want = append(want, e.Text+"</s>")
	}
	sort.Strings(pieces)
	sort.Strings(want)
	if !reflect.DeepEqual(pieces, want) {
		t.Errorf("packed segments do not match the inputs:\n%v\n%v", pieces, want)
	}
	if m.Examples != 40 || m.SamplesWritten != int64(len(rows)) || m.Kind != KindPretrain {
		t.Errorf("manifest %+v", m)
	}
}

func TestBuildPretrainChunks(t *testing.T) {
	m, dir := buildOne(t, []Example{{Text: "abcdefghij", Source: "x:1"}}, BuildOptions{CutoffLen: 4, TextEOS: "</s>"})
	rows := readSplit(t, dir, m, "train")
	var got []string
	for _, r := range rows {
		got = append(got, decode(r.Tokens))
	}
	sort.Strings(got)
	if want := []string{"abcd", "efgh", "ij</s>"}; !reflect.DeepEqual(got, want) {
		t.Errorf("chunks %q", got)
	}
}

func TestBuildSplitAndDeterminism(t *testing.T) {
	tm, _ := LookupTemplate("chatml")
	var ex []Example
	for i := range 50 {
		ex = append(ex, Example{Turns: msgs("user", fmt.Sprint("q", i), "assistant", fmt.Sprint("a", i)), Source: fmt.Sprintf("x:%d", i)})
	}
	digests := func(m *Manifest) string {
		var b strings.Builder
		for _, n := range []string{"train", "validation"} {
			for _, s := range m.Splits[n].Shards {
				b.WriteString(s.SHA256)
			}
		}
		return b.String()
	}
	opt := BuildOptions{Template: tm, CutoffLen: 64, ValSize: 0.1, Seed: 7, ShardTokens: 200}
	m1, dir := buildOne(t, ex, opt)
	m2, _ := buildOne(t, ex, opt)
	if digests(m1) != digests(m2) {
		t.Error("same seed, different shards")
	}
	if m1.Splits["validation"].Samples != 5 || m1.Splits["train"].Samples != 45 || len(m1.Splits["train"].Shards) < 2 {
		t.Errorf("splits %+v %+v", m1.Splits["train"], m1.Splits["validation"])
	}
	opt.Seed = 8
	m3, _ := buildOne(t, ex, opt)
	if digests(m1) == digests(m3) {
		t.Error("different seed, same shards")
	}
	// every example appears exactly once across the splits
	seen := map[string]int{}
	for _, split := range []string{"train", "validation"} {
		for _, s := range readSplit(t, dir, m1, split) {
			seen[decode(s.Tokens)]++
		}
	}
	if len(seen) != 50 {
		t.Errorf("%d distinct samples", len(seen))
	}
	opt.ValSize = 3
	opt.MaxSamples = 20
	m4, _ := buildOne(t, ex, opt)
	if m4.Splits["validation"].Samples != 3 || m4.Splits["train"].Samples != 17 || m4.RowsRead != 20 {
		t.Errorf("absolute val_size / max_samples: %+v", m4)
	}
	for _, bad := range []float64{50, 1.5, -0.1} {
		opt.ValSize, opt.MaxSamples = bad, 0
		if _, err := Build(&sliceSource{ex: ex}, t.TempDir(), opt); err == nil {
			t.Errorf("val_size %v accepted", bad)
		}
	}
}

func TestBuildPreference(t *testing.T) {
	tm, _ := LookupTemplate("llama3")
	ex := []Example{
		{System: "S", Turns: msgs("user", "q1", "assistant", "a1", "user", "pick"), Chosen: &Message{RoleAssistant, "good"}, Rejected: &Message{RoleAssistant, "bad!"}, Source: "x:1"},
		{Turns: msgs("user", "q"), Chosen: &Message{RoleAssistant, "yes"}, Rejected: &Message{RoleAssistant, "no"}, Source: "x:2"},
	}
	m, dir := buildOne(t, ex, BuildOptions{Template: tm, CutoffLen: 512, Packing: true})
	if m.Kind != KindPreference || m.Packing {
		t.Fatalf("manifest %+v", m)
	}
	s, err := OpenShard(filepath.Join(dir, m.Splits["train"].Shards[0].File))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Flags() != FlagPairs || s.NumSamples() != 4 {
		t.Fatalf("flags %d samples %d", s.Flags(), s.NumSamples())
	}
	answers := map[string]bool{}
	for k := 0; k < 2; k++ {
		c, r := s.Sample(2*k), s.Sample(2*k+1)
		pc, pr := maskedText(c, false), maskedText(r, false)
		if pc != pr || !strings.HasSuffix(pc, "<|start_header_id|>assistant<|end_header_id|>\n\n") {
			t.Errorf("pair %d prompts differ: %q vs %q", k, pc, pr)
		}
		answers[maskedText(c, true)+"|"+maskedText(r, true)] = true
	}
	if !answers["good<|eot_id|>|bad!<|eot_id|>"] || !answers["yes<|eot_id|>|no<|eot_id|>"] {
		t.Errorf("answers %v", answers)
	}
}

func TestBuildFromReaderCountsDrops(t *testing.T) {
	p := writeFile(t, "d.jsonl", "{\"instruction\": \"q\", \"output\": \"a\"}\n{\"instruction\": \"\", \"output\": \"a\"}\n{\"instruction\": \"q2\", \"output\": \"a2\"}\n")
	r, err := Open(Spec{Path: p, Format: FormatAlpaca})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tm, _ := LookupTemplate("qwen")
	dir := t.TempDir()
	m, err := Build(r, dir, BuildOptions{Template: tm, Encoder: byteEncoder{}, CutoffLen: 256})
	if err != nil {
		t.Fatal(err)
	}
	if m.RowsRead != 3 || m.Dropped[DropMissingPrompt] != 1 || m.Examples != 2 || len(m.DropExamples) != 1 {
		t.Errorf("manifest %+v", m)
	}
	mb, _ := os.ReadFile(filepath.Join(dir, ManifestName))
	for _, key := range []string{`"rows_read": 3`, `"missing prompt": 1`, `"sha256"`, `"trainable_tokens"`, `"truncated": 0`} {
		if !bytes.Contains(mb, []byte(key)) {
			t.Errorf("manifest.json lacks %s:\n%s", key, mb)
		}
	}
	// Corrupt a shard: VerifyDir names it.
	sh := filepath.Join(dir, m.Splits["train"].Shards[0].File)
	b, _ := os.ReadFile(sh)
	b[len(b)-1] ^= 0xff
	os.WriteFile(sh, b, 0o644)
	if _, err := VerifyDir(dir); !errors.Is(err, ErrShardChecksum) || !strings.Contains(err.Error(), "train-00000.shard") {
		t.Errorf("verify error %v", err)
	}
}

func TestBuildConcatAndToolRoles(t *testing.T) {
	a := writeFile(t, "a.jsonl", `{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{}"}, {"from": "observation", "value": "1"}, {"from": "gpt", "value": "one"}]}`+"\n"+`{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}`+"\n")
	b := writeFile(t, "b.json", `[{"instruction": "x", "output": "y"}, {"instruction": "", "output": "y"}]`)
	ra, err := Open(Spec{Path: a, Format: FormatShareGPT})
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	rb, err := Open(Spec{Path: b, Format: FormatAlpaca})
	if err != nil {
		t.Fatal(err)
	}
	defer rb.Close()
	tm, _ := LookupTemplate("qwen")
	m, err := Build(Concat(ra, rb), t.TempDir(), BuildOptions{Template: tm, Encoder: byteEncoder{}, CutoffLen: 512})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{DropToolRoles: 1, DropMissingPrompt: 1}
	if m.RowsRead != 4 || m.Examples != 2 || !reflect.DeepEqual(m.Dropped, want) || len(m.DropExamples) != 2 {
		t.Errorf("manifest rows %d examples %d dropped %v examples %v", m.RowsRead, m.Examples, m.Dropped, m.DropExamples)
	}
}
