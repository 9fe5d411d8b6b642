package textmetrics

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
)

// Cross-checks against the Python packages LLaMA Factory uses, run through
// testdata/peers.py. numpy comes with the PyTorch reference environment, so
// its test fails under LATHE_REQUIRE_PEERS=1 when missing; nltk, jieba and
// rouge_chinese are optional extras and their tests only ever skip.

// pythons are the interpreters tried, in order: Debian's (where python3-torch
// and python3-nltk install) and whatever python3 is first on PATH.
var pythons = []string{"/usr/bin/python3", "python3"}

var (
	peerMu    sync.Mutex
	peerFound = map[string]string{} // module -> interpreter ("" when none)
)

// pythonWith returns an interpreter that can import every one of modules,
// or "" when none can.
func pythonWith(modules ...string) string {
	key := strings.Join(modules, ",")
	peerMu.Lock()
	defer peerMu.Unlock()
	if py, ok := peerFound[key]; ok {
		return py
	}
	found := ""
	for _, py := range pythons {
		if err := exec.Command(py, "-c", "import "+key).Run(); err == nil {
			found = py
			break
		}
	}
	peerFound[key] = found
	return found
}

// needPeer returns a Python that imports modules, or skips the test. With
// required set and LATHE_REQUIRE_PEERS=1 a missing peer fails it instead.
func needPeer(t *testing.T, required bool, modules ...string) string {
	t.Helper()
	py := pythonWith(modules...)
	if py != "" {
		return py
	}
	msg := fmt.Sprintf("no python3 among %v can import %s", pythons, strings.Join(modules, ", "))
	if required && os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
		t.Fatalf("%s (LATHE_REQUIRE_PEERS=1)", msg)
	}
	t.Skip(msg)
	return ""
}

// runPeer runs testdata/peers.py MODE with in as JSON on stdin and decodes
// its JSON answer into out.
func runPeer(t *testing.T, py, mode string, in, out any) {
	t.Helper()
	data, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "peers.py"), mode)
	cmd.Stdin = bytes.NewReader(data)
	cmd.Env = append(os.Environ(), "TMPDIR="+t.TempDir()) // jieba writes its cache there
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("peers.py %s: %v\n%s", mode, err, stderr.Bytes())
	}
	if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
		t.Fatalf("peers.py %s: decoding its output: %v", mode, err)
	}
}

// randomText draws n pieces from pieces.
func randomText(r *rand.Rand, pieces []string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(pieces[r.IntN(len(pieces))])
	}
	return b.String()
}

// mutate returns s with a few random character edits, so that pairs share
// long n-grams without being identical.
func mutate(r *rand.Rand, s string, pieces []string) string {
	rs := []rune(s)
	for range r.IntN(4) {
		p := []rune(pieces[r.IntN(len(pieces))])
		i := r.IntN(len(rs) + 1)
		switch r.IntN(3) {
		case 0: // insert
			rs = append(rs[:i], append(p, rs[i:]...)...)
		case 1: // delete one
			if i < len(rs) {
				rs = append(rs[:i], rs[i+1:]...)
			}
		default: // truncate
			rs = rs[:i]
		}
	}
	return string(rs)
}

// fixedPairs are edge cases every cross-check includes.
var fixedPairs = [][2]string{
	{"", ""}, {"", "abc"}, {"abc", ""}, {"  ", "  "}, {"a", "a"}, {"ab", "ab"}, {"abc", "abc"},
	{"abcd", "abcd"}, {"猫", "猫"}, {"你好世界", "你好世界"}, {"abcd", "wxyz"},
	{"안녕하세요", "안녕하십니까"}, {"GPT-4模型很好", "GPT-4模型不好"}, {"the the the", "the cat"},
	{"好。\n坏", "好。坏"}, {"Hello World", "hello world"}, {"a\n\nb", "a b"}, {"aaaa", "aa"},
	{"他说：“好！”然后走了。", "他说：“好。”"}, {"x......y", "x......y"}, {"\n", "x"},
}

// randomPairs returns fixedPairs plus n random (prediction, reference) pairs.
func randomPairs(seed uint64, n int, pieces []string) [][2]string {
	r := rand.New(rand.NewPCG(seed, 1))
	pairs := append([][2]string(nil), fixedPairs...)
	for range n {
		ref := randomText(r, pieces, r.IntN(30))
		pred := mutate(r, ref, pieces)
		if r.IntN(4) == 0 {
			pred = randomText(r, pieces, r.IntN(30))
		}
		pairs = append(pairs, [2]string{pred, ref})
	}
	return pairs
}

