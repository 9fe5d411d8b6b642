package evaluate

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

func TestStaticDiagnostics(t *testing.T) {
	f := setup(t)
	unknownData := withVars(f.vars, map[string]cty.Value{"later": cty.UnknownVal(stage.ArtifactType(stage.DatasetArtifact))})
	for _, tc := range []struct {
		name, src string
		want      string // "" = no error
	}{
		{"nothing", "model = base\n", "Nothing to evaluate"},
		{"adapter only", "model = base\nadapter = adapter\nbatch_size = 2\n", "Nothing to evaluate"},
		{"unknown data counts", "model = base\ndata = later\n", ""},
		{"k_shot without dev", "model = base\nchoices {\n  path = \"mc.jsonl\"\n  k_shot = 3\n}\n", "Missing dev"},
		{"dev without k_shot", "model = base\nchoices {\n  path = \"mc.jsonl\"\n  dev = \"mc_dev.json\"\n}\n", "Unused dev"},
		{"empty choices path", "model = base\nchoices {\n  path = \"\"\n}\n", "choices: path is empty"},
		{"empty generate path", "model = base\ngenerate {\n  path = \"\"\n}\n", "generate: path is empty"},
		{"good", "model = base\nchoices {\n  path = \"mc.jsonl\"\n  dev = \"mc_dev.json\"\n  k_shot = 2\n}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := decodeHCL(t, Kind().Schema, tc.src, unknownData)
			_, d := Kind().Outputs(args)
			switch {
			case tc.want == "" && d.HasErrors():
				t.Errorf("unexpected diagnostics: %v", d)
			case tc.want != "" && (!d.HasErrors() || !strings.Contains(d.Error(), tc.want)):
				t.Errorf("diagnostics %v, want %q", d, tc.want)
			}
		})
	}
}

// TestSchemaErrors: values the schema's validations refuse.
func TestSchemaErrors(t *testing.T) {
	f := setup(t)
	for _, tc := range []struct{ src, want string }{
		{"model = base\nchoices {\n  path = \"mc.jsonl\"\n  template = \"chatlm\"\n}\n", `Did you mean "chatml"`},
		{"model = base\ngenerate {\n  path = \"g.json\"\n  format = \"text\"\n}\n", "format must be one of"},
		{"model = base\ngenerate {\n  path = \"g.json\"\n  max_new_tokens = 0\n}\n", "max_new_tokens must be >= 1"},
		{"model = base\nchoices {\n  path = \"mc.jsonl\"\n  k_shot = -1\n}\n", "k_shot must be >= 0"},
		{"model = base\ndata = sft_val\nbatch_size = 0\n", "batch_size must be >= 1"},
		{"model = tok\ndata = sft_val\n", "model must be a model artifact"},
		{"data = sft_val\n", `"model" is required`},
	} {
		_, d := decodeDiags(t, tc.src, f.vars)
		if !d.HasErrors() || !strings.Contains(d.Error(), tc.want) {
			t.Errorf("%q: diagnostics %v, want %q", tc.src, d, tc.want)
		}
	}
}

