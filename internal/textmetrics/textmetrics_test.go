package textmetrics

import (
	"math"
	"reflect"
	"strings"
	"testing"
)

// Expected scores below are worked out by hand; each is round(100*x, 4).
// BLEU works on characters, ROUGE on the words of Tokens.
// F(p, r) = 2*(p*r)/(p+r+1e-8), which rounds to the plain F1 at 4 places.
func TestSentence(t *testing.T) {
	tests := []struct {
		name      string
		pred, ref string
		want      Scores
	}{
		{
			// BLEU: every precision 1, lengths equal so BP = exp(0) = 1 -> 100.
			// ROUGE: words the/cat/sat on both sides, p = r = 1,
			// F = 2/(2+1e-8) = 0.999999995 -> 100.
			name: "identical ASCII", pred: "the cat sat", ref: "the cat sat",
			want: Scores{BLEU4: 100, Rouge1: 100, Rouge2: 100, RougeL: 100},
		},
		{
			// 4 ideographs, 4 words each (one per ideograph): all 100.
			name: "identical CJK", pred: "你好世界", ref: "你好世界",
			want: Scores{BLEU4: 100, Rouge1: 100, Rouge2: 100, RougeL: 100},
		},
		{
			// No character in common: unigram numerator 0 -> BLEU 0.
			// Words "abcd" vs "wxyz": overlap 0, F = 0/(0+0+1e-8) = 0.
			name: "disjoint", pred: "abcd", ref: "wxyz",
			want: Scores{},
		},
		{
			// Empty hypothesis: no unigram matches -> BLEU 0; ROUGE 0 by the
			// empty-text rule.
			name: "empty prediction", pred: "", ref: "abc",
			want: Scores{},
		},
		{
			// Empty reference: clipped unigram count 0 -> BLEU 0; ROUGE 0.
			name: "empty reference", pred: "abc", ref: "",
			want: Scores{},
		},
		{
			// ROUGE 0 (no words), but BLEU still runs on the two spaces:
			// p1 = 2/2, p2 = 1/1, p3 = 0/1 -> 1/(2*1), p4 = 0/1 -> 1/(4*1);
			// BP = exp(1 - 2/2) = 1; BLEU = (1*1*1/2*1/4)^(1/4) = 2^-0.75
			// = 0.594603557... -> 59.4604.
			name: "whitespace only", pred: "  ", ref: "  ",
			want: Scores{BLEU4: 59.4604},
		},
		{
			// Hypothesis shorter than 4: same arithmetic as above, 2^-0.75.
			// ROUGE: one word "ab" each side: rouge-1/L 100; no bigrams on
			// either side: p = r = 0 -> rouge-2 0.
			name: "two characters", pred: "ab", ref: "ab",
			want: Scores{BLEU4: 59.4604, Rouge1: 100, Rouge2: 0, RougeL: 100},
		},
		{
			// One character: p1 = 1/1, p2..p4 = 0/1 -> 1/2, 1/4, 1/8;
			// BLEU = (1/64)^(1/4) = 2^-1.5 = 0.353553390... -> 35.3553.
			name: "one ideograph", pred: "猫", ref: "猫",
			want: Scores{BLEU4: 35.3553, Rouge1: 100, Rouge2: 0, RougeL: 100},
		},
		{
			// Korean, one word per syllable: 안 녕 하 세 요 vs 안 녕 하 십 니 까.
			// BLEU: p1 = 3/5 (안녕하), p2 = 2/4 (안녕, 녕하), p3 = 1/3 (안녕하),
			// p4 = 0/2 -> 1/(2*2); BP = exp(1 - 6/5) = exp(-0.2);
			// BLEU = exp(-0.2) * (3/5 * 1/2 * 1/3 * 1/4)^(1/4)
			//      = 0.818730753 * 0.397635364 = 0.325556301 -> 32.5556.
			// rouge-1: 5 and 6 distinct syllables, 3 shared: p = 0.6, r = 0.5,
			// F = 0.6/1.1 = 0.545454... -> 54.5455.
			// rouge-2: 4 and 5 bigrams, 2 shared: p = 0.5, r = 0.4,
			// F = 0.4/0.9 = 0.444444... -> 44.4444.
			// rouge-L: LCS 안녕하 = 3: p = 3/5, r = 3/6 -> as rouge-1.
			name: "Korean", pred: "안녕하세요", ref: "안녕하십니까",
			want: Scores{BLEU4: 32.5556, Rouge1: 54.5455, Rouge2: 44.4444, RougeL: 54.5455},
		},
		{
			// Mixed: words GPT - 4 模 型 很 好 vs GPT - 4 模 型 不 好.
			// rouge-1: 7 and 7 distinct, 6 shared: F = 6/7 = 0.857142... -> 85.7143.
			// rouge-2: 6 and 6 bigrams, 4 shared (GPT -, - 4, 4 模, 模 型):
			// F = 4/6 -> 66.6667. rouge-L: LCS 6 of 7 and 7 -> 85.7143.
			// BLEU: 9 characters each, differing at index 7 (很/不):
			// p1 = 8/9, p2 = 6/8, p3 = 5/7, p4 = 4/6, BP = 1;
			// BLEU = (960/3024)^(1/4) = 0.750623853... -> 75.0624.
			name: "mixed ASCII and CJK", pred: "GPT-4模型很好", ref: "GPT-4模型不好",
			want: Scores{BLEU4: 75.0624, Rouge1: 85.7143, Rouge2: 66.6667, RougeL: 85.7143},
		},
		{
			// ROUGE-N counts distinct n-grams (rouge_chinese's sets):
			// rouge-1: {the} vs {the, cat}: p = 1/1, r = 1/2, F = 1/1.5 -> 66.6667
			// (clipped counts would give p = 1/3).
			// rouge-2: {the the} vs {the cat}: 0. rouge-L: LCS 1, p = 1/3,
			// r = 1/2, F = (1/3)/(5/6) = 0.4 -> 40.
			// BLEU on characters "the the the" (11) vs "the cat" (7):
			// p1: t:3 h:3 e:3 ' ':2 clipped by t:2 h:1 e:1 ' ':1 -> 5/11;
			// p2: th:3 he:3 "e ":2 " t":2 clipped by th he "e " " c" "ca" "at"
			// (1 each) -> th 1 + he 1 + "e " 1 = 3/10;
			// p3: the:3 "he ":2 "e t":2 " th":2 vs the, "he ", "e c", ... -> 2/9;
			// p4: "the ":2 "he t":2 "e th":2 " the":2 vs "the ", ... -> 1/8;
			// BP = 1 (11 > 7); BLEU = (5/11 * 3/10 * 2/9 * 1/8)^(1/4)
			// = (30/7920)^(1/4) = 0.248084... -> 24.8084.
			name: "repeated words", pred: "the the the", ref: "the cat",
			want: Scores{BLEU4: 24.8084, Rouge1: 66.6667, Rouge2: 0, RougeL: 40},
		},
		{
			// rouge_chinese's empty sentence: "好 。 \n 坏" is cut after 。 and at
			// the line break, leaving a blank sentence -> words 好 。 "" 坏
			// against 好 。 坏.
			// rouge-1: 4 vs 3 distinct, 3 shared: p = 3/4, r = 1,
			// F = 1.5/1.75 = 0.857142... -> 85.7143.
			// rouge-2: {好 。, 。 "", "" 坏} vs {好 。, 。 坏}: p = 1/3, r = 1/2 -> 40.
			// rouge-L: LCS 3, p = 3/4, r = 1 -> 85.7143.
			// BLEU: "好。\n坏" vs "好。坏": p1 = 3/4, p2 = 1/3 (好。), p3 = 0/2 ->
			// 1/(2*2), p4 = 0/1 -> 1/(4*1), BP = 1 (4 > 3);
			// BLEU = (3/4 * 1/3 * 1/4 * 1/4)^(1/4) = 2^-1.5 -> 35.3553.
			name: "line break after full stop", pred: "好。\n坏", ref: "好。坏",
			want: Scores{BLEU4: 35.3553, Rouge1: 85.7143, Rouge2: 40, RougeL: 85.7143},
		},
		{
			// Case is kept: words Hello/World vs hello/world share nothing.
			// BLEU: 11 characters each, differing at indices 0 and 6 (H/h, W/w);
			// an n-gram matches when it avoids both indices (each clean n-gram
			// occurs once on each side):
			// p1 = 9/11; bigrams start 0..9, those at 0, 5, 6 touch -> 7/10;
			// trigrams start 0..8, at 0, 4, 5, 6 touch -> 5/9;
			// 4-grams start 0..7, at 0, 3, 4, 5, 6 touch -> 3/8; BP = 1;
			// BLEU = (9/11 * 7/10 * 5/9 * 3/8)^(1/4) = (945/7920)^(1/4)
			// = 0.587728... -> 58.7728.
			name: "case sensitive", pred: "Hello World", ref: "hello world",
			want: Scores{BLEU4: 58.7728},
		},
		{
			// Invalid UTF-8: each bad byte reads as U+FFFD, as in Go's
			// []rune conversion. Two U+FFFD each side: BLEU as for "ab"
			// (2^-0.75); words � � (one per character, like punctuation):
			// rouge-1 {�} both sides, rouge-2 {� �} both sides, LCS 2 -> 100.
			name: "invalid UTF-8", pred: "\xff\xfe", ref: "\ufffd\ufffd",
			want: Scores{BLEU4: 59.4604, Rouge1: 100, Rouge2: 100, RougeL: 100},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Sentence(tt.pred, tt.ref); got != tt.want {
				t.Errorf("Sentence(%q, %q) = %+v, want %+v", tt.pred, tt.ref, got, tt.want)
			}
		})
	}
}

