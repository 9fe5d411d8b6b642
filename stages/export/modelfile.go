package export

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode"

	"github.com/lathe-ml/lathe/internal/chattemplate"
	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// Ollama's TEMPLATE is a Go text/template executed, for chat, with
// .System (the system messages joined, or the Modelfile's SYSTEM when the
// request has none), .Messages (every message, system ones included, each
// with .Role, .Content and .Thinking), .Think and .IsThinkSet. The
// templates below use that "messages" form: the range skips system
// messages, a user turn that ends the conversation is followed by the
// assistant header (the generation prompt), and an assistant message that
// ends it is left open so that Ollama continues it.

// Pieces shared by the templates.
const (
	rangeMessages = `{{ range $i, $_ := .Messages }}{{ $last := eq (len (slice $.Messages $i)) 1 }}`
	ifUser        = `{{ if eq .Role "user" }}`
	elseAssistant = `{{ else if eq .Role "assistant" }}`
	endRange      = `{{ end }}{{ end }}`
	chatMLSystem  = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
	llama3BOS     = "<|begin_of_text|>"
)

// tokens are the special-token texts a template renders and whether the
// leading BOS is written by the template (false when the tokenizer adds it
// to every prompt, as llama.cpp and Ollama do when the GGUF's
// tokenizer.ggml.add_bos_token is true).
type tokens struct {
	BOS, EOS string
	LeadBOS  bool
}

// leadingBOS is the BOS text built-in template name starts with, or "".
func leadingBOS(name string, tk tokens) string {
	switch name {
	case "llama3":
		return llama3BOS
	case "llama2", "mistral", "gemma":
		return tk.BOS
	}
	return ""
}

// ollamaTemplate returns the built-in chat template name in Ollama's
// TEMPLATE syntax: for a conversation that ends with a user message it
// renders what internal/data's template renders with the generation prompt
// (the leading BOS left out when !tk.LeadBOS). llama2 and llama3 trim the
// contents they render, which Go templates cannot: Ollama hands them over
// as given.
func ollamaTemplate(name string, tk tokens) (string, error) {
	for _, s := range []string{tk.BOS, tk.EOS} {
		if strings.Contains(s, "{{") || strings.Contains(s, "}}") {
			return "", fmt.Errorf("special token %q cannot be written into a Go template", s)
		}
	}
	lead := ""
	if tk.LeadBOS {
		lead = leadingBOS(name, tk)
	}
	bos, eos := tk.BOS, tk.EOS
	switch name {
	case "default":
		return "{{ if .System }}System: {{ .System }}" + eos + "\n{{ end }}" + rangeMessages +
			ifUser + "Human: {{ .Content }}" + eos + "\nAssistant:" +
			elseAssistant + "{{ .Content }}{{ if not $last }}" + eos + "\n{{ end }}" + endRange, nil
	case "alpaca":
		return "{{ .System }}" + rangeMessages +
			ifUser + "### Instruction:\n{{ .Content }}\n\n### Response:\n" +
			elseAssistant + "{{ .Content }}{{ if not $last }}" + eos + "\n\n{{ end }}" + endRange, nil
	case "vicuna":
		return "{{ if .System }}{{ .System }} {{ end }}" + rangeMessages +
			ifUser + "USER: {{ .Content }} ASSISTANT:" +
			elseAssistant + " {{ .Content }}{{ if not $last }}" + eos + "{{ end }}" + endRange, nil
	case "chatml", "qwen":
		return chatMLSystem + rangeMessages +
			ifUser + "<|im_start|>user\n{{ .Content }}<|im_end|>\n{{ if $last }}<|im_start|>assistant\n{{ end }}" +
			elseAssistant + "<|im_start|>assistant\n{{ .Content }}{{ if not $last }}<|im_end|>\n{{ end }}" + endRange, nil
	case "qwen3":
		const empty = "<think>\n\n</think>\n\n"
		return chatMLSystem + rangeMessages +
			ifUser + "<|im_start|>user\n{{ .Content }}<|im_end|>\n{{ if $last }}<|im_start|>assistant\n" +
			"{{ if and $.IsThinkSet (not $.Think) }}" + empty + "{{ end }}{{ end }}" +
			elseAssistant + "<|im_start|>assistant\n{{ if $last }}" +
			"{{ if .Thinking }}<think>\n{{ .Thinking }}\n</think>\n\n{{ else }}" + empty + "{{ end }}{{ .Content }}" +
			"{{ else }}{{ .Content }}<|im_end|>\n{{ end }}" + endRange, nil
	case "llama3":
		const header = "<|start_header_id|>%s<|end_header_id|>\n\n"
		return lead + "{{ if .System }}" + fmt.Sprintf(header, "system") + "{{ .System }}<|eot_id|>{{ end }}" + rangeMessages +
			ifUser + fmt.Sprintf(header, "user") + "{{ .Content }}<|eot_id|>{{ if $last }}" + fmt.Sprintf(header, "assistant") + "{{ end }}" +
			elseAssistant + fmt.Sprintf(header, "assistant") + "{{ .Content }}{{ if not $last }}<|eot_id|>{{ end }}" + endRange, nil
	case "llama2":
		turnBOS := bos
		if lead == "" {
			turnBOS = "{{ if not $first }}" + bos + "{{ end }}"
		}
		return "{{ $first := true }}" + rangeMessages +
			ifUser + turnBOS + "[INST] {{ if and $first $.System }}<<SYS>>\n{{ $.System }}\n<</SYS>>\n\n{{ end }}{{ .Content }} [/INST]{{ $first = false }}" +
			elseAssistant + " {{ .Content }} {{ if not $last }}" + eos + "{{ end }}" + endRange, nil
	case "mistral":
		return lead + "{{ $first := true }}" + rangeMessages +
			ifUser + "[INST] {{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }} [/INST]{{ $first = false }}" +
			elseAssistant + "{{ .Content }}{{ if not $last }}" + eos + "{{ end }}" + endRange, nil
	case "baichuan2":
		return "{{ .System }}" + rangeMessages +
			ifUser + "<reserved_106>{{ .Content }}{{ if $last }}<reserved_107>{{ end }}" +
			elseAssistant + "<reserved_107>{{ .Content }}" + endRange, nil
	case "chatglm3", "glm4":
		prefix := "[gMASK]sop"
		if name == "glm4" {
			prefix = "[gMASK]<sop>"
		}
		return prefix + "{{ if .System }}<|system|>\n{{ .System }}{{ end }}" + rangeMessages +
			ifUser + "<|user|>\n{{ .Content }}{{ if $last }}<|assistant|>{{ end }}" +
			elseAssistant + "<|assistant|>\n{{ .Content }}" + endRange, nil
	case "gemma":
		return lead + "{{ $first := true }}" + rangeMessages +
			ifUser + "<start_of_turn>user\n{{ if and $first $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }}<end_of_turn>\n{{ if $last }}<start_of_turn>model\n{{ end }}{{ $first = false }}" +
			elseAssistant + "<start_of_turn>model\n{{ .Content }}{{ if not $last }}<end_of_turn>\n{{ end }}" + endRange, nil
	case "phi3":
		return "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}" + rangeMessages +
			ifUser + "<|user|>\n{{ .Content }}<|end|>\n{{ if $last }}<|assistant|>\n{{ end }}" +
			elseAssistant + "<|assistant|>\n{{ .Content }}{{ if not $last }}<|end|>\n{{ end }}" + endRange, nil
	}
	return "", fmt.Errorf("no Ollama template for chat template %q (built-in: %s)", name, strings.Join(data.TemplateNames(), ", "))
}

