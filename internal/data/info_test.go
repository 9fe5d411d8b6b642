package data

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseDatasetInfo(t *testing.T) {
	info := `{
  "identity": {"file_name": "identity.json"},
  "glaive": {"file_name": "glaive.json", "formatting": "sharegpt",
             "columns": {"messages": "conversations", "tools": "tools"}},
  "openai": {"file_name": "o.jsonl", "formatting": "sharegpt",
             "columns": {"messages": "messages"},
             "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant", "system_tag": "system"}},
  "dpo": {"file_name": "dpo.json", "ranking": true,
          "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"}},
  "wiki": {"file_name": "wiki.jsonl", "columns": {"prompt": "text"}}
}`
	got, err := ParseDatasetInfo([]byte(info), "data")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Spec{
		"identity": {Path: filepath.Join("data", "identity.json"), Format: FormatAlpaca},
		"glaive":   {Path: filepath.Join("data", "glaive.json"), Format: FormatShareGPT, Columns: Columns{Messages: "conversations"}},
		"openai": {Path: filepath.Join("data", "o.jsonl"), Format: FormatShareGPT, Columns: Columns{Messages: "messages"},
			Tags: Tags{RoleTag: "role", ContentTag: "content", UserTag: "user", AssistantTag: "assistant", SystemTag: "system"}},
		"dpo":  {Path: filepath.Join("data", "dpo.json"), Format: FormatAlpaca, Ranking: true, Columns: Columns{Prompt: "instruction", Query: "input", Chosen: "chosen", Rejected: "rejected"}},
		"wiki": {Path: filepath.Join("data", "wiki.jsonl"), Format: FormatAlpaca, Columns: Columns{Prompt: "text"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if txt := got["wiki"].AsText(); txt.Format != FormatText || txt.Columns.Text != "text" {
		t.Errorf("AsText %+v", txt)
	}
	for _, bad := range []struct{ body, want string }{
		{`{"x": {"hf_hub_url": "a/b"}}`, "x: hub and script datasets are not read here"},
		{`{"x": {"file_name": "a", "formatting": "parquet"}}`, `x: unknown formatting "parquet"`},
		{`{"x": {"file_name": "a", "columns": {"images": "images"}}}`, `x: column "images" is not supported`},
		{`{"x": {"file_name": "a", "tags": {"robot_tag": "r"}}}`, `x: unknown tag "robot_tag"`},
		{`[]`, "dataset_info.json: json: cannot unmarshal array"},
	} {
		_, err := ParseDatasetInfo([]byte(bad.body), "d")
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: error %v, want %q", bad.body, err, bad.want)
		}
	}
}