func TestTokens(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", nil},
		{" \t\n ", nil},
		{"hello world", []string{"hello", "world"}},
		{"Hello, World!", []string{"Hello", ",", "World", "!"}},
		{"大语言模型", []string{"大", "语", "言", "模", "型"}},
		{"안녕하세요 세계", []string{"안", "녕", "하", "세", "요", "세", "계"}},
		{"こんにちは、カタカナ", []string{"こ", "ん", "に", "ち", "は", "、", "カ", "タ", "カ", "ナ"}},
		{"café au lait", []string{"caf", "é", "au", "lait"}},
		{"3.14% v1.2.3 a--b well-known", []string{"3.14%", "v1.2", ".", "3", "a", "--", "b", "well", "-", "known"}},
		{"c++ C# AT&T abc++ C++11", []string{"c++", "C#", "AT&T", "ab", "c++", "C++", "11"}},
		{"GPT-4模型", []string{"GPT", "-", "4", "模", "型"}},
		{"......ok........", []string{"......", "ok", "......", ".."}},
		{"Ｆｕｌｌ１２", []string{"Ｆ", "ｕ", "ｌ", "ｌ", "１", "２"}},
		{"😀x", []string{"😀", "x"}},
		{"a\r\nb\u3000c", []string{"a", "b", "c"}},
		// Python's isspace (str.split) also counts U+001C..U+001F.
		{"a\x1cb\x1fc", []string{"a", "b", "c"}},
		// 。 followed by a line break leaves a blank sentence: one "" word.
		{"好。\n坏", []string{"好", "。", "", "坏"}},
		// A blank line does the same; a single line break does not.
		{"a\n\nb", []string{"a", "", "b"}},
		{"a\nb", []string{"a", "b"}},
		// After a closing quote the break is inserted by rule 4, no blank.
		{"他说：“好！”然后", []string{"他", "说", "：", "“", "好", "！", "”", "然", "后"}},
	}
	for _, tt := range tests {
		if got := Tokens(tt.in); !reflect.DeepEqual(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
			t.Errorf("Tokens(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCutSent(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"a 。 b", []string{"a 。", " b"}},
		{"a 。", []string{"a 。"}},
		{"a ？ ! b ? c", []string{"a ？", " ! b ?", " c"}},
		// Six dots end a sentence; the seventh is the next character.
		{"x....... y", []string{"x......", ". y"}},
		{"x …… y", []string{"x ……", " y"}},
		{"x … … y", []string{"x … … y"}},
		{"x……y", []string{"x……", "y"}},
		// 。” is not split by rule 1 (quote follows) but by rule 4.
		{"好。”坏", []string{"好。”", "坏"}},
		{"好。”，坏", []string{"好。”，坏"}},
		{"a \n  \n b  ", []string{"a ", "  ", " b"}},
	}
	for _, tt := range tests {
		if got := cutSent(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("cutSent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCorpus(t *testing.T) {
	// Per sample: ("the cat sat", same) scores 100 everywhere, ("abcd", "wxyz")
	// scores 0 everywhere, ("ab", "ab") scores BLEU 59.4604, rouge-1/L 100,
	// rouge-2 0 (see TestSentence). Means over 3: BLEU (100 + 0 + 59.4604)/3
	// = 53.1534666..., rouge-1/L 200/3, rouge-2 100/3.
	got, err := Corpus([]string{"the cat sat", "abcd", "ab"}, []string{"the cat sat", "wxyz", "ab"})
	if err != nil {
		t.Fatal(err)
	}
	want := Scores{BLEU4: (100 + 0 + 59.4604) / 3, Rouge1: 200.0 / 3, Rouge2: 100.0 / 3, RougeL: 200.0 / 3}
	if got != want {
		t.Errorf("Corpus = %+v, want %+v", got, want)
	}
}

func TestCorpusErrors(t *testing.T) {
	tests := []struct {
		name        string
		preds, refs []string
		wantErr     string
	}{
		{"length mismatch", []string{"a", "b"}, []string{"a"}, "2 predictions but 1 references"},
		{"no samples", nil, nil, "no samples"},
		{"empty slices", []string{}, []string{}, "no samples"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Corpus(tt.preds, tt.refs)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "textmetrics: ") {
				t.Errorf("Corpus error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestPyRound(t *testing.T) {
	tests := []struct{ in, want float64 }{
		{0.03125, 0.0312}, // exact binary tie, half to even (down)
		{0.09375, 0.0938}, // exact binary tie, half to even (up)
		{1.00005, 1.0001}, // the double is just above the tie
		{99.9999995, 100}, // F of identical texts, times 100
		{59.46035575013605, 59.4604},
		{0, 0},
	}
	for _, tt := range tests {
		if got := pyRound(tt.in, 4); got != tt.want {
			t.Errorf("pyRound(%v, 4) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestFsum(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, 1},
		{[]float64{1e-16, 1, 1e16}, 1.0000000000000002e16},
		{[]float64{1e100, 1, -1e100, 1e-100, 1e50, -1, -1e50}, 1e-100},
		{[]float64{-0.25 * math.Ln2, -0.5 * math.Ln2, 0, 0}, -0.75 * math.Ln2},
	}
	for _, tt := range tests {
		if got := fsum(tt.in); got != tt.want {
			t.Errorf("fsum(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestPairwiseMean(t *testing.T) {
	// Below 8 items the sum is a plain left-to-right loop.
	x, y, z := 0.1, 0.2, 0.3 // variables: constant arithmetic would be exact
	if got, want := npMean([]float64{x, y, z}), (((0.0+x)+y)+z)/3; got != want {
		t.Errorf("npMean 3 items = %v, want %v", got, want)
	}
	// 9 items: eight accumulators hold a[0..7], combined as
	// ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)), then a[8] is added.
	a := []float64{1e16, 1, -1e16, 1, 1, 1, 1, 1, 1}
	want := (((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))) + a[8]
	if got := npMean(a); got != want/9 {
		t.Errorf("npMean 9 items = %v, want %v", got, want/9)
	}
}

func TestLCS(t *testing.T) {
	tests := []struct {
		x, y string
		want int
	}{
		{"", "", 0},
		{"a b c", "", 0},
		{"a b c d", "a c d", 3},
		{"a b c b d a b", "b d c a b a", 4},
		{"x y", "y x", 1},
	}
	for _, tt := range tests {
		if got := lcsLen(strings.Fields(tt.x), strings.Fields(tt.y)); got != tt.want {
			t.Errorf("lcsLen(%q, %q) = %d, want %d", tt.x, tt.y, got, tt.want)
		}
	}
}

// FuzzSentence checks properties that hold for any text: scores lie in
// [0, 100]; a text scored against itself has BLEU 100 from 4 characters on,
// and ROUGE-1/L 100 when it has a word; words never hold whitespace.
func FuzzSentence(f *testing.F) {
	for _, p := range fixedPairs {
		f.Add(p[0], p[1])
	}
	f.Fuzz(func(t *testing.T, pred, ref string) {
		s := Sentence(pred, ref)
		for _, v := range []float64{s.BLEU4, s.Rouge1, s.Rouge2, s.RougeL} {
			if !(v >= 0 && v <= 100) {
				t.Fatalf("Sentence(%q, %q) = %+v: score outside [0, 100]", pred, ref, s)
			}
		}
		self := Sentence(pred, pred)
		if len([]rune(pred)) >= 4 && self.BLEU4 != 100 {
			t.Errorf("Sentence(%q, itself).BLEU4 = %v, want 100", pred, self.BLEU4)
		}
		words := Tokens(pred)
		hasWord := false
		for _, w := range words {
			if strings.IndexFunc(w, isPySpace) >= 0 {
				t.Errorf("Tokens(%q) has word %q with whitespace", pred, w)
			}
			hasWord = hasWord || w != ""
		}
		if hasWord && (self.Rouge1 != 100 || self.RougeL != 100) {
			t.Errorf("Sentence(%q, itself) = %+v, want ROUGE-1/L 100", pred, self)
		}
	})
}
