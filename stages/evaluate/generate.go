package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/infer"
	"github.com/lathe-ml/lathe/internal/textmetrics"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// readPrompts reads the generate dataset: every usable row (the reader
// drops unusable ones, counted) that is a conversation ending with an
// assistant answer, the first limit of them when limit > 0. name is the
// file as messages should name it. The stats count the rows the reader
// dropped (no prompt, empty answer, ...).
func readPrompts(spec data.Spec, name string, limit int) ([]data.Example, data.Stats, error) {
	f, err := os.Open(spec.Path)
	if err != nil {
		return nil, data.Stats{}, fmt.Errorf("generate: %w", err)
	}
	defer f.Close()
	r, err := data.NewReader(spec, name, f)
	if err != nil {
		return nil, data.Stats{}, fmt.Errorf("generate: %w", err)
	}
	var rows []data.Example
	for limit <= 0 || len(rows) < limit {
		ex, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, data.Stats{}, fmt.Errorf("generate: %w", err)
		}
		n := len(ex.Turns)
		if ex.IsPreference() || n < 2 || ex.Turns[n-1].Role != data.RoleAssistant {
			return nil, data.Stats{}, fmt.Errorf("generate: %s: the row is not a conversation ending with an assistant answer (the reference); a preference or text dataset cannot be scored by generation", ex.Source)
		}
		rows = append(rows, ex)
	}
	return rows, r.Stats(), nil
}

// Prediction is one generated answer (a line of
// generated_predictions.jsonl, as LLaMA Factory writes it): the prompt as
// the model saw it (decoded, special tokens skipped), the prediction and
// the reference.
type Prediction struct {
	Prompt  string `json:"prompt"`
	Predict string `json:"predict"`
	Label   string `json:"label"`
}

// Predict generates greedily the answer to each row's prompt (its turns
// before the last, with its system prompt), batch rows at a time.
// Conversations with tool turns, which the templates do not render, are
// skipped and counted in the log.
func Predict(ctx context.Context, e *infer.Engine, rows []data.Example, maxNew, batch int, rep stage.Reporter) ([]Prediction, error) {
	type item struct {
		ids  []int32
		pred Prediction
	}
	var items []item
	skipped := 0
	maxPos := e.Model.Cfg.MaxPositions
	for _, ex := range rows {
		n := len(ex.Turns)
		ids, err := e.PromptIDs(ex.System, ex.Turns[:n-1])
		if errors.Is(err, data.ErrToolRole) {
			skipped++
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("generate: %s: %w", ex.Source, err)
		}
		if maxPos > 0 && len(ids) >= maxPos {
			return nil, fmt.Errorf("generate: %s: the prompt takes %d tokens, the model's context is %d: nothing left to generate", ex.Source, len(ids), maxPos)
		}
		plain := make([]int, len(ids))
		for i, id := range ids {
			plain[i] = int(id)
		}
		items = append(items, item{ids: ids, pred: Prediction{Prompt: e.Tok.Decode(plain, true), Label: ex.Turns[n-1].Content}})
	}
	if skipped > 0 {
		rep.Logf("generate: skipped %d rows with tool calls or results (the templates do not render them)", skipped)
	}
	if len(items) == 0 {
		return nil, errors.New("generate: no rows to generate for")
	}
	opts := infer.Options{MaxNewTokens: maxNew} // Temperature 0: greedy
	out := make([]Prediction, len(items))
	for i := 0; i < len(items); i += batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(i+batch, len(items))
		prompts := make([][]int32, 0, end-i)
		for _, it := range items[i:end] {
			prompts = append(prompts, it.ids)
		}
		res, err := e.GenerateBatch(ctx, prompts, opts, nil)
		if err != nil {
			return nil, fmt.Errorf("generate: %w", err)
		}
		for j, r := range res {
			p := items[i+j].pred
			p.Predict = r.Text
			out[i+j] = p
		}
		rep.Progress(int64(end), int64(len(items)), "sample")
	}
	return out, nil
}

// Scores are LLaMA Factory's predict scores of the predictions against
// their labels (internal/textmetrics.Corpus).
func Scores(preds []Prediction) (textmetrics.Scores, error) {
	p, l := make([]string, len(preds)), make([]string, len(preds))
	for i, x := range preds {
		p[i], l[i] = x.Predict, x.Label
	}
	s, err := textmetrics.Corpus(p, l)
	if err != nil {
		return s, fmt.Errorf("generate: %w", err)
	}
	return s, nil
}