var textPieces = []string{
	"a", "b", "c", "ab", "the", " ", " ", "\n", "你", "好", "世", "界", "的",
	"안", "녕", "カ", "。", "，", "！", "？", "?", "”", "…", ".", "3.5", "-", "x",
}

func TestBLEUAgainstNLTK(t *testing.T) {
	py := needPeer(t, false, "nltk")
	pairs := randomPairs(7, 50, textPieces)
	var want []float64
	runPeer(t, py, "bleu", pairs, &want)
	if len(want) != len(pairs) {
		t.Fatalf("nltk gave %d scores for %d pairs", len(want), len(pairs))
	}
	nonzero := 0
	for i, p := range pairs {
		got := bleu4(p[0], p[1])
		// Go's and the C library's log/exp may differ in the last bit.
		if math.Abs(got-want[i]) > 1e-12*math.Max(1, math.Abs(want[i])) {
			t.Errorf("bleu4(%q, %q) = %.17g, nltk %.17g", p[0], p[1], got, want[i])
		}
		if want[i] != 0 {
			nonzero++
		}
	}
	if nonzero < len(pairs)/2 {
		t.Errorf("only %d of %d pairs have a non-zero BLEU: the cases are too weak", nonzero, len(pairs))
	}
}

func TestRougeAgainstRougeChinese(t *testing.T) {
	py := needPeer(t, false, "rouge_chinese")
	pairs := randomPairs(11, 80, textPieces)
	joined := make([][2]string, len(pairs))
	for i, p := range pairs {
		joined[i] = [2]string{strings.Join(segment(p[0]), " "), strings.Join(segment(p[1]), " ")}
	}
	var want [][3]float64
	runPeer(t, py, "rouge", joined, &want)
	if len(want) != len(pairs) {
		t.Fatalf("rouge_chinese gave %d scores for %d pairs", len(want), len(pairs))
	}
	for i, j := range joined {
		r := rougeScores(j[0], j[1])
		// Same integer ratios in the same order: the floats must be equal.
		if got := [3]float64{r.r1, r.r2, r.rl}; got != want[i] {
			t.Errorf("rouge(%q, %q) = %v, rouge_chinese %v", j[0], j[1], got, want[i])
		}
	}
}

func TestSegmentAgainstJieba(t *testing.T) {
	py := needPeer(t, false, "jieba")
	pieces := []string{
		"a", "Z", "hello", "x1", "42", "3.14", "1.", ".5", "%", "-", "+", "#", "&", "_", ".",
		"c++", "C#", "AT&T", "c", " ", "  ", "\n", "\r\n", "\r", "\t", "\u3000", "\u00a0", "\x1c",
		"，", "。", "！", "？", "“", "”", "、", "안", "녕", "こ", "カ", "é", "Ｆ", "😀", "…",
		"的", "一", "是", "了", "我", "不", "人", "在", "他", "有",
	}
	r := rand.New(rand.NewPCG(3, 5))
	texts := []string{
		"", "hello world", "café au lait", "3.14% v1.2.3 a--b well-known c++ C# AT&T ATMs",
		"abc++", "xC#y", "C++11", "Ac++.5", "a.5.5%x", "x%%y", "......ok........",
		"GPT-4模型很好。\n\n他说：“好！”", "안녕하세요 세계", "a\r\nb\tc", "😀x", "Ｆｕｌｌ１２",
	}
	for range 150 {
		texts = append(texts, randomText(r, pieces, 1+r.IntN(25)))
	}
	var cut [][]string
	runPeer(t, py, "jieba", texts, &cut)
	if len(cut) != len(texts) {
		t.Fatalf("jieba gave %d answers for %d texts", len(cut), len(texts))
	}
	for i, s := range texts {
		// jieba's dictionary words made of ideographs become single
		// ideographs here; everything else must be identical.
		var want []string
		for _, w := range cut[i] {
			if allJiebaHan(w) {
				for _, c := range w {
					want = append(want, string(c))
				}
			} else {
				want = append(want, w)
			}
		}
		if got := segment(s); !reflect.DeepEqual(got, want) && len(got)+len(want) > 0 {
			t.Errorf("segment(%q) = %q, jieba (ideographs split) %q", s, got, want)
		}
	}
}