// TestRunErrors: problems found when the stage runs name what is wrong,
// with the file and line for bad rows.
func TestRunErrors(t *testing.T) {
	f := setup(t)
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("bad_answer.jsonl", `{"question": "q1", "choices": ["a", "b"], "answer": "A"}
{"question": "q2", "choices": ["a", "b"], "answer": "E"}
`)
	write("bad.json", `[
  {"question": "q1", "A": "x", "B": "y", "answer": 0},
  {"question": "q2", "A": "x", "B": "y"}
]`)
	write("short_dev.jsonl", `{"question": "d", "choices": ["a", "b"], "answer": 0}`+"\n")
	write("gen_bad.json", "[\n  {\"instruction\": \"hi\", \"output\": \"x\"},\n  {\"instruction\": \"yo\", \"output\": 3,}\n]\n")
	write("gen_prefs.json", `[{"instruction": "hi", "chosen": "a", "rejected": "b"}]`)
	noHead := filepath.Join(dir, "adapter-without-head")
	if err := os.MkdirAll(noHead, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{lora.ConfigFile, lora.WeightsFile} {
		b, err := os.ReadFile(filepath.Join(f.adapter, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noHead, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars := withVars(f.vars, map[string]cty.Value{"adapter_nohead": art(stage.AdapterArtifact, noHead)})
	for _, tc := range []struct{ name, src, want string }{
		{"bad answer", "model = base\nchoices {\n  path = \"bad_answer.jsonl\"\n}\n", `bad_answer.jsonl:2: answer "E" but the question has 2 choices (A to B)`},
		{"missing answer", "model = base\nchoices {\n  path = \"bad.json\"\n}\n", `bad.json:3: the row has no "answer"`},
		{"k_shot over dev", "model = base\nchoices {\n  path = \"" + filepath.Join(testdata(t), "mc.jsonl") + "\"\n  dev = \"short_dev.jsonl\"\n  k_shot = 2\n}\n", "k_shot = 2 but short_dev.jsonl holds only 1 question(s)"},
		{"missing file", "model = base\nchoices {\n  path = \"nope.jsonl\"\n}\n", "nope.jsonl"},
		{"bad generate JSON", "model = base\ngenerate {\n  path = \"gen_bad.json\"\n}\n", "gen_bad.json:3"},
		{"generate without answers", "model = base\ngenerate {\n  path = \"gen_prefs.json\"\n}\n", "gen_prefs.json"},
		{"pairs without value head", "model = base\npairs = prefs_val\n", "the model does not hold value_head.safetensors"},
		{"pairs without value head, adapter", "model = base\nadapter = adapter_nohead\npairs = prefs_val\n", "neither the adapter nor the model holds value_head.safetensors"},
		{"pairs given sft data", "model = rm\npairs = sft_val\n", "holds no preference pairs"},
		{"data given pairs", "model = base\ndata = prefs_val\n", "holds preference pairs"},
		{"unknown template auto", "model = base\nchoices {\n  path = \"" + filepath.Join(testdata(t), "mc.jsonl") + "\"\n  template = \"auto\"\n}\n", "chat_template"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := decodeHCL(t, Kind().Schema, tc.src, vars)
			if _, d := Kind().Outputs(args); d.HasErrors() {
				t.Fatal(d)
			}
			_, err := Kind().Run(context.Background(), newRequest(t, args, dir))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

func TestReadQuestions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content string
		want          []Question // Source lines only: "name:line"
		err           string
	}{
		{"mmlu.csv", "What?,a,b,c,d,C\n\"multi\nline\",x,y,z,w,a\n", []Question{
			{Source: "mmlu.csv:1", Question: "What?", Choices: []string{"a", "b", "c", "d"}, Answer: 2},
			{Source: "mmlu.csv:2", Question: "multi\nline", Choices: []string{"x", "y", "z", "w"}, Answer: 0},
		}, ""},
		{"header.csv", "question,A,B,answer\nWhy?,yes,no,B\n", []Question{
			{Source: "header.csv:2", Question: "Why?", Choices: []string{"yes", "no"}, Answer: 1},
		}, ""},
		{"array.json", "\uFEFF[\n  {\"question\": \"q\", \"choices\": [\"x\", 2.5], \"answer\": 1},\n\n  {\"question\": \"r\",\n   \"A\": \"1\", \"B\": \"2\", \"C\": \"3\", \"answer\": \"c\"}\n]\n", []Question{
			{Source: "array.json:2", Question: "q", Choices: []string{"x", "2.5"}, Answer: 1},
			{Source: "array.json:4", Question: "r", Choices: []string{"1", "2", "3"}, Answer: 2},
		}, ""},
		{"lines.json", "{\"question\": \"q\", \"A\": \"x\", \"B\": \"y\", \"answer\": \"A\"}\n", []Question{
			{Source: "lines.json:1", Question: "q", Choices: []string{"x", "y"}, Answer: 0},
		}, ""},
		{"gap.jsonl", "\n{\"question\": \"q\", \"A\": \"x\", \"B\": \"y\", \"D\": \"z\", \"answer\": \"A\"}\n", nil, `gap.jsonl:2: the row has choice "D" but no "C"`},
		{"both.jsonl", `{"question": "q", "choices": ["x", "y"], "A": "x", "answer": "A"}`, nil, `both.jsonl:1: the row has both "choices" and "A"`},
		{"nochoices.jsonl", `{"question": "q", "answer": "A"}`, nil, `nochoices.jsonl:1: the row has neither "choices" nor choice keys`},
		{"one.jsonl", `{"question": "q", "choices": ["x"], "answer": 0}`, nil, "one.jsonl:1: 1 choice; a question needs at least two"},
		{"noquestion.jsonl", `{"choices": ["x", "y"], "answer": 0}`, nil, `noquestion.jsonl:1: the row has no "question"`},
		{"emptyq.jsonl", `{"question": " ", "choices": ["x", "y"], "answer": 0}`, nil, "emptyq.jsonl:1: the question is empty"},
		{"index.jsonl", `{"question": "q", "choices": ["x", "y"], "answer": 2}`, nil, `index.jsonl:1: "answer" 2 is outside the 2 choices`},
		{"float.jsonl", `{"question": "q", "choices": ["x", "y"], "answer": 1.5}`, nil, `float.jsonl:1: "answer" 1.5 is not a whole number`},
		{"boolanswer.jsonl", `{"question": "q", "choices": ["x", "y"], "answer": true}`, nil, `boolanswer.jsonl:1: "answer" is a JSON boolean`},
		{"word.jsonl", `{"question": "q", "choices": ["x", "y"], "answer": "yes"}`, nil, `word.jsonl:1: answer "yes" is not a choice letter (A to B)`},
		{"badchoice.jsonl", `{"question": "q", "choices": ["x", {"y": 1}], "answer": 0}`, nil, `badchoice.jsonl:1: "choices"[1] is a JSON object, want a string`},
		{"choicesobj.jsonl", `{"question": "q", "choices": "x", "answer": 0}`, nil, `choicesobj.jsonl:1: "choices" is a JSON value, want an array`},
		{"syntax.jsonl", "{\"question\": \"q\", \"choices\": [\"x\", \"y\"], \"answer\": 0}\n{\"question\": \n", nil, "syntax.jsonl:2: invalid JSON"},
		{"notobject.jsonl", `["q", "x", "y"]`, nil, "notobject.jsonl:1: want a JSON object, got a JSON array"},
		{"two.jsonl", `{"question": "q", "choices": ["x", "y"], "answer": 0} {}`, nil, "two.jsonl:1: more than one JSON value"},
		{"syntax.json", "[\n  {\"question\": \"q\", \"choices\": [\"x\", \"y\"], \"answer\": 0},\n  {\"question\" \"r\"}\n]", nil, "syntax.json:3: element 1: invalid JSON"},
		{"unclosed.json", "[\n  {\"question\": \"q\", \"choices\": [\"x\", \"y\"], \"answer\": 0}\n", nil, "unclosed.json:"},
		{"short.csv", "q,a,A\n", nil, "short.csv:1: 3 columns; want question, at least two choices and the answer letter"},
		{"quote.csv", "q,a,b,A\n\"bad,x,y,A\n", nil, "quote.csv:2: invalid CSV"},
		{"badletter.csv", "q,a,b,E\n", nil, `badletter.csv:1: answer "E" but the question has 2 choices`},
		{"empty.jsonl", "\n\n", nil, "empty.jsonl: no questions"},
		{"data.txt", "q", nil, `data.txt: unsupported file type ".txt"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ReadQuestions(p, tc.name)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestPromptAndBatch(t *testing.T) {
	q := Question{Question: "Q?", Choices: []string{"one", "two", "three"}, Answer: 2}
	if got, want := q.Prompt(), "Q?\nA. one\nB. two\nC. three\nAnswer:"; got != want {
		t.Errorf("prompt %q, want %q", got, want)
	}
	turns := ChoiceTurns(q, []Question{{Question: "S?", Choices: []string{"x", "y"}, Answer: 1}})
	if len(turns) != 3 || turns[0].Content != "S?\nA. x\nB. y\nAnswer:" || turns[1].Content != "B" || turns[2].Content != q.Prompt() {
		t.Errorf("turns %+v", turns)
	}
	b := ChoiceBatch([]int32{5, 6, 7}, [][]int32{{10}, {11, 12}})
	wantTok := []int32{5, 6, 7, 10, 0, 5, 6, 7, 11, 12}
	wantTgt := []int32{-1, -1, 10, -1, -1, -1, -1, 11, 12, -1}
	if b.B != 2 || b.T != 5 || !reflect.DeepEqual(b.Tokens, wantTok) || !reflect.DeepEqual(b.Targets, wantTgt) {
		t.Errorf("batch %d×%d tokens %v targets %v", b.B, b.T, b.Tokens, b.Targets)
	}
}

type fakeKC struct{ base string }

func (k fakeKC) BaseDir() string { return k.base }
func (k fakeKC) HashPath(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b)), nil
}

func TestKeyLines(t *testing.T) {
	f := setup(t)
	dir := testdata(t)
	digest := func(name string) string {
		d, err := fakeKC{}.HashPath(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	args := decodeHCL(t, Kind().Schema, `
model = base
choices {
  path   = "mc.jsonl"
  dev    = "mc_dev.json"
  k_shot = 1
}
generate {
  path = "generate.json"
}
`, f.vars)
	lines, err := Kind().KeyLines(fakeKC{dir}, args)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range lines {
		got[l.Label] = l.Value
	}
	want := map[string]string{"env backend": "cpu", "env compute-type": "f32",
		"choices file": digest("mc.jsonl"), "choices dev file": digest("mc_dev.json"), "generate file": digest("generate.json")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("key lines %v, want %v", got, want)
	}
	args = decodeHCL(t, Kind().Schema, "model = base\nchoices {\n  path = \"missing.jsonl\"\n}\n", f.vars)
	if _, err := Kind().KeyLines(fakeKC{dir}, args); err == nil || !strings.Contains(err.Error(), "missing.jsonl") {
		t.Errorf("missing file: %v", err)
	}
}

// TestMetricsPNG checks the bar lengths: a bar's blue run is its value's
// share of the 0–100 axis.
func TestMetricsPNG(t *testing.T) {
	b, err := MetricsPNG(map[string]float64{MetricMCAccuracy: 0.5, MetricBLEU4: 25, MetricLoss: 2.5, MetricEvalTokens: 100})
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	blueRun := func(y int) int {
		n := 0
		for x := range img.Bounds().Dx() {
			r, g, bl, _ := img.At(x, y).RGBA()
			if r>>8 == 31 && g>>8 == 119 && bl>>8 == 180 {
				n++
			}
		}
		return n
	}
	// Rows: title at y=20, bars from y=40, rowH 26; the bar's middle is 13
	// below its row's top.
	mc, bleu := blueRun(40+13), blueRun(40+26+13)
	if mc != 180 || bleu != 90 {
		t.Errorf("bar lengths %d and %d px, want 180 (50%%) and 90 (25%%)", mc, bleu)
	}
	if h := img.Bounds().Dy(); h != 20+20+2*26+24+2*20+20 {
		t.Errorf("height %d", h)
	}
	again, _ := MetricsPNG(map[string]float64{MetricMCAccuracy: 0.5, MetricBLEU4: 25, MetricLoss: 2.5, MetricEvalTokens: 100})
	if !bytes.Equal(b, again) {
		t.Error("two renderings differ")
	}
}
