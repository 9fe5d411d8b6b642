package lora

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func FuzzParseAdapterConfig(f *testing.F) {
	for _, p := range []string{
		filepath.Join("testdata", "adapter_config.golden.json"),
		filepath.Join("testdata", "peft_bf16", ConfigFile),
	} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"peft_type":"LORA","r":8.5}`))
	f.Add([]byte(`{"peft_type":"LORA","target_modules":"all-linear","rank_pattern":{"a":1}}`))
	f.Add([]byte(`{"peft_type":"LORA","r":1e300,"lora_alpha":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		fc, err := parseAdapterConfig(data)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		if fc.cfg.Rank < 1 {
			t.Fatalf("accepted rank %d", fc.cfg.Rank)
		}
	})
}

func FuzzInModelName(f *testing.F) {
	for _, s := range []string{
		"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
		"base_model.model.model.layers.0.mlp.down_proj.lora_B.default.weight",
		"base_model.model..lora_A.weight",
		"base_model.model.lm_head.weight",
		"model.layers.0.self_attn.q_proj.lora_A.weight",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := inModelName(name)
		if err != nil {
			return
		}
		module, _, ok := splitInModel(got)
		if !ok || module == "" {
			t.Fatalf("inModelName(%q) = %q, which is not a LoRA name", name, got)
		}
		if !strings.HasPrefix(name, peftPrefix+module+".lora_") {
			t.Fatalf("inModelName(%q) = %q loses the module", name, got)
		}
		// The canonical file name maps to the same in-model name.
		if again, err := inModelName(peftPrefix + got); err != nil || again != got {
			t.Fatalf("inModelName(%q) = %q, %v; want %q", peftPrefix+got, again, err, got)
		}
	})
}
