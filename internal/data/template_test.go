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
		// LLaMA Factory's baichuan2, chatglm3, glm4, gemma and phi templates
		// (src/llamafactory/data/template.py), efficient_eos putting EOS after
		// the last answer only.
		{"baichuan2", convSys.sys, convSys.turns, RenderOptions{}, "You are helpful.<reserved_106>Hi<reserved_107>Hello!<reserved_106>How are you?<reserved_107>Fine.</s>"},
		{"baichuan2", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "<reserved_106>Hi<reserved_107>"},
		{"baichuan2", "", convPrompt, RenderOptions{}, "<reserved_106>Hi"},
		{"chatglm3", convSys.sys, convSys.turns, RenderOptions{}, "[gMASK]sop<|system|>\nYou are helpful.<|user|>\nHi<|assistant|>\nHello!<|user|>\nHow are you?<|assistant|>\nFine.</s>"},
		{"chatglm3", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "[gMASK]sop<|user|>\nHi<|assistant|>"},
		{"glm4", convSys.sys, convSys.turns, RenderOptions{}, "[gMASK]<sop><|system|>\nYou are helpful.<|user|>\nHi<|assistant|>\nHello!<|user|>\nHow are you?<|assistant|>\nFine.<|endoftext|>"},
		{"glm4", "", convOne, RenderOptions{EOS: "<eos>"}, "[gMASK]<sop><|user|>\nHi<|assistant|>\nHello!<eos>"},
		{"glm4", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "[gMASK]<sop><|user|>\nHi<|assistant|>"},
		{"gemma", convSys.sys, convSys.turns, RenderOptions{}, "<bos><start_of_turn>user\nYou are helpful.\n\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n<start_of_turn>user\nHow are you?<end_of_turn>\n<start_of_turn>model\nFine.<end_of_turn>\n"},
		{"gemma", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "<bos><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"},
		{"gemma", "", convOne, RenderOptions{BOS: "<s>"}, "<s><start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\nHello!<end_of_turn>\n"},
		{"phi3", convSys.sys, convSys.turns, RenderOptions{}, "<|system|>\nYou are helpful.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\nHello!<|end|>\n<|user|>\nHow are you?<|end|>\n<|assistant|>\nFine.<|end|>\n"},
		{"phi3", "", convPrompt, RenderOptions{AddGenerationPrompt: true}, "<|user|>\nHi<|end|>\n<|assistant|>\n"},
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
	if got := len(TemplateNames()); got != 14 {
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
		{"baichuan2", RenderOptions{}, "Hello!Fine.</s>"},
		{"baichuan2", RenderOptions{MaskHistory: true}, "Fine.</s>"},
		{"chatglm3", RenderOptions{}, "\nHello!\nFine.</s>"},
		{"glm4", RenderOptions{MaskHistory: true}, "\nFine.<|endoftext|>"},
		{"gemma", RenderOptions{}, "Hello!<end_of_turn>Fine.<end_of_turn>"},
		{"phi3", RenderOptions{}, "Hello!<|end|>Fine.<|end|>"},
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
	if _, err := LookupTemplate("nope"); err == nil || !strings.Contains(err.Error(), "built-in: alpaca, baichuan2, chatglm3, chatml, default") {
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

// TestTemplateSegments checks the segment boundaries the SentencePiece
// families depend on: every marker is a Special segment of its own (so that
// EncodeSegment can map it to its id) and ChatGLM3's "\n" is a segment of
// its own, as LLaMA Factory encodes its slots one by one.
func TestTemplateSegments(t *testing.T) {
	type seg struct {
		text             string
		special, trained bool
	}
	tests := []struct {
		tmpl string
		want []seg
	}{
		{"chatglm3", []seg{{"[gMASK]", true, false}, {"sop", true, false}, {"<|system|>", true, false}, {"\n", false, false}, {"S", false, false},
			{"<|user|>", true, false}, {"\n", false, false}, {"Hi", false, false}, {"<|assistant|>", true, false}, {"\n", false, true}, {"Hello!", false, true}, {"</s>", true, true}}},
		{"baichuan2", []seg{{"S", false, false}, {"<reserved_106>", true, false}, {"Hi", false, false}, {"<reserved_107>", true, false}, {"Hello!", false, true}, {"</s>", true, true}}},
		{"glm4", []seg{{"[gMASK]", true, false}, {"<sop>", true, false}, {"<|system|>", true, false}, {"\nS", false, false},
			{"<|user|>", true, false}, {"\nHi", false, false}, {"<|assistant|>", true, false}, {"\nHello!", false, true}, {"<|endoftext|>", true, true}}},
		{"gemma", []seg{{"<bos>", true, false}, {"<start_of_turn>user\nS\n\nHi<end_of_turn>\n", false, false}, {"<start_of_turn>model\n", false, false},
			{"Hello!", false, true}, {"<end_of_turn>", true, true}, {"\n", false, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			tm, _ := LookupTemplate(tc.tmpl)
			segs, err := tm.Render("S", convOne, RenderOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []seg
			for _, s := range segs {
				got = append(got, seg{s.Text, s.Special, s.Train})
			}
			if len(got) != len(tc.want) {
				t.Fatalf("segments\n got %+v\nwant %+v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("segment %d: got %+v, want %+v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

// fakeSpecialEncoder encodes text one id per byte and knows a few special
// tokens by text.
type fakeSpecialEncoder map[string]uint32

func (f fakeSpecialEncoder) Encode(text string, addSpecial bool) []uint32 {
	out := []uint32{}
	for i := 0; i < len(text); i++ {
		out = append(out, uint32(text[i]))
	}
	return out
}

func (f fakeSpecialEncoder) SpecialTokenID(text string) (uint32, bool) {
	id, ok := f[text]
	return id, ok
}

type plainEncoder struct{}

func (plainEncoder) Encode(text string, addSpecial bool) []uint32 { return []uint32{uint32(len(text))} }

func TestEncodeSegment(t *testing.T) {
	enc := fakeSpecialEncoder{"sop": 1003, "[gMASK]": 1001}
	for _, tc := range []struct {
		seg  Segment
		want []uint32
	}{
		{Segment{Text: "sop", Special: true}, []uint32{1003}},
		{Segment{Text: "sop"}, []uint32{'s', 'o', 'p'}},                // not special: text
		{Segment{Text: "<x>", Special: true}, []uint32{'<', 'x', '>'}}, // unknown special: text
		{Segment{Text: "[gMASK]", Special: true, Answer: true}, []uint32{1001}},
	} {
		if got := EncodeSegment(enc, tc.seg); !equalIDs(got, tc.want) {
			t.Errorf("EncodeSegment(%+v) = %v, want %v", tc.seg, got, tc.want)
		}
	}
	if got := EncodeSegment(plainEncoder{}, Segment{Text: "sop", Special: true}); !equalIDs(got, []uint32{3}) {
		t.Errorf("plain encoder: %v", got)
	}
}

func equalIDs(a, b []uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
