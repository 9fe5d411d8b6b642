// Package chattemplate renders a model's own Jinja chat template (the
// chat_template of its tokenizer_config.json) and derives from it which text
// is the assistant's, so that template "auto" trains on exactly the layout
// the model was tuned with.
//
// Rendering uses github.com/nikolalohinski/gonja/v2 with the settings
// transformers' apply_chat_template uses (trim_blocks, lstrip_blocks), the
// globals messages, add_generation_prompt, bos_token, eos_token,
// raise_exception and strftime_now (at a fixed date, 26 Jul 2024, so that
// renderings are reproducible), and enable_thinking=false when
// RenderOptions.DisableThinking is set.
//
// Masks are derived by rendering, not by reading the template: for each
// assistant message k of a conversation,
//
//   - the prompt ends where messages[:k] rendered with the generation prompt
//     ends (it must be a prefix of the full rendering);
//   - the answer's content ends where the full rendering stops depending on
//     message k's content (found by rendering it again with two different
//     sentinel contents and taking the common suffix); markup the template
//     writes before any content (such as Qwen3's empty think block) stays on
//     the prompt side, unless the real answer does not start with it;
//   - the end-of-turn marker is the text the template writes after the
//     content through its first special token (<|im_end|>, <|eot_id|>,
//     </s>): it is trained with the answer; text after it (a newline) is
//     prompt side.
//
// The segments always join to the full rendering byte for byte; a template
// whose earlier turns change when later ones are added (not prefix-stable)
// is refused with an error suggesting a built-in template. Template.Data
// wraps a template as an internal/data Template so that Build uses it like a
// built-in one.
//
// Not supported: tool calls and tool results (data's function/observation
// roles are refused with data.ErrToolRole, as by the built-ins), the
// tools/documents template variables, multimodal content, and templates
// gonja cannot parse (the error names the template).
package chattemplate

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// Options configure Parse.
type Options struct {
	// Name names the template in errors and in data.Template.Name
	// (default "auto").
	Name string
	// BOS and EOS are the bos_token / eos_token the template sees ("" when
	// the tokenizer has none).
	BOS, EOS string
	// Special are the special-token texts of the tokenizer. The end-of-turn
	// marker is found among them, and rendered prompt text is split at them
	// into segments flagged Special.
	Special []string
}

// Template is a parsed Jinja chat template.
type Template struct {
	tpl  *exec.Template
	env  *exec.Environment
	opt  Options
	stop []string
}

// fixedNow is the date strftime_now formats (Llama 3.1's default
// date_string), so that a rendering does not depend on the day it runs.
var fixedNow = time.Date(2024, time.July, 26, 0, 0, 0, 0, time.UTC)

// Parse parses a Jinja chat template.
func Parse(source string, opt Options) (*Template, error) {
	if opt.Name == "" {
		opt.Name = "auto"
	}
	cfg := config.New()
	cfg.TrimBlocks, cfg.LeftStripBlocks = true, true
	ctx := exec.EmptyContext().Update(builtins.GlobalFunctions).Update(builtins.GlobalVariables)
	ctx.Set("raise_exception", func(msg string) (string, error) {
		return "", fmt.Errorf("raise_exception: %s", msg)
	})
	ctx.Set("strftime_now", func(format string) string { return strftime(fixedNow, format) })
	env := &exec.Environment{
		Context:           ctx,
		Filters:           builtins.Filters,
		Tests:             builtins.Tests,
		ControlStructures: builtins.ControlStructures,
		Methods:           builtins.Methods,
	}
	loader, err := loaders.NewFileSystemLoader("")
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", opt.Name, err)
	}
	root := "chat_template"
	sl, err := loaders.NewShiftedLoader(root, strings.NewReader(source), loader)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: %w", opt.Name, err)
	}
	tpl, err := exec.NewTemplate(root, cfg, sl, env)
	if err != nil {
		return nil, fmt.Errorf("chat template %s: parse: %w", opt.Name, err)
	}
	t := &Template{tpl: tpl, env: env, opt: opt}
	if m, err := t.marker(); err == nil {
		if sp := t.splitSpecial(m); len(sp) > 0 && sp[len(sp)-1].Special {
			t.stop = []string{sp[len(sp)-1].Text}
		}
	}
	return t, nil
}

