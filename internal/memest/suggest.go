package memest

import (
	"fmt"
	"runtime"
	"strings"
)

// Option is a change to a training stage's settings and its estimate.
type Option struct {
	// Description names the change in pipeline terms, e.g.
	// `activation_recompute = true, batch_size = 2 with
	// gradient_accumulation = 4`.
	Description string
	Input       Input
	Total       int64
}

// The kinds of change Fitting combines, in the order it prefers them:
// the ones that change the run least first.
const (
	changeRecompute = 1 << iota // bit-identical results, about 1/3 more compute
	changeBatch                 // same effective batch, more micro-batches
	changeLoRA                  // adapters instead of the whole model
	changeQLoRA                 // adapters over an NF4 base
	changeSeq                   // truncates longer rows: the last resort
)

// changeSets lists the combinations Fitting tries, in order.
var changeSets = []int{
	changeRecompute,
	changeBatch,
	changeRecompute | changeBatch,
	changeLoRA,
	changeLoRA | changeRecompute,
	changeLoRA | changeRecompute | changeBatch,
	changeQLoRA,
	changeQLoRA | changeRecompute,
	changeQLoRA | changeRecompute | changeBatch,
	changeSeq,
	changeRecompute | changeSeq,
	changeRecompute | changeBatch | changeSeq,
	changeQLoRA | changeRecompute | changeBatch | changeSeq,
}

// defaultLoRARank and defaultLoRAModules are trainstage's lora defaults,
// used when Fitting proposes adapters for a stage that has none.
const defaultLoRARank = 8

var defaultLoRAModules = []string{"all"}

// resolve fixes the fields that default to the calling process's state,
// so that every estimate of a search agrees.
func resolve(in Input) Input {
	if in.Baseline == 0 {
		in.Baseline = ProcessRSS()
	}
	if in.Threads == 0 {
		in.Threads = runtime.GOMAXPROCS(0)
	}
	if in.GradAccum == 0 {
		in.GradAccum = 1
	}
	return in
}

// Fitting returns changes to in's settings under which the estimate fits
// within limit bytes, each computed by Training, the changes that alter
// the run least first: activation recomputation (bit-identical results),
// a smaller batch_size with gradient_accumulation keeping the effective
// batch, LoRA or QLoRA instead of full or freeze training (alone or with
// the former), and, as a last resort, a shorter max_seq_len. A
// combination is left out when a part of it already fits. It returns
// nothing when in already fits, when nothing does, or when in is invalid
// (see Training's error).
func Fitting(in Input, limit int64) []Option {
	in = resolve(in)
	if e, err := Training(in); err != nil || e.Total <= limit {
		return nil
	}
	var out []Option
	var fitted []int
	for _, set := range changeSets {
		if superset(set, fitted) {
			continue
		}
		o, ok := apply(in, set, limit)
		if !ok {
			continue
		}
		fitted = append(fitted, set)
		out = append(out, o)
	}
	return out
}

// superset reports whether set includes one of the sets that fitted.
func superset(set int, fitted []int) bool {
	for _, f := range fitted {
		if set&f == f {
			return true
		}
	}
	return false
}

// apply makes the changes of set to in, choosing the smallest change of
// the batch and sequence length that fits, and reports whether the result
// fits within limit. A set that changes nothing (recomputation already on,
// a method already in use) does not apply.
func apply(in Input, set int, limit int64) (Option, bool) {
	var desc []string
	if set&changeRecompute != 0 {
		if in.Recompute {
			return Option{}, false
		}
		in.Recompute = true
		desc = append(desc, "activation_recompute = true")
	}
	for _, m := range []struct {
		bit    int
		method Method
	}{{changeLoRA, LoRA}, {changeQLoRA, QLoRA}} {
		if set&m.bit == 0 {
			continue
		}
		if in.Method == m.method || (m.method == LoRA && in.Method == QLoRA) {
			return Option{}, false
		}
		if in.Method != LoRA {
			in.LoRARank, in.LoRAModules, in.LoRADropout = defaultLoRARank, defaultLoRAModules, false
		}
		in.Method = m.method
		desc = append(desc, fmt.Sprintf("method = %q", m.method))
	}
	fits := func(x Input) (int64, bool) {
		e, err := Training(x)
		return e.Total, err == nil && e.Total <= limit
	}
	if set&changeBatch != 0 {
		eff := in.BatchSize * in.GradAccum
		if set&changeSeq != 0 {
			// Before shortening rows, the smallest micro-batch.
			if in.BatchSize == 1 {
				return Option{}, false
			}
			in.BatchSize, in.GradAccum = 1, eff
		} else {
			// The largest batch dividing the effective batch that fits.
			found := false
			for b := in.BatchSize - 1; b >= 1 && !found; b-- {
				probe := in
				probe.BatchSize = b
				if eff%b != 0 {
					continue
				}
				if _, ok := fits(probe); ok {
					in.BatchSize, in.GradAccum, found = b, eff/b, true
				}
			}
			if !found {
				return Option{}, false
			}
		}
		desc = append(desc, fmt.Sprintf("batch_size = %d with gradient_accumulation = %d", in.BatchSize, in.GradAccum))
	}
	if set&changeSeq != 0 {
		// The longest sequence that fits, rounded down to a multiple of
		// 64 when that leaves one.
		lo, hi := 0, in.SeqLen-1
		for lo < hi {
			mid := (lo + hi + 1) / 2
			probe := in
			probe.SeqLen = mid
			if _, ok := fits(probe); ok {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		if lo == 0 {
			return Option{}, false
		}
		if lo >= 64 {
			lo -= lo % 64
		}
		in.SeqLen = lo
		desc = append(desc, fmt.Sprintf("max_seq_len = %d", lo))
	}
	total, ok := fits(in)
	if !ok {
		return Option{}, false
	}
	return Option{Description: strings.Join(desc, ", "), Input: in, Total: total}, true
}

// AutoBatch returns the largest batch size from 1 to maxBatch whose estimate
// fits within limit, and that estimate. When not even a batch of one
// fits, it returns an error and the estimate for one row.
func AutoBatch(in Input, limit int64, maxBatch int) (int, Estimate, error) {
	if maxBatch < 1 {
		return 0, Estimate{}, fmt.Errorf("memest: auto batch size: the largest batch %d: want >= 1", maxBatch)
	}
	in = resolve(in)
	at := func(b int) (Estimate, error) {
		x := in
		x.BatchSize = b
		return Training(x)
	}
	e, err := at(1)
	if err != nil {
		return 0, Estimate{}, err
	}
	if e.Total > limit {
		return 0, e, fmt.Errorf("memest: auto batch size: a batch of 1 needs %s, more than the %s available", FormatBytes(e.Total), FormatBytes(limit))
	}
	// The estimate grows with the batch: bisect for the last that fits.
	lo, hi := 1, maxBatch
	best := e
	for lo < hi {
		mid := lo + (hi-lo+1)/2
		m, err := at(mid)
		if err != nil {
			return 0, Estimate{}, err
		}
		if m.Total <= limit {
			lo, best = mid, m
		} else {
			hi = mid - 1
		}
	}
	return lo, best, nil
}
