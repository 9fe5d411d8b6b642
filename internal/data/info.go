package data

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
)

// infoEntry is one entry of LLaMA Factory's dataset_info.json.
type infoEntry struct {
	FileName   string            `json:"file_name"`
	HFHubURL   string            `json:"hf_hub_url"`
	MSHubURL   string            `json:"ms_hub_url"`
	ScriptURL  string            `json:"script_url"`
	Formatting string            `json:"formatting"`
	Ranking    bool              `json:"ranking"`
	Columns    map[string]string `json:"columns"`
	Tags       map[string]string `json:"tags"`
}

// ParseDatasetInfo reads LLaMA Factory's dataset_info.json and returns a
// Spec per entry, with paths resolved against dir. Entries that point at a
// hub or a loading script, and columns lathe does not read (images, videos,
// audios, kto_tag), are errors; the "tools" column is accepted and ignored
// (conversations with tool roles are dropped when built). A pretraining
// entry ({"columns": {"prompt": "text"}} in LLaMA Factory) is returned as
// alpaca; use AsText to read it as plain text.
func ParseDatasetInfo(b []byte, dir string) (map[string]Spec, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("dataset_info.json: %w", err)
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make(map[string]Spec, len(raw))
	for _, name := range names {
		var e infoEntry
		if err := json.Unmarshal(raw[name], &e); err != nil {
			return nil, fmt.Errorf("dataset_info.json: %s: %w", name, err)
		}
		fail := func(format string, a ...any) error {
			return fmt.Errorf("dataset_info.json: %s: "+format, append([]any{name}, a...)...)
		}
		if e.FileName == "" {
			if e.HFHubURL != "" || e.MSHubURL != "" || e.ScriptURL != "" {
				return nil, fail("hub and script datasets are not read here; download the files and use file_name")
			}
			return nil, fail("no file_name")
		}
		s := Spec{Path: filepath.Join(dir, e.FileName), Ranking: e.Ranking}
		switch e.Formatting {
		case "", "alpaca":
			s.Format = FormatAlpaca
		case "sharegpt":
			s.Format = FormatShareGPT
		default:
			return nil, fail("unknown formatting %q (want alpaca or sharegpt)", e.Formatting)
		}
		for k, v := range e.Columns {
			switch k {
			case "prompt":
				s.Columns.Prompt = v
			case "query":
				s.Columns.Query = v
			case "response":
				s.Columns.Response = v
			case "history":
				s.Columns.History = v
			case "messages":
				s.Columns.Messages = v
			case "system":
				s.Columns.System = v
			case "chosen":
				s.Columns.Chosen = v
			case "rejected":
				s.Columns.Rejected = v
			case "tools":
			default:
				return nil, fail("column %q is not supported", k)
			}
		}
		for k, v := range e.Tags {
			switch k {
			case "role_tag":
				s.Tags.RoleTag = v
			case "content_tag":
				s.Tags.ContentTag = v
			case "user_tag":
				s.Tags.UserTag = v
			case "assistant_tag":
				s.Tags.AssistantTag = v
			case "observation_tag":
				s.Tags.ObservationTag = v
			case "function_tag":
				s.Tags.FunctionTag = v
			case "system_tag":
				s.Tags.SystemTag = v
			default:
				return nil, fail("unknown tag %q", k)
			}
		}
		out[name] = s
	}
	return out, nil
}

// AsText turns an alpaca Spec into a plain-text Spec reading its prompt
// column (LLaMA Factory's pretraining convention), "text" by default.
func (s Spec) AsText() Spec {
	s.Format = FormatText
	s.Columns = Columns{Text: or(strings.TrimSpace(s.Columns.Prompt), "text")}
	return s
}
