package data

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

var (
	convSys = struct {
		sys   string
		turns []Message
	}{"You are helpful.", msgs("user", "Hi", "assistant", "Hello!", "user", "How are you?", "assistant", "Fine.")}
	convOne    = msgs("user", "Hi", "assistant", "Hello!")
	convPrompt = msgs("user", "Hi")
)

const qwenSys = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"

// The expected strings are derived by hand from the models' Jinja chat
// templates (tokenizer_config.json of Qwen2.5-*-Instruct, Qwen3-*,
// Meta-Llama-3-*-Instruct, Llama-2-*-chat, Mistral-7B-Instruct-v0.2) and
// from LLaMA Factory's default/alpaca and FastChat's vicuna_v1.1.
func TestTemplateGolden(t *testing.T) {
	tests := []struct {
		tmpl  string
		sys   string
		turns []Message
		opt   RenderOptions
		want  string
	}{
		{"qwen", "", convOne, RenderOptions{}, qwenSys + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"},
		{"qwen", convSys.sys, convSys.turns, RenderOptions{}, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>\n"},
		{"qwen", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, qwenSys + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen", "", convPrompt, RenderOptions{}, qwenSys + "<|im_start|>user\nHi<|im_end|>\n"},
		{"chatml", "", convOne, RenderOptions{}, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"},
		{"qwen3", "", convOne, RenderOptions{}, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHello!<|im_end|>\n"},
		{"qwen3", convSys.sys, convSys.turns, RenderOptions{}, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nFine.<|im_end|>\n"},
		{"qwen3", "", msgs("user", "Hi", "assistant", "<think>\nhmm\n</think>\n\nHello!", "user", "Q2", "assistant", "<think>plan</think>\nFine."), RenderOptions{},
			"<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\nplan\n</think>\n\nFine.<|im_end|>\n"},
		{"qwen3", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"},
		{"qwen3", "", convPrompt, RenderOptions{AddGenerationPrompt: true, DisableThinking: true}, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"},
		{"llama3", "", convOne, RenderOptions{}, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"},
		{"llama3", convSys.sys, convSys.turns, RenderOptions{}, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHow are you?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nFine.<|eot_id|>"},
		{"llama3", "", msgs("user", " Hi \n"), RenderOptions{AddGenerationPrompt: true}, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
		{"llama2", "", convOne, RenderOptions{}, "<s>[INST] Hi [/INST] Hello! </s>"},
		{"llama2", convSys.sys, convSys.turns, RenderOptions{}, "<s>[INST] <<SYS>>\nYou are helpful.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] How are you? [/INST] Fine. </s>"},
		{"llama2", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "<s>[INST] Hi [/INST]"},
		{"mistral", "", convOne, RenderOptions{}, "<s>[INST] Hi [/INST]Hello!</s>"},
		{"mistral", convSys.sys, convSys.turns, RenderOptions{}, "<s>[INST] You are helpful.\n\nHi [/INST]Hello!</s>[INST] How are you? [/INST]Fine.</s>"},
		{"default", convSys.sys, convSys.turns, RenderOptions{}, "System: You are helpful.</s>\nHuman: Hi</s>\nAssistant:Hello!</s>\nHuman: How are you?</s>\nAssistant:Fine.</s>\n"},
		{"default", "", convPrompt, RenderOptions{AddGenerationPrompt: true, EOS: "<|endoftext|>"}, "Human: Hi<|endoftext|>\nAssistant:"},
		{"default", "", convOne, RenderOptions{EOS: "<|endoftext|>"}, "Human: Hi<|endoftext|>\nAssistant:Hello!<|endoftext|>\n"},
		{"alpaca", "", convOne, RenderOptions{}, "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nHi\n\n### Response:\nHello!</s>\n\n"},
		{"vicuna", "", convOne, RenderOptions{}, "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions. USER: Hi ASSISTANT: Hello!</s>"},
		{"vicuna", "S", convSys.turns, RenderOptions{}, "S USER: Hi ASSISTANT: Hello!</s>USER: How are you? ASSISTANT: Fine.</s>"},
		{"vicuna", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, VicunaDefaultSystem + " USER: Hi ASSISTANT:"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			tm, err := LookupTemplate(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			got, err := tm.RenderText(tc.sys, tc.turns, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("rendered\n got %q\nwant %q", got, tc.want)
			}
		})
	}
	if got := len(TemplateNames()); got != 9 {
		t.Errorf("%d templates", got)
	}
}

func trainedText(segs []Segment) string {
	var b strings.Builder
	for _, s := range segs {
		if s.Train {
			b.WriteString(s.Text)
		}
	}
	return b.String()
}

func TestTemplateMasking(t *testing.T) {
	tests := []struct {
		tmpl string
		opt  RenderOptions
		want string
	}{
		{"qwen", RenderOptions{}, "Hello!<|im_end|>Fine.<|im_end|>"},
		{"qwen", RenderOptions{MaskHistory: true}, "Fine.<|im_end|>"},
		{"qwen", RenderOptions{TrainOnPrompt: true}, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>\n"},
		{"qwen", RenderOptions{TrainOnPrompt: true, MaskHistory: true}, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n\n<|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\nFine.<|im_end|>\n"},
		{"llama3", RenderOptions{}, "Hello!<|eot_id|>Fine.<|eot_id|>"},
		{"llama2", RenderOptions{}, "Hello! </s>Fine. </s>"},
		{"mistral", RenderOptions{MaskHistory: true}, "Fine.</s>"},
		{"qwen3", RenderOptions{}, "Hello!<|im_end|>Fine.<|im_end|>"},
		{"alpaca", RenderOptions{EOS: "<eos>"}, "Hello!<eos>Fine.<eos>"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			tm, _ := LookupTemplate(tc.tmpl)
			segs, err := tm.Render(convSys.sys, convSys.turns, tc.opt)
			if err != nil {
				t.Fatal(err)
			}
			if got := trainedText(segs); got != tc.want {
				t.Errorf("trained\n got %q\nwant %q", got, tc.want)
			}
			for _, s := range segs {
				if s.Special && s.Answer != s.Train && !tc.opt.MaskHistory {
					t.Errorf("special answer segment %q not trained", s.Text)
				}
			}
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	if _, err := LookupTemplate("nope"); err == nil || !strings.Contains(err.Error(), "built-in: alpaca, chatml, default") {
		t.Errorf("lookup error %v", err)
	}
	tm, _ := LookupTemplate("qwen")
	for _, turns := range [][]Message{
		msgs("assistant", "a"),
		msgs("user", "q", "user", "q"),
		msgs("user", "q", "function", "{}"),
	} {
		if _, err := tm.Render("", turns, RenderOptions{}); err == nil {
			t.Errorf("no error for %v", turns)
		}
	}
}

// TestTemplateJinjaGolden compares the built-ins with text rendered by the
// models' own Jinja chat templates (testdata/gen_jinja_golden.py, jinja2
// configured as transformers configures it).
func TestTemplateJinjaGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/jinja_golden.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Template            string `json:"template"`
		Case                string `json:"case"`
		System              string `json:"system"`
		Turns               []struct{ Role, Content string }
		AddGenerationPrompt bool   `json:"add_generation_prompt"`
		Want                string `json:"want"`
	}
	if err := json.Unmarshal(b, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 10 {
		t.Fatalf("only %d golden cases", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Template+"/"+c.Case, func(t *testing.T) {
			tm, err := LookupTemplate(c.Template)
			if err != nil {
				t.Fatal(err)
			}
			var turns []Message
			for _, m := range c.Turns {
				turns = append(turns, Message{Role(m.Role), m.Content})
			}
			got, err := tm.RenderText(c.System, turns, RenderOptions{AddGenerationPrompt: c.AddGenerationPrompt})
			if err != nil {
				t.Fatal(err)
			}
			if got != c.Want {
				t.Errorf("rendered\n got %q\nwant %q", got, c.Want)
			}
		})
	}
}
