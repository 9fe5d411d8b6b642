package chattemplate

import (
	"testing"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/tokenizer"
)

// BenchmarkRender renders a two-turn conversation with the real Qwen3 Jinja
// template (mask derivation included) and with the built-in qwen3 template;
// compare the two ns/op figures for the cost of template "auto".
func BenchmarkRender(b *testing.B) {
	conv := []data.Message{
		{Role: data.RoleUser, Content: "What is the capital of France?"},
		{Role: data.RoleAssistant, Content: "Paris."},
		{Role: data.RoleUser, Content: "And of Italy?"},
		{Role: data.RoleAssistant, Content: "<think>\nEasy.\n</think>\n\nRome."},
	}
	builtin, _ := data.LookupTemplate("qwen3")
	p := peersDir + "/tokenizer-qwen3/models/tokenizer_config.json"
	for _, bc := range []struct {
		name string
		tpl  func() *data.Template
	}{
		{"builtin", func() *data.Template { return builtin }},
		{"auto", func() *data.Template {
			cfg, err := tokenizer.LoadConfig(p)
			if err != nil {
				b.Skip(err)
			}
			tpl, err := FromConfig(p, cfg)
			if err != nil {
				b.Fatal(err)
			}
			return tpl.Data()
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tpl := bc.tpl()
			for b.Loop() {
				if _, err := tpl.Render("You are helpful.", conv, data.RenderOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
