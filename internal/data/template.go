package data

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// ErrToolRole is wrapped by Render's error for a conversation with tool
// calls or tool results, which the built-in templates do not render.
var ErrToolRole = errors.New("tool roles are not supported by the built-in templates")

// Segment is a piece of rendered conversation text.
type Segment struct {
	Text string
	// Train marks text the loss is computed on (assistant answers and their
	// end-of-turn token, unless masked by the options).
	Train bool
	// Special marks a segment that is exactly one special token's text
	// (BOS, EOS, <|im_end|>, <|eot_id|>, ...).
	Special bool
	// Answer marks the assistant's side of a turn (whether trained or not);
	// the rest is prompt side. Truncation uses it.
	Answer bool
	// Turn is the 0-based index of the prompt/answer pair the segment belongs
	// to; the system prompt and a leading BOS belong to turn 0.
	Turn int
}

// RenderOptions tune Template.Render.
type RenderOptions struct {
	// TrainOnPrompt trains the prompt side too (LLaMA Factory's
	// train_on_prompt).
	TrainOnPrompt bool
	// MaskHistory trains only the last answer (mask_history).
	MaskHistory bool
	// AddGenerationPrompt appends the assistant header after a conversation
	// that ends with a prompt-side turn (for generation and for preference
	// prompts).
	AddGenerationPrompt bool
	// BOS and EOS override the template's default special-token text for the
	// templates that take them from the tokenizer (default, alpaca, vicuna,
	// llama2, mistral use "<s>"/"</s>" unless set).
	BOS, EOS string
	// DisableThinking (qwen3 only) appends the empty think block after the
	// generation prompt, as enable_thinking=false does.
	DisableThinking bool
}

// Template is a built-in chat template.
type Template struct {
	Name string
	// DefaultSystem is used when a conversation has no system prompt.
	DefaultSystem string
	// StopWords is the end-of-turn text generation stops at ("" = EOS).
	StopWords []string
	render    func(b *builder, system string, turns []Message)
	genPrompt func(b *builder)
	// external renders instead of render/genPrompt (NewTemplate).
	external RenderFunc
	// bos and eos replace "<s>" and "</s>" as the defaults of
	// RenderOptions.BOS and EOS for templates of models that spell them
	// otherwise.
	bos, eos string
}

// builder accumulates segments for one rendering.
type builder struct {
	segs     []Segment
	turn     int
	bos, eos string
	opt      RenderOptions
}

func (b *builder) prompt(text string) {
	if text == "" {
		return
	}
	b.segs = append(b.segs, Segment{Text: text, Turn: b.turn})
}

func (b *builder) special(text string) {
	b.segs = append(b.segs, Segment{Text: text, Special: true, Turn: b.turn})
}

func (b *builder) answer(text string, special bool) {
	if text == "" {
		return
	}
	b.segs = append(b.segs, Segment{Text: text, Answer: true, Special: special, Turn: b.turn})
}

var templates = map[string]*Template{}

func register(t *Template) { templates[t.Name] = t }

