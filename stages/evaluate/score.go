package evaluate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/lora"
	"github.com/lathe-ml/lathe/internal/tensor"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/internal/trainstage"
)

// loadScorer loads the model on be with the adapter applied (unmerged) and
// every base weight frozen; valueHead adds the value head from
// value_head.safetensors in the adapter directory, else in the model's.
func loadScorer(be tensor.Backend, modelDir, adapterDir string, valueHead bool) (*llama.Model, error) {
	opts := llama.Options{Trainable: func(string) bool { return false }, ValueHead: valueHead}
	var lc lora.Config
	var tensors map[string]lora.Tensor
	if adapterDir != "" {
		var err error
		if lc, tensors, err = lora.Load(adapterDir); err != nil {
			return nil, err
		}
	}
	var headDir string
	if valueHead {
		for _, d := range []string{adapterDir, modelDir} {
			if d != "" && fileExists(filepath.Join(d, lora.ValueHeadFile)) {
				headDir = d
				break
			}
		}
		if headDir == "" {
			where := "the model does not hold"
			if adapterDir != "" {
				where = "neither the adapter nor the model holds"
			}
			return nil, fmt.Errorf("pairs: reward accuracy needs a reward model's value head: %s %s (the reward-model stage writes one)", where, lora.ValueHeadFile)
		}
	}
	var m *llama.Model
	var err error
	if tensors != nil {
		m, err = llama.LoadAdapted(modelDir, be, opts, lc, tensors)
	} else {
		m, err = llama.LoadWith(modelDir, be, opts)
	}
	if err != nil {
		return nil, err
	}
	if headDir != "" {
		if err := m.LoadValueHead(headDir); err != nil {
			m.Free()
			return nil, err
		}
	}
	return m, nil
}

// LossResult is the language-modelling loss over a dataset's trained
// tokens.
type LossResult struct {
	Loss, Perplexity float64
	Tokens           int64
}

// Loss returns the mean cross-entropy of m over every trained token of
// the tokenized dataset in dir (sums in float64, batches of batch rows in
// order, rows cut to the model's context) and its exponential.
func Loss(ctx context.Context, m *llama.Model, dir string, batch int, rep stage.Reporter) (LossResult, error) {
	ds, err := train.OpenDataset(dir)
	if err != nil {
		return LossResult{}, fmt.Errorf("data: %w", err)
	}
	defer ds.Close()
	if ds.Len() == 0 {
		return LossResult{}, errors.New("data: the dataset holds no samples (a validation split of a tokenize stage with val_size = 0?)")
	}
	if err := trainstage.CheckVocab(ds, m.Cfg.VocabSize); err != nil {
		return LossResult{}, fmt.Errorf("data: %w", err)
	}
	maxLen := m.Cfg.MaxPositions
	var sum float64
	var count int64
	cut := 0
	for i := 0; i < ds.Len(); i += batch {
		if err := ctx.Err(); err != nil {
			return LossResult{}, err
		}
		rows := make([]data.Sample, 0, batch)
		for j := i; j < min(i+batch, ds.Len()); j++ {
			s := ds.Sample(j)
			if maxLen > 0 && len(s.Tokens) > maxLen {
				cut++
			}
			rows = append(rows, s)
		}
		b, n := train.MakeBatch(rows, maxLen)
		rep.Progress(int64(min(i+batch, ds.Len())), int64(ds.Len()), "sample")
		if n == 0 {
			continue
		}
		losses, err := m.TokenLosses(b)
		if err != nil {
			return LossResult{}, fmt.Errorf("data: %w", err)
		}
		for k, t := range b.Targets {
			if t >= 0 {
				sum += float64(losses[k])
			}
		}
		count += int64(n)
	}
	if cut > 0 {
		rep.Logf("data: %d samples are longer than the model's context (%d tokens) and were cut to it", cut, maxLen)
	}
	if count == 0 {
		return LossResult{}, errors.New("data: no trained tokens (every target is masked)")
	}
	loss := sum / float64(count)
	return LossResult{Loss: loss, Perplexity: math.Exp(loss), Tokens: count}, nil
}

// RewardResult is a reward model's accuracy on preference pairs.
type RewardResult struct {
	// Accuracy is the fraction of pairs whose chosen side scores strictly
	// higher; Margin the mean of chosen − rejected.
	Accuracy, Margin float64
	Pairs            int
	// Chosen and Rejected are each pair's scores.
	Chosen, Rejected []float64
}

// RewardPairs scores both sides of every pair of the tokenized preference
// dataset in dir with m's value head at each side's last token, as the
// reward-model stage trains it, batch pairs at a time.
func RewardPairs(ctx context.Context, m *llama.Model, dir string, batch int, rep stage.Reporter) (RewardResult, error) {
	ds, err := train.OpenPairs(dir)
	if err != nil {
		return RewardResult{}, fmt.Errorf("pairs: %w", err)
	}
	defer ds.Close()
	n := ds.Len() / 2
	if n == 0 {
		return RewardResult{}, errors.New("pairs: the dataset holds no pairs (a validation split of a tokenize stage with val_size = 0?)")
	}
	if err := trainstage.CheckVocab(ds, m.Cfg.VocabSize); err != nil {
		return RewardResult{}, fmt.Errorf("pairs: %w", err)
	}
	maxLen := m.Cfg.MaxPositions
	r := RewardResult{Pairs: n, Chosen: make([]float64, n), Rejected: make([]float64, n)}
	for i := 0; i < n; i += batch {
		if err := ctx.Err(); err != nil {
			return RewardResult{}, err
		}
		var rows []data.Sample
		for k := i; k < min(i+batch, n); k++ {
			rows = append(rows, ds.Sample(2*k), ds.Sample(2*k+1))
		}
		b, _ := train.MakeBatch(rows, maxLen)
		vals, err := m.Values(b)
		if err != nil {
			return RewardResult{}, fmt.Errorf("pairs: %w", err)
		}
		for j := range rows {
			last := min(len(rows[j].Tokens), b.T) - 1
			if last < 0 {
				return RewardResult{}, fmt.Errorf("pairs: pair %d: an empty sequence", i+j/2)
			}
			v := float64(vals[j*b.T+last])
			if j%2 == 0 {
				r.Chosen[i+j/2] = v
			} else {
				r.Rejected[i+j/2] = v
			}
		}
		rep.Progress(int64(min(i+batch, n)), int64(n), "pair")
	}
	correct := 0
	var margin float64
	for k := range n {
		if r.Chosen[k] > r.Rejected[k] {
			correct++
		}
		margin += r.Chosen[k] - r.Rejected[k]
	}
	r.Accuracy = float64(correct) / float64(n)
	r.Margin = margin / float64(n)
	return r, nil
}