// stopWords are the template's end-of-turn texts and the EOS text, in that
// order, without repeats.
func stopWords(t *data.Template, eos string) []string {
	var out []string
	for _, s := range append(slices.Clone(t.StopWords), eos) {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// quoteValue quotes a Modelfile argument the way Ollama's parser reads it
// back verbatim: "..." when that is unambiguous, """...""" otherwise.
func quoteValue(what, s string) (string, error) {
	for _, r := range s {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
			return "", fmt.Errorf("%s %q holds the control character %U, which Ollama's Modelfile parser drops", what, s, r)
		}
	}
	switch {
	case strings.Contains(s, `"""`) || strings.HasSuffix(s, `"`):
		return "", fmt.Errorf("%s %q cannot be quoted in a Modelfile (it holds \"\"\" or ends with a quote)", what, s)
	case s != "" && !strings.ContainsAny(s, "\"\n\t"):
		return `"` + s + `"`, nil
	}
	return `"""` + s + `"""`, nil
}

// ollamaModelfile renders the Modelfile for model.gguf with built-in
// template tplName.
func ollamaModelfile(name, tplName string, tk tokens) ([]byte, error) {
	t, err := data.LookupTemplate(tplName)
	if err != nil {
		return nil, err
	}
	tpl, err := ollamaTemplate(tplName, tk)
	if err != nil {
		return nil, err
	}
	return modelfile(name, tplName, tpl, t.DefaultSystem, stopWords(t, tk.EOS))
}

// modelfile renders Ollama's Modelfile for model.gguf.
func modelfile(name, tplName, tpl, system string, stops []string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Ollama Modelfile written by lathe: chat template %q.\n", tplName)
	fmt.Fprintf(&b, "# ollama create %s -f Modelfile\n", name)
	b.WriteString("FROM ./" + ggufFile + "\n\n")
	q, err := quoteValue("TEMPLATE", tpl)
	if err != nil {
		return nil, err
	}
	b.WriteString("TEMPLATE " + q + "\n")
	if system != "" {
		q, err := quoteValue("SYSTEM", system)
		if err != nil {
			return nil, err
		}
		b.WriteString("\nSYSTEM " + q + "\n")
	}
	if len(stops) > 0 {
		b.WriteString("\n")
	}
	for _, s := range stops {
		q, err := quoteValue("stop word", s)
		if err != nil {
			return nil, err
		}
		b.WriteString("PARAMETER stop " + q + "\n")
	}
	return b.Bytes(), nil
}

// renderTokens are the BOS and EOS texts the tokenize stage renders the
// built-in templates with for this tokenizer configuration (cfg may be
// nil): tokenizer_config.json's, else internal/data's "<s>" and "</s>".
func renderTokens(cfg *tokenizer.Config) (bos, eos string) {
	bos, eos = "<s>", "</s>"
	if cfg != nil && cfg.BOSToken != nil && *cfg.BOSToken != "" {
		bos = *cfg.BOSToken
	}
	if cfg != nil && cfg.EOSToken != nil && *cfg.EOSToken != "" {
		eos = *cfg.EOSToken
	}
	return bos, eos
}

// loadTokenizerConfig reads dir/tokenizer_config.json (nil when absent)
// with the chat template of dir/chat_template.jinja when the config has
// none, as transformers does.
func loadTokenizerConfig(dir string) (*tokenizer.Config, string, error) {
	p := filepath.Join(dir, "tokenizer_config.json")
	if _, err := os.Stat(p); err != nil {
		return nil, p, nil
	}
	cfg, err := tokenizer.LoadConfig(p)
	if err != nil {
		return nil, p, err
	}
	if cfg.ChatTemplate == "" {
		jp := filepath.Join(dir, "chat_template.jinja")
		if b, err := os.ReadFile(jp); err == nil && len(bytes.TrimSpace(b)) > 0 {
			cfg.ChatTemplate = string(b)
			p = jp
		}
	}
	return cfg, p, nil
}

// probe is a conversation the model's Jinja template and each built-in
// template render to see whether they agree.
type probe struct {
	system string
	turns  []data.Message
	gen    bool
	// prefix accepts a Jinja rendering that only starts with the built-in
	// one (templates that append the assistant header unconditionally).
	prefix bool
	// optional lets the Jinja template refuse the conversation (Mistral's
	// raises on a system message).
	optional bool
}

var probes = func() []probe {
	u := func(s string) data.Message { return data.Message{Role: data.RoleUser, Content: s} }
	a := func(s string) data.Message { return data.Message{Role: data.RoleAssistant, Content: s} }
	return []probe{
		{turns: []data.Message{u("Hello there."), a("Hi, how can I help?"), u("Name a colour.")}, gen: true},
		{system: "You answer briefly.", turns: []data.Message{u("Name a colour."), a("Blue."), u("Another one.")}, gen: true, optional: true},
		{turns: []data.Message{u("Name a colour."), a("Blue.")}, prefix: true},
	}
}()

// recognise returns the built-in template whose renderings equal those of
// the tokenizer configuration's Jinja chat template on a few probe
// conversations, or "" when none does (or there is no chat template).
func recognise(cfgPath string, cfg *tokenizer.Config) (string, error) {
	if cfg == nil || cfg.ChatTemplate == "" {
		return "", nil
	}
	jt, err := chattemplate.FromConfig(cfgPath, cfg)
	if err != nil {
		return "", err
	}
	bos, eos := renderTokens(cfg)
	jinja := make([]*string, len(probes))
	for i, p := range probes {
		var msgs []chattemplate.Message
		if p.system != "" {
			msgs = append(msgs, chattemplate.Message{Role: "system", Content: p.system})
		}
		for _, m := range p.turns {
			msgs = append(msgs, chattemplate.Message{Role: string(m.Role), Content: m.Content})
		}
		if out, err := jt.Apply(msgs, p.gen, nil); err == nil {
			jinja[i] = &out
		} else if !p.optional {
			return "", nil
		}
	}
	for _, name := range data.TemplateNames() {
		t, err := data.LookupTemplate(name)
		if err != nil {
			return "", err
		}
		ok := true
		for i, p := range probes {
			if jinja[i] == nil {
				continue
			}
			want, err := t.RenderText(p.system, p.turns, data.RenderOptions{AddGenerationPrompt: p.gen, BOS: bos, EOS: eos})
			if err != nil || !(*jinja[i] == want || (p.prefix && strings.HasPrefix(*jinja[i], want))) {
				ok = false
				break
			}
		}
		if ok {
			return name, nil
		}
	}
	return "", nil
}