// TemplateNames lists the built-in templates, sorted.
func TemplateNames() []string {
	out := make([]string, 0, len(templates))
	for n := range templates {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// LookupTemplate returns a built-in template by name.
func LookupTemplate(name string) (*Template, error) {
	t, ok := templates[name]
	if !ok {
		return nil, fmt.Errorf("unknown chat template %q (built-in: %s)", name, strings.Join(TemplateNames(), ", "))
	}
	return t, nil
}

// Render renders a conversation. turns must alternate user and assistant
// messages starting with user; a conversation ending with a user turn is a
// prompt (its generation prompt is added when opt.AddGenerationPrompt is
// set). Tool-call roles (function, observation) are not supported by the
// built-in templates and give an error.
func (t *Template) Render(system string, turns []Message, opt RenderOptions) ([]Segment, error) {
	for i, m := range turns {
		want := RoleUser
		if i%2 == 1 {
			want = RoleAssistant
		}
		if m.Role != want {
			if m.Role == RoleFunction || m.Role == RoleObservation {
				return nil, fmt.Errorf("template %s: turn %d: %w (%s)", t.Name, i, ErrToolRole, m.Role)
			}
			return nil, fmt.Errorf("template %s: turn %d is %s, want %s", t.Name, i, m.Role, want)
		}
	}
	if system == "" {
		system = t.DefaultSystem
	}
	b := &builder{bos: or(opt.BOS, or(t.bos, "<s>")), eos: or(opt.EOS, or(t.eos, "</s>")), opt: opt}
	if t.external != nil {
		segs, err := t.external(system, turns, opt)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", t.Name, err)
		}
		b.segs = segs
	} else {
		t.render(b, system, turns)
		if opt.AddGenerationPrompt && len(turns)%2 == 1 && t.genPrompt != nil {
			t.genPrompt(b)
		}
	}
	lastTurn := (len(turns) - 1) / 2
	for i := range b.segs {
		s := &b.segs[i]
		if s.Answer {
			s.Train = !opt.MaskHistory || s.Turn == lastTurn
		} else {
			s.Train = opt.TrainOnPrompt
		}
	}
	return b.segs, nil
}

// RenderText is Render joined into one string.
func (t *Template) RenderText(system string, turns []Message, opt RenderOptions) (string, error) {
	segs, err := t.Render(system, turns, opt)
	if err != nil {
		return "", err
	}
	var sb strings.Builder
	for _, s := range segs {
		sb.WriteString(s.Text)
	}
	return sb.String(), nil
}

// forTurns walks user/assistant pairs, advancing b.turn.
func forTurns(b *builder, turns []Message, user func(i int, q string), assistant func(i int, a string)) {
	for i, m := range turns {
		b.turn = i / 2
		if m.Role == RoleUser {
			user(i, m.Content)
		} else {
			assistant(i, m.Content)
		}
	}
}

// ChatML family: Qwen2.5's template (and plain chatml without a default
// system prompt):
//
//	<|im_start|>system\n{system}<|im_end|>\n
//	<|im_start|>user\n{q}<|im_end|>\n
//	<|im_start|>assistant\n{a}<|im_end|>\n
//
// Trained: {a}<|im_end|>. The "\n" after <|im_end|> is prompt side.
func renderChatML(b *builder, system string, turns []Message) {
	if system != "" {
		b.prompt("<|im_start|>system\n" + system + "<|im_end|>\n")
	}
	forTurns(b, turns,
		func(_ int, q string) { b.prompt("<|im_start|>user\n" + q + "<|im_end|>\n") },
		func(_ int, a string) {
			b.prompt("<|im_start|>assistant\n")
			b.answer(a, false)
			b.answer("<|im_end|>", true)
			b.prompt("\n")
		})
}

func chatMLGen(b *builder) { b.prompt("<|im_start|>assistant\n") }

// splitThink separates "<think>r</think>c" the way Qwen3's template does.
func splitThink(content string) (reasoning, answer string, ok bool) {
	i := strings.Index(content, "</think>")
	if i < 0 {
		return "", content, false
	}
	last := strings.LastIndex(content, "</think>")
	answer = strings.TrimLeft(content[last+len("</think>"):], "\n")
	before := strings.TrimRight(content[:i], "\n")
	if j := strings.LastIndex(before, "<think>"); j >= 0 {
		before = before[j+len("<think>"):]
	}
	return strings.TrimLeft(before, "\n"), answer, true
}

// Qwen3: chatml without a default system prompt. An assistant message after
// the last user message gets "<think>\n{reasoning}\n</think>\n\n" before its
// content (an empty block when it has no reasoning); earlier assistant
// messages lose their reasoning. The empty block is prompt side; real
// reasoning is trained with the answer.
func renderQwen3(b *builder, system string, turns []Message) {
	if system != "" {
		b.prompt("<|im_start|>system\n" + system + "<|im_end|>\n")
	}
	lastQuery := -1
	for i, m := range turns {
		if m.Role == RoleUser {
			lastQuery = i
		}
	}
	forTurns(b, turns,
		func(_ int, q string) { b.prompt("<|im_start|>user\n" + q + "<|im_end|>\n") },
		func(i int, a string) {
			reasoning, content, _ := splitThink(a)
			b.prompt("<|im_start|>assistant\n")
			if i > lastQuery {
				if strings.Trim(reasoning, "\n") == "" {
					b.prompt("<think>\n\n</think>\n\n")
				} else {
					b.answer("<think>\n"+strings.Trim(reasoning, "\n")+"\n</think>\n\n", false)
				}
				content = strings.TrimLeft(content, "\n")
			}
			b.answer(content, false)
			b.answer("<|im_end|>", true)
			b.prompt("\n")
		})
}

func qwen3Gen(b *builder) {
	b.prompt("<|im_start|>assistant\n")
	if b.opt.DisableThinking {
		b.prompt("<think>\n\n</think>\n\n")
	}
}

// Llama 3 (Meta-Llama-3-*-Instruct):
//
//	<|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n{content|trim}<|eot_id|>...
//
// Trained: {a}<|eot_id|>.
func renderLlama3(b *builder, system string, turns []Message) {
	b.special("<|begin_of_text|>")
	if system != "" {
		b.prompt("<|start_header_id|>system<|end_header_id|>\n\n" + strings.TrimSpace(system) + "<|eot_id|>")
	}
	forTurns(b, turns,
		func(_ int, q string) {
			b.prompt("<|start_header_id|>user<|end_header_id|>\n\n" + strings.TrimSpace(q) + "<|eot_id|>")
		},
		func(_ int, a string) {
			b.prompt("<|start_header_id|>assistant<|end_header_id|>\n\n")
			b.answer(strings.TrimSpace(a), false)
			b.answer("<|eot_id|>", true)
		})
}

func llama3Gen(b *builder) { b.prompt("<|start_header_id|>assistant<|end_header_id|>\n\n") }

// Llama 2 chat: every user turn is "<s>[INST] {q} [/INST]", the first one
// carrying "<<SYS>>\n{system}\n<</SYS>>\n\n" before the question; answers are
// " {a} </s>". Trained: "{a} </s>".
func renderLlama2(b *builder, system string, turns []Message) {
	forTurns(b, turns,
		func(i int, q string) {
			if i == 0 && system != "" {
				q = "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + q
			}
			b.special(b.bos)
			b.prompt("[INST] " + strings.TrimSpace(q) + " [/INST]")
		},
		func(_ int, a string) {
			b.prompt(" ")
			b.answer(strings.TrimSpace(a)+" ", false)
			b.answer(b.eos, true)
		})
}

// Mistral instruct (the Mistral-7B-Instruct-v0.2 Jinja layout):
// "<s>[INST] {q} [/INST]{a}</s>[INST] ...".
// The system prompt, which Mistral's own template rejects, is put before the
// first question followed by "\n\n". Trained: "{a}</s>".
func renderMistral(b *builder, system string, turns []Message) {
	b.special(b.bos)
	forTurns(b, turns,
		func(i int, q string) {
			if i == 0 && system != "" {
				q = system + "\n\n" + q
			}
			b.prompt("[INST] " + q + " [/INST]")
		},
		func(_ int, a string) {
			b.answer(a, false)
			b.answer(b.eos, true)
		})
}

// LLaMA Factory's "default" (current template.py, EOS after every part):
// "System: {s}</s>\nHuman: {q}</s>\nAssistant:{a}</s>\n".
func renderDefault(b *builder, system string, turns []Message) {
	if system != "" {
		b.prompt("System: " + system)
		b.special(b.eos)
		b.prompt("\n")
	}
	forTurns(b, turns,
		func(_ int, q string) {
			b.prompt("Human: " + q)
			b.special(b.eos)
			b.prompt("\nAssistant:")
		},
		func(_ int, a string) {
			b.answer(a, false)
			b.answer(b.eos, true)
			b.prompt("\n")
		})
}

// Alpaca: "{system}### Instruction:\n{q}\n\n### Response:\n{a}</s>\n\n".
func renderAlpaca(b *builder, system string, turns []Message) {
	b.prompt(system)
	forTurns(b, turns,
		func(_ int, q string) { b.prompt("### Instruction:\n" + q + "\n\n### Response:\n") },
		func(_ int, a string) {
			b.answer(a, false)
			b.answer(b.eos, true)
			b.prompt("\n\n")
		})
}

// Vicuna v1.1 (FastChat): "{system} USER: {q} ASSISTANT: {a}</s>USER: ...".
func renderVicuna(b *builder, system string, turns []Message) {
	if system != "" {
		b.prompt(system + " ")
	}
	forTurns(b, turns,
		func(_ int, q string) { b.prompt("USER: " + q + " ASSISTANT:") },
		func(_ int, a string) {
			b.prompt(" ")
			b.answer(a, false)
			b.answer(b.eos, true)
		})
}

// endsWithAnswer reports whether the conversation's last message is the
// assistant's.
func endsWithAnswer(turns []Message) bool {
	return len(turns) > 0 && turns[len(turns)-1].Role == RoleAssistant
}

// Baichuan 2 chat (LLaMA Factory's baichuan2, Baichuan2-*-Chat's
// build_chat_input): "{system}<reserved_106>{q}<reserved_107>{a}...", the
// user and assistant markers being the model's reserved tokens 195 and 196
// (Special segments, which an encoder maps to their ids), and EOS once after
// the last answer (efficient_eos). Trained: each {a} and the final EOS.
func renderBaichuan2(b *builder, system string, turns []Message) {
	b.prompt(system)
	forTurns(b, turns,
		func(_ int, q string) {
			b.special("<reserved_106>")
			b.prompt(q)
		},
		func(_ int, a string) {
			b.special("<reserved_107>")
			b.answer(a, false)
		})
	if endsWithAnswer(turns) {
		b.answer(b.eos, true)
	}
}

func baichuan2Gen(b *builder) { b.special("<reserved_107>") }

// ChatGLM3 (LLaMA Factory's chatglm3, tokenization_chatglm.py's
// build_chat_input): "[gMASK]sop<|system|>\n{system}<|user|>\n{q}
// <|assistant|>\n{a}...", every marker a Special segment (ChatGLM's
// tokens after the SentencePiece vocabulary) and "\n" a segment of its
// own, as LLaMA Factory encodes its slots one by one; EOS once after the
// last answer (efficient_eos). Trained: "\n{a}" of each answer and the
// final EOS (the model writes the newline after <|assistant|>).
func renderChatGLM3(b *builder, system string, turns []Message) {
	b.special("[gMASK]")
	b.special("sop")
	if system != "" {
		b.special("<|system|>")
		b.prompt("\n")
		b.prompt(system)
	}
	forTurns(b, turns,
		func(_ int, q string) {
			b.special("<|user|>")
			b.prompt("\n")
			b.prompt(q)
		},
		func(_ int, a string) {
			b.special("<|assistant|>")
			b.answer("\n", false)
			b.answer(a, false)
		})
	if endsWithAnswer(turns) {
		b.answer(b.eos, true)
	}
}

func chatGLM3Gen(b *builder) { b.special("<|assistant|>") }

// GLM-4 (LLaMA Factory's glm4, glm-4-9b-chat): "[gMASK]<sop><|system|>\n
// {system}<|user|>\n{q}<|assistant|>\n{a}...", EOS (<|endoftext|>) once
// after the last answer. Trained: "\n{a}" and the final EOS.
func renderGLM4(b *builder, system string, turns []Message) {
	b.special("[gMASK]")
	b.special("<sop>")
	if system != "" {
		b.special("<|system|>")
		b.prompt("\n" + system)
	}
	forTurns(b, turns,
		func(_ int, q string) {
			b.special("<|user|>")
			b.prompt("\n" + q)
		},
		func(_ int, a string) {
			b.special("<|assistant|>")
			b.answer("\n"+a, false)
		})
	if endsWithAnswer(turns) {
		b.answer(b.eos, true)
	}
}

// Gemma (LLaMA Factory's gemma): "<bos><start_of_turn>user\n{system}\n\n{q}
// <end_of_turn>\n<start_of_turn>model\n{a}<end_of_turn>\n...", the system
// prompt put before the first question. Trained: {a}<end_of_turn>; the "\n"
// after it is prompt side.
func renderGemma(b *builder, system string, turns []Message) {
	b.special(b.bos)
	forTurns(b, turns,
		func(i int, q string) {
			if i == 0 && system != "" {
				q = system + "\n\n" + q
			}
			b.prompt("<start_of_turn>user\n" + q + "<end_of_turn>\n")
		},
		func(_ int, a string) {
			b.prompt("<start_of_turn>model\n")
			b.answer(a, false)
			b.answer("<end_of_turn>", true)
			b.prompt("\n")
		})
}

func gemmaGen(b *builder) { b.prompt("<start_of_turn>model\n") }

// Phi-3 (LLaMA Factory's phi, Phi-3-*-instruct):
// "<|system|>\n{system}<|end|>\n<|user|>\n{q}<|end|>\n<|assistant|>\n
// {a}<|end|>\n...", no BOS. Trained: {a}<|end|>; the "\n" after it is
// prompt side.
func renderPhi3(b *builder, system string, turns []Message) {
	if system != "" {
		b.prompt("<|system|>\n" + system + "<|end|>\n")
	}
	forTurns(b, turns,
		func(_ int, q string) { b.prompt("<|user|>\n" + q + "<|end|>\n") },
		func(_ int, a string) {
			b.prompt("<|assistant|>\n")
			b.answer(a, false)
			b.answer("<|end|>", true)
			b.prompt("\n")
		})
}

func phi3Gen(b *builder) { b.prompt("<|assistant|>\n") }

// SpecialTokenEncoder is an Encoder that can also map the text of one
// special token straight to its id, as LLaMA Factory's {"token": ...},
// {"bos_token"} and {"eos_token"} slots do. ok is false when text is not
// such a token.
type SpecialTokenEncoder interface {
	Encoder
	SpecialTokenID(text string) (uint32, bool)
}

// EncodeSegment encodes one rendered segment: a Special segment whose text
// the encoder knows as one special token becomes that id (ChatGLM's sop or
// Baichuan's <reserved_106> have no other way in), anything else is encoded
// as text without the tokenizer's own BOS/EOS.
func EncodeSegment(enc Encoder, s Segment) []uint32 {
	if s.Special {
		if se, ok := enc.(SpecialTokenEncoder); ok {
			if id, ok := se.SpecialTokenID(s.Text); ok {
				return []uint32{id}
			}
		}
	}
	return enc.Encode(s.Text, false)
}

// QwenDefaultSystem is Qwen2.5's default system prompt.
const QwenDefaultSystem = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

// AlpacaDefaultSystem is the alpaca template's default system prompt.
const AlpacaDefaultSystem = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"

// VicunaDefaultSystem is the vicuna template's default system prompt.
const VicunaDefaultSystem = "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the user's questions."

func init() {
	register(&Template{Name: "default", render: renderDefault})
	register(&Template{Name: "alpaca", DefaultSystem: AlpacaDefaultSystem, render: renderAlpaca})
	register(&Template{Name: "vicuna", DefaultSystem: VicunaDefaultSystem, render: renderVicuna})
	register(&Template{Name: "chatml", StopWords: []string{"<|im_end|>"}, render: renderChatML, genPrompt: chatMLGen})
	register(&Template{Name: "qwen", DefaultSystem: QwenDefaultSystem, StopWords: []string{"<|im_end|>"}, render: renderChatML, genPrompt: chatMLGen})
	register(&Template{Name: "qwen3", StopWords: []string{"<|im_end|>"}, render: renderQwen3, genPrompt: qwen3Gen})
	register(&Template{Name: "llama2", render: renderLlama2})
	register(&Template{Name: "llama3", StopWords: []string{"<|eot_id|>"}, render: renderLlama3, genPrompt: llama3Gen})
	register(&Template{Name: "mistral", render: renderMistral})
	register(&Template{Name: "baichuan2", render: renderBaichuan2, genPrompt: baichuan2Gen})
	register(&Template{Name: "chatglm3", StopWords: []string{"<|user|>", "<|observation|>"}, render: renderChatGLM3, genPrompt: chatGLM3Gen})
	register(&Template{Name: "glm4", StopWords: []string{"<|user|>", "<|observation|>"}, render: renderGLM4, genPrompt: chatGLM3Gen, eos: "<|endoftext|>"})
	register(&Template{Name: "gemma", StopWords: []string{"<end_of_turn>"}, render: renderGemma, genPrompt: gemmaGen, bos: "<bos>"})
	register(&Template{Name: "phi3", StopWords: []string{"<|end|>"}, render: renderPhi3, genPrompt: phi3Gen})
}
