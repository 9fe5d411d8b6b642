package data

import (
	"sort"
	"strings"
)

// Role is the speaker of a Message.
type Role string

// The roles a normalised conversation uses. Dataset role tags (sharegpt's
// human/gpt/observation/function_call, OpenAI's user/assistant/tool, or
// mapped custom tags) are translated to these.
const (
	RoleSystem      Role = "system"
	RoleUser        Role = "user"
	RoleAssistant   Role = "assistant"
	RoleObservation Role = "observation" // a tool result, on the prompt side
	RoleFunction    Role = "function"    // a tool call, on the answer side
)

// Message is one turn of a conversation.
type Message struct {
	Role    Role
	Content string
}

// Example is one dataset row in lathe's normalised form.
//
//   - Supervised (SFT): Turns alternate prompt-side (user/observation) and
//     answer-side (assistant/function) messages, start with a prompt-side one
//     and end with an answer-side one.
//   - Preference: Turns end with a prompt-side message; Chosen and Rejected are
//     the two candidate answers.
//   - Pretraining: only Text is set.
type Example struct {
	System   string
	Turns    []Message
	Chosen   *Message
	Rejected *Message
	Text     string
	// Source locates the row ("file:line") for reports.
	Source string
}

// IsPreference reports whether e is a preference pair.
func (e *Example) IsPreference() bool { return e.Chosen != nil && e.Rejected != nil }

// IsText reports whether e is a plain-text (pretraining) example.
func (e *Example) IsText() bool { return len(e.Turns) == 0 && e.Chosen == nil && e.Rejected == nil }

// newReplacer builds a deterministic replacer for the replace map: longer
// keys first, then lexical order, so overlapping placeholders resolve the
// same way on every run. It returns nil for an empty map.
func newReplacer(m map[string]string) *strings.Replacer {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if k != "" {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) > len(keys[j])
		}
		return keys[i] < keys[j]
	})
	args := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		args = append(args, k, m[k])
	}
	return strings.NewReplacer(args...)
}

// applyReplace rewrites every text field of e with r.
func (e *Example) applyReplace(r *strings.Replacer) {
	if r == nil {
		return
	}
	e.System = r.Replace(e.System)
	e.Text = r.Replace(e.Text)
	for i := range e.Turns {
		e.Turns[i].Content = r.Replace(e.Turns[i].Content)
	}
	if e.Chosen != nil {
		e.Chosen.Content = r.Replace(e.Chosen.Content)
	}
	if e.Rejected != nil {
		e.Rejected.Content = r.Replace(e.Rejected.Content)
	}
}