// FromConfig parses the default chat_template of a tokenizer_config.json
// (path names the file in errors), with its BOS/EOS and special tokens.
func FromConfig(path string, cfg *tokenizer.Config) (*Template, error) {
	if cfg == nil || cfg.ChatTemplate == "" {
		return nil, fmt.Errorf("template \"auto\": %s has no chat_template; name a built-in template: %s", path, strings.Join(data.TemplateNames(), ", "))
	}
	opt := Options{Name: "auto"}
	if cfg.BOSToken != nil {
		opt.BOS = *cfg.BOSToken
	}
	if cfg.EOSToken != nil {
		opt.EOS = *cfg.EOSToken
	}
	for _, a := range cfg.AddedTokensDecoder {
		if a.Special && a.Content != "" {
			opt.Special = append(opt.Special, a.Content)
		}
	}
	for _, s := range []string{opt.BOS, opt.EOS} {
		if s != "" && !contains(opt.Special, s) {
			opt.Special = append(opt.Special, s)
		}
	}
	t, err := Parse(cfg.ChatTemplate, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// Message is one message given to the template.
type Message struct {
	Role, Content string
}

// Apply renders messages as transformers' apply_chat_template(tokenize=False)
// does. vars are extra template variables (such as enable_thinking).
func (t *Template) Apply(msgs []Message, addGenerationPrompt bool, vars map[string]any) (string, error) {
	list := make([]any, len(msgs))
	for i, m := range msgs {
		list[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	ctx := map[string]any{
		"messages":              list,
		"add_generation_prompt": addGenerationPrompt,
		"bos_token":             t.opt.BOS,
		"eos_token":             t.opt.EOS,
	}
	for k, v := range vars {
		ctx[k] = v
	}
	out, err := t.tpl.ExecuteToString(exec.NewContext(ctx))
	if err != nil {
		return "", fmt.Errorf("chat template %s: %w", t.opt.Name, err)
	}
	return out, nil
}

// Data wraps t as an internal/data Template named by Options.Name.
func (t *Template) Data() *data.Template { return data.NewTemplate(t.opt.Name, t.stop, t.Render) }

// StopWords is the end-of-turn marker's special token, when found.
func (t *Template) StopWords() []string { return t.stop }

// ErrNotPrefixStable is wrapped by Render's error for a template whose
// rendering of a conversation's beginning changes when turns are added.
var ErrNotPrefixStable = errors.New("the chat template is not prefix-stable, so the assistant's tokens cannot be derived from it; use a built-in template instead")

// sentinels are two answer contents that differ in their first and last
// characters (private-use code points, never whitespace), so that the
// common suffix of renderings with each never reaches into real content.
var sentinels = [2]string{"\uE000lathe-sentinel-a\uE001", "\uE002lathe-sentinel-b\uE003"}

// Render renders a conversation into segments (data.RenderFunc): prompt
// text, assistant content and end-of-turn marker with Answer, Special and
// Turn set; data.Template.Render sets Train. turns alternate user and
// assistant starting with user (data.Template.Render checks).
func (t *Template) Render(system string, turns []data.Message, opt data.RenderOptions) ([]data.Segment, error) {
	var msgs []Message
	if system != "" {
		msgs = append(msgs, Message{Role: string(data.RoleSystem), Content: system})
	}
	off := len(msgs)
	for _, m := range turns {
		msgs = append(msgs, Message{Role: string(m.Role), Content: m.Content})
	}
	vars := map[string]any{}
	if opt.DisableThinking {
		vars["enable_thinking"] = false
	}
	tt := *t
	if opt.BOS != "" {
		tt.opt.BOS = opt.BOS
	}
	if opt.EOS != "" {
		tt.opt.EOS = opt.EOS
	}
	agp := opt.AddGenerationPrompt && len(turns)%2 == 1
	full, err := tt.Apply(msgs, agp, vars)
	if err != nil {
		return nil, err
	}
	var segs []data.Segment
	pos := 0
	emit := func(text string, answer bool, turn int) {
		if text == "" {
			return
		}
		if answer {
			segs = append(segs, data.Segment{Text: text, Answer: true, Turn: turn})
			return
		}
		for _, s := range tt.splitSpecial(text) {
			s.Turn = turn
			segs = append(segs, s)
		}
	}
	unstable := func(k int, what string) error {
		return fmt.Errorf("chat template %s: message %d: %s: %w", t.opt.Name, k, what, ErrNotPrefixStable)
	}
	for i := 1; i < len(turns); i += 2 {
		k, turn := off+i, i/2
		prompt, err := tt.Apply(msgs[:k], true, vars)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(full, prompt) || len(prompt) < pos {
			return nil, unstable(k, "the conversation up to it, with the generation prompt, is not a prefix of the whole rendering")
		}
		emit(full[pos:len(prompt)], false, turn)
		pos = len(prompt)

		// Where the content ends: the shortest common suffix with the
		// renderings that replace the content by each sentinel.
		cs := len(full)
		before := ""
		for j, s := range sentinels {
			alt := append([]Message(nil), msgs...)
			alt[k].Content = s
			r, err := tt.Apply(alt, agp, vars)
			if err != nil {
				return nil, err
			}
			cs = min(cs, commonSuffix(full, r))
			if j == 0 {
				if !strings.HasPrefix(r, prompt) {
					return nil, unstable(k, "its prompt renders differently when its answer changes")
				}
				at := strings.Index(r[len(prompt):], s)
				if at < 0 {
					return nil, fmt.Errorf("chat template %s: message %d: the template does not write the assistant's content", t.opt.Name, k)
				}
				before = r[len(prompt) : len(prompt)+at]
			}
		}
		end := len(full) - cs
		if end < pos {
			return nil, unstable(k, "its answer cannot be located")
		}
		region := full[pos:end]
		if before != "" && strings.HasPrefix(region, before) && len(region) > len(before) {
			emit(before, false, turn)
			region = region[len(before):]
		}
		emit(region, true, turn)
		pos = end

		// The end-of-turn marker: what the template writes after the
		// content of a final answer, through its first special token.
		tail, err := tt.tail(msgs[:k], vars)
		if err != nil {
			return nil, err
		}
		marker, rest := tt.cutMarker(tail)
		if !strings.HasPrefix(full[pos:], marker) {
			return nil, unstable(k, fmt.Sprintf("its end-of-turn text %q is not in the whole rendering", marker))
		}
		for _, s := range tt.splitSpecial(marker) {
			s.Answer, s.Turn = true, turn
			segs = append(segs, s)
		}
		pos += len(marker)
		if rest != "" && strings.HasPrefix(full[pos:], rest) && i+1 < len(turns) {
			emit(rest, false, turn)
			pos += len(rest)
		} else if i+1 == len(turns) {
			emit(full[pos:], false, turn)
			pos = len(full)
		}
	}
	if pos < len(full) {
		emit(full[pos:], false, (len(turns)-1)/2)
	}
	var sb strings.Builder
	for _, s := range segs {
		sb.WriteString(s.Text)
	}
	if sb.String() != full {
		return nil, fmt.Errorf("chat template %s: %w (segments do not join to the rendering)", t.opt.Name, ErrNotPrefixStable)
	}
	return segs, nil
}

// tail is what the template writes after the content of an assistant answer
// that ends the conversation msgs + [answer].
func (t *Template) tail(msgs []Message, vars map[string]any) (string, error) {
	s := sentinels[0]
	r, err := t.Apply(append(append([]Message(nil), msgs...), Message{Role: string(data.RoleAssistant), Content: s}), false, vars)
	if err != nil {
		return "", err
	}
	j := strings.LastIndex(r, s)
	if j < 0 {
		return "", fmt.Errorf("chat template %s: the template does not write the assistant's content", t.opt.Name)
	}
	return r[j+len(s):], nil
}

// marker is the end-of-turn marker after a one-turn conversation's answer.
func (t *Template) marker() (string, error) {
	tail, err := t.tail([]Message{{Role: string(data.RoleUser), Content: "hi"}}, nil)
	if err != nil {
		return "", err
	}
	m, _ := t.cutMarker(tail)
	return m, nil
}

// cutMarker splits tail after its first special token ("" and tail when it
// has none).
func (t *Template) cutMarker(tail string) (marker, rest string) {
	best, bestLen := -1, 0
	for _, sp := range t.opt.Special {
		if i := strings.Index(tail, sp); i >= 0 && (best < 0 || i < best || (i == best && len(sp) > bestLen)) {
			best, bestLen = i, len(sp)
		}
	}
	if best < 0 {
		return "", tail
	}
	return tail[:best+bestLen], tail[best+bestLen:]
}

// splitSpecial splits text at the special tokens (longest match first);
// each token becomes its own segment flagged Special.
func (t *Template) splitSpecial(text string) []data.Segment {
	var out []data.Segment
	plain := 0
	for i := 0; i < len(text); {
		n := 0
		for _, sp := range t.opt.Special {
			if len(sp) > n && strings.HasPrefix(text[i:], sp) {
				n = len(sp)
			}
		}
		if n == 0 {
			i++
			continue
		}
		if plain < i {
			out = append(out, data.Segment{Text: text[plain:i]})
		}
		out = append(out, data.Segment{Text: text[i : i+n], Special: true})
		i += n
		plain = i
	}
	if plain < len(text) {
		out = append(out, data.Segment{Text: text[plain:]})
	}
	return out
}

func commonSuffix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[len(a)-1-n] == b[len(b)-1-n] {
		n++
	}
	return n
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// strftime formats tm with the C directives chat templates use.
func strftime(tm time.Time, format string) string {
	var sb strings.Builder
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			sb.WriteByte(format[i])
			continue
		}
		i++
		switch format[i] {
		case 'd':
			fmt.Fprintf(&sb, "%02d", tm.Day())
		case 'm':
			fmt.Fprintf(&sb, "%02d", int(tm.Month()))
		case 'Y':
			fmt.Fprintf(&sb, "%d", tm.Year())
		case 'y':
			fmt.Fprintf(&sb, "%02d", tm.Year()%100)
		case 'b':
			sb.WriteString(tm.Month().String()[:3])
		case 'B':
			sb.WriteString(tm.Month().String())
		case 'a':
			sb.WriteString(tm.Weekday().String()[:3])
		case 'A':
			sb.WriteString(tm.Weekday().String())
		case 'H':
			fmt.Fprintf(&sb, "%02d", tm.Hour())
		case 'M':
			fmt.Fprintf(&sb, "%02d", tm.Minute())
		case 'S':
			fmt.Fprintf(&sb, "%02d", tm.Second())
		case '%':
			sb.WriteByte('%')
		default:
			sb.WriteByte('%')
			sb.WriteByte(format[i])
		}
	}
	return sb.String()
}