func allJiebaHan(w string) bool {
	for _, c := range w {
		if !isJiebaHan(c) {
			return false
		}
	}
	return w != ""
}

func TestCorpusAgainstLLaMAFactory(t *testing.T) {
	py := needPeer(t, false, "nltk", "rouge_chinese", "numpy")
	pairs := randomPairs(19, 60, textPieces)
	cases := make([][4]string, len(pairs))
	preds := make([]string, len(pairs))
	refs := make([]string, len(pairs))
	for i, p := range pairs {
		preds[i], refs[i] = p[0], p[1]
		cases[i] = [4]string{p[0], p[1], strings.Join(segment(p[0]), " "), strings.Join(segment(p[1]), " ")}
	}
	var want map[string]float64
	runPeer(t, py, "llamafactory", cases, &want)
	got, err := Corpus(preds, refs)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		key string
		got float64
	}{{"bleu-4", got.BLEU4}, {"rouge-1", got.Rouge1}, {"rouge-2", got.Rouge2}, {"rouge-l", got.RougeL}} {
		w, ok := want[c.key]
		if !ok {
			t.Fatalf("LLaMA Factory reference has no %q: %v", c.key, want)
		}
		// Per-sample values are rounded to 1e-4, so a last-bit log/exp
		// difference could at worst move a mean by 1e-4/n; none is expected.
		if math.Abs(c.got-w) > 1e-9 {
			t.Errorf("%s: Corpus %.17g, LLaMA Factory %.17g", c.key, c.got, w)
		}
	}
}

func TestNumericAgainstPython(t *testing.T) {
	py := needPeer(t, true, "numpy")
	r := rand.New(rand.NewPCG(23, 29))
	var in struct {
		Fsum   [][]float64 `json:"fsum"`
		Mean   [][]float64 `json:"mean"`
		Round4 []float64   `json:"round4"`
	}
	for range 200 {
		xs := make([]float64, 1+r.IntN(6))
		for i := range xs {
			xs[i] = 0.25 * math.Log(r.Float64()) * math.Pow(10, float64(r.IntN(40)-20))
			if r.IntN(3) == 0 {
				xs[i] = -xs[i]
			}
		}
		in.Fsum = append(in.Fsum, xs)
	}
	for _, n := range []int{1, 5, 7, 8, 9, 16, 100, 127, 128, 129, 1000, 8191, 8192, 8193, 20001} {
		xs := make([]float64, n)
		for i := range xs {
			xs[i] = pyRound(r.Float64()*100, 4) * []float64{1, 1e-3, 1e3}[r.IntN(3)]
		}
		in.Mean = append(in.Mean, xs)
	}
	in.Round4 = []float64{0.03125, 0.09375, 1.00005, 2.00015, 99.9999995, 12.34565, 0.00005}
	for range 500 {
		in.Round4 = append(in.Round4, r.Float64()*100, float64(r.IntN(2000000))/20000)
	}
	var want struct {
		Fsum   []float64 `json:"fsum"`
		Mean   []float64 `json:"mean"`
		Round4 []float64 `json:"round4"`
	}
	runPeer(t, py, "numeric", in, &want)
	if len(want.Fsum) != len(in.Fsum) || len(want.Mean) != len(in.Mean) || len(want.Round4) != len(in.Round4) {
		t.Fatalf("peer answered %d/%d/%d values for %d/%d/%d inputs",
			len(want.Fsum), len(want.Mean), len(want.Round4), len(in.Fsum), len(in.Mean), len(in.Round4))
	}
	for i, xs := range in.Fsum {
		if got := fsum(xs); got != want.Fsum[i] {
			t.Errorf("fsum(%v) = %.17g, math.fsum %.17g", xs, got, want.Fsum[i])
		}
	}
	for i, xs := range in.Mean {
		if got := npMean(xs); got != want.Mean[i] {
			t.Errorf("npMean of %d values = %.17g, numpy %.17g", len(xs), got, want.Mean[i])
		}
	}
	for i, x := range in.Round4 {
		if got := pyRound(x, 4); got != want.Round4[i] {
			t.Errorf("pyRound(%.17g, 4) = %.17g, Python %.17g", x, got, want.Round4[i])
		}
	}
}
