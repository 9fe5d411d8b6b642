package train

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sort"

	"github.com/lathe-ml/lathe/internal/data"
	"github.com/lathe-ml/lathe/internal/llama"
)

// Samples is what the loop trains or evaluates on: a fixed, indexed list
// of tokenized rows.
type Samples interface {
	Len() int
	Sample(i int) data.Sample
}

// SliceSamples adapts an in-memory slice.
type SliceSamples []data.Sample

// Len implements Samples.
func (s SliceSamples) Len() int { return len(s) }

// Sample implements Samples.
func (s SliceSamples) Sample(i int) data.Sample { return s[i] }

// Dataset is a built dataset directory (internal/data's manifest.json plus
// shards) opened for reading: the samples of every split it lists, splits
// in name order, shards in manifest order. Preference-pair shards are
// refused.
type Dataset struct {
	shards []*data.Shard
	starts []int // starts[i] = index of shard i's first sample
	n      int
}

// OpenDataset opens every shard the manifest in dir lists.
func OpenDataset(dir string) (*Dataset, error) { return openDataset(dir, false) }

// OpenPairs opens a preference dataset: every shard must hold pairs;
// samples 2k and 2k+1 are pair k's chosen and rejected sides.
func OpenPairs(dir string) (*Dataset, error) { return openDataset(dir, true) }

// OpenPrompts opens a dataset of either kind for the prompts it holds:
// with pairs, only the chosen sides (samples 2k) are returned, since both
// sides share the prompt.
func OpenPrompts(dir string) (Samples, func() error, error) {
	d, err := openDataset(dir, false)
	if err == nil {
		return d, d.Close, nil
	}
	p, perr := openDataset(dir, true)
	if perr != nil {
		return nil, nil, err
	}
	return everyOther{p}, p.Close, nil
}

type everyOther struct{ d *Dataset }

func (e everyOther) Len() int                 { return e.d.Len() / 2 }
func (e everyOther) Sample(i int) data.Sample { return e.d.Sample(2 * i) }

func openDataset(dir string, pairs bool) (*Dataset, error) {
	m, err := data.ReadManifest(dir)
	if err != nil {
		return nil, fmt.Errorf("train: dataset %s: %w", dir, err)
	}
	names := make([]string, 0, len(m.Splits))
	for n := range m.Splits {
		names = append(names, n)
	}
	sort.Strings(names)
	d := &Dataset{}
	for _, name := range names {
		for _, si := range m.Splits[name].Shards {
			sh, err := data.OpenShard(filepath.Join(dir, si.File))
			if err != nil {
				d.Close()
				return nil, fmt.Errorf("train: dataset %s: %w", dir, err)
			}
			if isPairs := sh.Flags()&data.FlagPairs != 0; isPairs != pairs {
				sh.Close()
				d.Close()
				if isPairs {
					return nil, fmt.Errorf("train: dataset %s: %s holds preference pairs; a causal LM trains on text or sft shards", dir, si.File)
				}
				return nil, fmt.Errorf("train: dataset %s: %s holds no preference pairs; tokenize a preference dataset (chosen/rejected) for this stage", dir, si.File)
			}
			d.shards = append(d.shards, sh)
			d.starts = append(d.starts, d.n)
			d.n += sh.NumSamples()
		}
	}
	return d, nil
}

// Len returns the number of samples.
func (d *Dataset) Len() int { return d.n }

// Sample returns sample i (0 <= i < Len).
func (d *Dataset) Sample(i int) data.Sample {
	k := sort.Search(len(d.starts), func(j int) bool { return d.starts[j] > i }) - 1
	return d.shards[k].Sample(i - d.starts[k])
}

// Close unmaps the shards.
func (d *Dataset) Close() error {
	var first error
	for _, s := range d.shards {
		if err := s.Close(); err != nil && first == nil {
			first = err
		}
	}
	d.shards = nil
	return first
}

