package trainstage

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/safetensors"
	"github.com/lathe-ml/lathe/internal/tokenizer"
	"github.com/lathe-ml/lathe/internal/train"
)

// TokenizerFiles are the files a model directory carries for its
// tokenizer.
var TokenizerFiles = []string{
	"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
	"vocab.json", "merges.txt", "tokenizer.model", "chat_template.jinja", "chat_template.json",
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// CarryFiles copies the named regular files that exist in src into dst and
// reports which were copied.
func CarryFiles(src, dst string, names []string) (map[string]bool, error) {
	copied := map[string]bool{}
	if src == "" {
		return copied, nil
	}
	for _, name := range names {
		p := filepath.Join(src, name)
		if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
			continue
		}
		if err := copyFile(p, filepath.Join(dst, name)); err != nil {
			return nil, fmt.Errorf("carry %s: %w", name, err)
		}
		copied[name] = true
	}
	return copied, nil
}

// WriteModel saves m as a Hugging Face model directory (F32 weights,
// adapters merged when there are any), carries the tokenizer files from
// tokDir and writes generation_config.json (carried too when tokDir has
// one). tok and tcfg, when set, give the pad token. The tokenizer files
// carried include a SentencePiece tokenizer.model, so a model trained on
// one keeps it.
func WriteModel(dir string, m *llama.Model, tokDir string, tcfg *tokenizer.Config, tok tokenizer.Codec) error {
	save := m.Save
	if m.HasAdapters() {
		save = m.SaveMerged
	}
	if err := save(dir, safetensors.F32); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	copied, err := CarryFiles(tokDir, dir, append(TokenizerFiles, "generation_config.json"))
	if err != nil {
		return err
	}
	if copied["generation_config.json"] {
		return nil
	}
	g := map[string]any{"_from_model_config": true}
	if m.Cfg.BOSTokenID >= 0 {
		g["bos_token_id"] = m.Cfg.BOSTokenID
	}
	switch len(m.Cfg.EOSTokenIDs) {
	case 0:
	case 1:
		g["eos_token_id"] = m.Cfg.EOSTokenIDs[0]
	default:
		g["eos_token_id"] = m.Cfg.EOSTokenIDs
	}
	if tok != nil && tcfg != nil && tcfg.PadToken != nil {
		if id, ok := tok.TokenToID(*tcfg.PadToken); ok {
			g["pad_token_id"] = id
		}
	}
	return writeJSON(filepath.Join(dir, "generation_config.json"), g)
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// WriteAdapter saves the model's LoRA adapters in PEFT's layout (and its
// value head, if any, as value_head.safetensors), with the tokenizer files
// of tokDir carried along as PEFT's save_pretrained does for LLaMA
// Factory.
func WriteAdapter(dir string, m *llama.Model, c lora.Config, tokDir string) error {
	tensors, err := m.AdapterTensors()
	if err != nil {
		return err
	}
	if err := lora.Save(dir, c, tensors, safetensors.F32); err != nil {
		return err
	}
	if err := WriteValueHead(dir, m); err != nil {
		return err
	}
	_, err = CarryFiles(tokDir, dir, TokenizerFiles)
	return err
}

// WriteValueHead writes value_head.safetensors into dir when the model has
// a value head.
func WriteValueHead(dir string, m *llama.Model) error {
	if m.Param(llama.ValueHeadWeight) == nil {
		return nil
	}
	w, err := m.ParamValues(llama.ValueHeadWeight)
	if err != nil {
		return err
	}
	b, err := m.ParamValues(llama.ValueHeadBias)
	if err != nil {
		return err
	}
	return lora.SaveValueHead(dir, w, b[0])
}

// Report is report/metrics.json. It holds only deterministic values, so
// the report artifact is reproducible.
type Report struct {
	Steps         int                `json:"steps"`
	Tokens        int64              `json:"trained_tokens"`
	FirstLoss     float64            `json:"first_loss"`
	FinalLoss     float64            `json:"final_loss"`
	FinalEvalLoss *float64           `json:"final_eval_loss,omitempty"`
	Perplexity    *float64           `json:"eval_perplexity,omitempty"`
	FinalEval     map[string]float64 `json:"final_eval_metrics,omitempty"`
	Extra         map[string]any     `json:"extra,omitempty"`
	History       train.History      `json:"history"`
}

// WriteReport writes metrics.json and loss.png for a finished run;
// perplexity is reported for language-modelling losses only.
func WriteReport(dir string, res *train.Result, perplexity bool, extra map[string]any) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	h := res.History
	r := Report{Steps: res.Steps, Tokens: res.Tokens, History: h, Extra: extra}
	if len(h.Train) > 0 {
		r.FirstLoss, r.FinalLoss = h.Train[0].Loss, h.Train[len(h.Train)-1].Loss
	}
	if len(h.Eval) > 0 {
		last := h.Eval[len(h.Eval)-1]
		e := last.Loss
		r.FinalEvalLoss, r.FinalEval = &e, last.Metrics
		if perplexity {
			p := math.Exp(e)
			r.Perplexity = &p
		}
	}
	if err := writeJSON(filepath.Join(dir, "metrics.json"), &r); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	img, err := train.LossPNG(h)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "loss.png"), img, 0o644); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// CheckVocab refuses token ids the model cannot embed before any training.
func CheckVocab(s train.Samples, vocab int) error {
	if s == nil {
		return nil
	}
	for i := range s.Len() {
		for _, id := range s.Sample(i).Tokens {
			if int(id) >= vocab {
				return fmt.Errorf("sample %d holds token id %d, the model's vocab_size is %d (was the data tokenized with another tokenizer?)", i, id, vocab)
			}
		}
	}
	return nil
}
