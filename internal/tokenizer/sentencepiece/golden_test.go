package sentencepiece

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures in testdata were made with Debian's sentencepiece 0.1.97
// (corpus = ../testdata/corpus.txt followed by testdata/extra.txt):
//
//	spm_train --input=../../testdata/corpus.txt --model_prefix=unigram_nmt_bytes --model_type=unigram \
//	  --vocab_size=600 --character_coverage=0.98 --byte_fallback=true --minloglevel=2 --num_threads=1 \
//	  --seed_sentencepiece_size=20000
//	spm_train --input=../../testdata/corpus.txt --model_prefix=bpe_identity_user --model_type=bpe \
//	  --vocab_size=400 --character_coverage=0.98 --normalization_rule_name=identity \
//	  --user_defined_symbols='<|im_start|>,<|im_end|>' --minloglevel=2 --num_threads=1
//	spm_encode --model=M.model --output_format=id < input > M.ids
//	spm_decode --model=M.model --input_format=id < M.ids > M.decoded
//
// so this test runs without the spm tools; TestPeerSpm covers more settings
// when they are installed.

func goldenInput(t *testing.T) []string {
	t.Helper()
	corpus, err := os.ReadFile(filepath.Join("..", "testdata", "corpus.txt"))
	if err != nil {
		t.Fatal(err)
	}
	extra, err := os.ReadFile(filepath.Join("testdata", "extra.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return splitLines(append(corpus, extra...))
}

func loadFixture(t *testing.T, name string) *Model {
	t.Helper()
	m, err := Load(filepath.Join("testdata", name+".model"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestGolden(t *testing.T) {
	lines := goldenInput(t)
	for _, name := range []string{"unigram_nmt_bytes", "bpe_identity_user"} {
		t.Run(name, func(t *testing.T) {
			m := loadFixture(t, name)
			idsFile, err := os.ReadFile(filepath.Join("testdata", name+".ids"))
			if err != nil {
				t.Fatal(err)
			}
			decFile, err := os.ReadFile(filepath.Join("testdata", name+".decoded"))
			if err != nil {
				t.Fatal(err)
			}
			want := parseIDLines(t, idsFile)
			wantText := splitLines(decFile)
			if len(want) != len(lines) || len(wantText) != len(lines) {
				t.Fatalf("fixture has %d id lines and %d decoded lines for %d inputs", len(want), len(wantText), len(lines))
			}
			for i, line := range lines {
				got := m.Encode(line)
				if formatIDs(got) != formatIDs(want[i]) {
					t.Errorf("line %d %q:\n got %v\nwant %v", i+1, line, got, want[i])
				}
				if d := m.Decode(want[i]); d != wantText[i] {
					t.Errorf("line %d: Decode = %q, want %q", i+1, d, wantText[i])
				}
			}
		})
	}
}

func TestModelAPI(t *testing.T) {
	m := loadFixture(t, "unigram_nmt_bytes")
	if got := m.VocabSize(); got != 600 {
		t.Errorf("VocabSize = %d, want 600", got)
	}
	tests := []struct {
		piece string
		id    int
		typ   PieceType
	}{
		{"<unk>", 0, Unknown},
		{"<s>", 1, Control},
		{"</s>", 2, Control},
		{"<0x00>", 3, Byte},
		{"<0xFF>", 258, Byte},
	}
	for _, tc := range tests {
		if got := m.PieceToID(tc.piece); got != tc.id {
			t.Errorf("PieceToID(%q) = %d, want %d", tc.piece, got, tc.id)
		}
		if got := m.IDToPiece(tc.id); got != tc.piece {
			t.Errorf("IDToPiece(%d) = %q, want %q", tc.id, got, tc.piece)
		}
		if got := m.Type(tc.id); got != tc.typ {
			t.Errorf("Type(%d) = %v, want %v", tc.id, got, tc.typ)
		}
	}
	if got := m.PieceToID("no such piece"); got != m.UnkID() {
		t.Errorf("PieceToID(missing) = %d, want unk %d", got, m.UnkID())
	}
	if m.IDToPiece(-1) != "" || m.IDToPiece(600) != "" {
		t.Error("IDToPiece out of range should be empty")
	}
	if m.BOSID() != 1 || m.EOSID() != 2 || m.PadID() != -1 || m.UnkID() != 0 {
		t.Errorf("special ids bos=%d eos=%d pad=%d unk=%d", m.BOSID(), m.EOSID(), m.PadID(), m.UnkID())
	}
	if !m.ByteFallback() || m.Proto().Trainer.ModelType != Unigram || m.Proto().Normalizer.Name != "nmt_nfkc" {
		t.Errorf("spec: byte_fallback=%v type=%v normalizer=%q", m.ByteFallback(), m.Proto().Trainer.ModelType, m.Proto().Normalizer.Name)
	}
}

func TestNormalizeAndDecode(t *testing.T) {
	nmt := loadFixture(t, "unigram_nmt_bytes")
	ident := loadFixture(t, "bpe_identity_user")
	b := func(s string) int { return nmt.PieceToID(s) }
	tests := []struct {
		name string
		m    *Model
		in   string
		want string
	}{
		{"nmt fullwidth", nmt, "ＡＢＣ１２３", "▁ABC123"},
		{"nmt extra spaces", nmt, "  a   b  ", "▁a▁b"},
		{"nmt tab", nmt, "a\tb", "▁a▁b"},
		{"nmt all space", nmt, "   ", ""},
		{"nmt invalid utf8", nmt, "a\xffb", "▁a\uFFFDb"},
		{"identity keeps fullwidth", ident, "ＡＢ", "▁ＡＢ"},
		{"identity user-defined", ident, "x<|im_end|>", "▁x<|im_end|>"},
	}
	for _, tc := range tests {
		if got := tc.m.Normalize(tc.in); got != tc.want {
			t.Errorf("%s: Normalize(%q) = %q, want %q", tc.name, tc.in, got, tc.want)
		}
	}
	decodes := []struct {
		name string
		ids  []int
		want string
	}{
		{"controls vanish", []int{1, 2}, ""},
		{"unk surface", []int{0}, " \u2047 "},
		{"bytes to utf8", []int{b("<0xE2>"), b("<0x82>"), b("<0xAC>")}, "€"},
		{"invalid byte", []int{b("<0xFF>"), b("<0x41>")}, "\uFFFDA"},
		{"truncated sequence", []int{b("<0xE2>"), b("<0x82>")}, "\uFFFD\uFFFD"},
		{"out of range skipped", []int{-5, 100000}, ""},
	}
	for _, tc := range decodes {
		if got := nmt.Decode(tc.ids); got != tc.want {
			t.Errorf("%s: Decode(%v) = %q, want %q", tc.name, tc.ids, got, tc.want)
		}
	}
	if got := nmt.Encode(""); len(got) != 0 {
		t.Errorf("Encode(\"\") = %v, want empty", got)
	}
	if got := ident.Decode(ident.Encode("<|im_start|>hi")); got != "<|im_start|>hi" {
		t.Errorf("round trip with user-defined = %q", got)
	}
}

func TestRejectsUnsupported(t *testing.T) {
	mp := &ModelProto{
		Pieces:     []Piece{{Piece: "<unk>", Type: Unknown}, {Piece: "a", Type: Normal}},
		Trainer:    defaultTrainerSpec(),
		Normalizer: defaultNormalizerSpec(),
	}
	if _, err := NewModel(mp); err != nil {
		t.Fatalf("minimal model: %v", err)
	}
	mp.Trainer.ModelType = 0
	if _, err := NewModel(mp); err == nil || !strings.Contains(err.Error(), "model_type") {
		t.Errorf("model type 0: err = %v", err)
	}
}