// MakeBatch turns rows into one [B,T] batch: T is the longest row, capped
// at maxLen (longer rows are truncated; maxLen <= 0 means no cap). Targets
// are pre-shifted: targets[t] = tokens[t+1] where the mask trains token t+1
// and both tokens are in the same packed segment, else -1. Short rows are
// padded with token 0 and target -1. Positions restart at each packed
// segment; Segments are set when any row is packed (padding gets its own
// segment). It also returns the number of trained targets.
func MakeBatch(rows []data.Sample, maxLen int) (*llama.Batch, int) {
	T := 0
	packed := false
	for i := range rows {
		T = max(T, len(rows[i].Tokens))
		packed = packed || rows[i].SegmentIDs != nil
	}
	if maxLen > 0 {
		T = min(T, maxLen)
	}
	B := len(rows)
	b := &llama.Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Positions: make([]int32, B*T)}
	if packed {
		b.Segments = make([]int32, B*T)
	}
	count := 0
	for r := range rows {
		s := &rows[r]
		n := min(len(s.Tokens), T)
		pos := s.Positions()
		base := r * T
		for t := 0; t < T; t++ {
			i := base + t
			b.Targets[i] = -1
			if t >= n {
				b.Positions[i] = int32(t)
				if packed {
					seg := int32(0)
					if n > 0 {
						seg = b.Segments[base+n-1] + 1
					}
					b.Segments[i] = seg
				}
				continue
			}
			b.Tokens[i] = int32(s.Tokens[t])
			b.Positions[i] = int32(pos[t])
			if packed && s.SegmentIDs != nil {
				b.Segments[i] = int32(s.SegmentIDs[t])
			}
			if t+1 < n && s.Mask[t+1] && (s.SegmentIDs == nil || s.SegmentIDs[t+1] == s.SegmentIDs[t]) {
				b.Targets[i] = int32(s.Tokens[t+1])
				count++
			}
		}
	}
	return b, count
}

// rngStream is the PCG stream seeded shuffling draws from; one permutation
// per epoch.
const rngStream = 0x7472616e // "tran"

// cursor walks the samples epoch by epoch in a seeded random order. Its
// whole state is (epoch, pos) plus the PCG state at the start of the
// epoch, from which the epoch's permutation is redrawn.
type cursor struct {
	n, batch int
	epochs   int // 0: unbounded
	epoch    int
	pos      int
	rngAtEp  []byte // PCG state before drawing this epoch's permutation
	pcg      *rand.PCG
	perm     []int
}

func newCursor(n, batch, epochs int, seed uint64) *cursor {
	c := &cursor{n: n, batch: batch, epochs: epochs, pcg: rand.NewPCG(seed, rngStream)}
	c.startEpoch()
	return c
}

func (c *cursor) startEpoch() {
	st, err := c.pcg.MarshalBinary()
	if err != nil {
		panic(err) // PCG's MarshalBinary cannot fail
	}
	c.rngAtEp = st
	c.perm = rand.New(c.pcg).Perm(c.n)
	c.pos = 0
}

// restore rebuilds the cursor at a saved position.
func (c *cursor) restore(epoch, pos int, rngAtEpoch []byte) error {
	if err := c.pcg.UnmarshalBinary(rngAtEpoch); err != nil {
		return fmt.Errorf("rng state: %w", err)
	}
	c.epoch = epoch
	c.startEpoch()
	if pos < 0 || pos > c.n {
		return fmt.Errorf("data position %d outside [0,%d]", pos, c.n)
	}
	c.pos = pos
	return nil
}

// next returns the sample indices of the next micro-batch (the last one of
// an epoch may be shorter), or nil when the epochs are exhausted.
func (c *cursor) next() []int {
	if c.pos >= c.n {
		if c.epochs > 0 && c.epoch+1 >= c.epochs {
			return nil
		}
		c.epoch++
		c.startEpoch()
	}
	end := min(c.pos+c.batch, c.n)
	idx := c.perm[c.pos:end]
	c.pos = end
	return idx
}
