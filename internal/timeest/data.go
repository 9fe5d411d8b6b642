package timeest

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/lathe-ml/lathe/internal/data"
)

// Data is what the time model needs of a dataset: each row's length (in
// the order training reads them: splits by name, shards in manifest
// order) and how many of its tokens are trained targets.
type Data struct {
	// Lengths holds each row's token count; for preference pairs rows 2k
	// and 2k+1 are pair k's sides.
	Lengths []int
	// Pairs is set for a preference dataset: a training unit is a pair.
	Pairs bool
	// Trained is the share of tokens that are trained targets
	// (train.MakeBatch's count: masked-in tokens whose predecessor is in
	// the same segment); 1 when every token counts (reward models count
	// every token of both sides).
	Trained float64
	// Rows, when set, is the dataset's row count where Lengths holds only
	// the first rows of a very large dataset (a sample of it).
	Rows int
}

// Units returns the number of training units: rows, or pairs.
func (d *Data) Units() int {
	n := len(d.Lengths)
	if d.Rows > n {
		n = d.Rows
	}
	if d.Pairs {
		return n / 2
	}
	return n
}

// maxReadRows bounds the rows whose lengths ReadData reads (8 bytes
// each); a larger dataset is described by its first shards.
const maxReadRows = 1 << 22

// ReadData reads a built dataset directory's row lengths without reading
// its tokens: the manifest, then each shard's header and offset table
// (8 bytes a row; the format is internal/data's FORMAT.md), up to about
// four million rows (then Rows holds the whole count). The trained
// share is the manifest's: its trainable tokens, less one per segment when
// every token is trainable (plain text, whose first token has no
// predecessor).
func ReadData(dir string, pairs bool) (*Data, error) {
	m, err := data.ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m.Splits))
	for n := range m.Splits {
		names = append(names, n)
	}
	sort.Strings(names)
	d := &Data{Pairs: pairs}
	for _, name := range names {
		for _, si := range m.Splits[name].Shards {
			if len(d.Lengths) >= maxReadRows {
				d.Rows = int(m.SamplesWritten)
				break
			}
			ls, isPairs, err := shardLengths(filepath.Join(dir, si.File))
			if err != nil {
				return nil, err
			}
			if isPairs != pairs {
				return nil, fmt.Errorf("dataset %s: %s holds pairs: %v, want %v", dir, si.File, isPairs, pairs)
			}
			d.Lengths = append(d.Lengths, ls...)
		}
	}
	if pairs && len(d.Lengths)%2 != 0 && d.Rows == 0 {
		return nil, fmt.Errorf("dataset %s: %d rows, an odd count for preference pairs", dir, len(d.Lengths))
	}
	d.Trained = 1
	if m.Tokens > 0 {
		trained := m.TrainableTokens
		if trained >= m.Tokens {
			segments := m.Examples
			if pairs {
				segments *= 2
			}
			if !m.Packing || segments <= 0 {
				segments = m.SamplesWritten
			}
			trained = m.Tokens - segments
		}
		d.Trained = max(0, float64(trained)/float64(m.Tokens))
	}
	return d, nil
}

// LongestPrompt returns the longest prompt among a dataset's samples, as
// stages/ppo takes them: a sample's tokens before its first trained
// token, for samples that have both (of a preference dataset, the chosen
// sides), and how many samples have one. It reads the shards' offset
// tables and masks (a bit a token), not their tokens; of a dataset of
// more than about four million rows, only the first shards'.
func LongestPrompt(dir string) (longest, count int, err error) {
	m, err := data.ReadManifest(dir)
	if err != nil {
		return 0, 0, err
	}
	rows := 0
	for _, sp := range m.Splits {
		for _, si := range sp.Shards {
			if rows >= maxReadRows {
				break // a very large dataset: its first shards' prompts
			}
			path := filepath.Join(dir, si.File)
			ls, pairs, err := shardLengths(path)
			if err != nil {
				return 0, 0, err
			}
			rows += len(ls)
			mask, err := shardMask(path, len(ls))
			if err != nil {
				return 0, 0, err
			}
			off := 0
			for i, l := range ls {
				if pairs && i%2 == 1 {
					off += l
					continue
				}
				p := 0
				for p < l && mask[(off+p)/8]>>((off+p)%8)&1 == 0 {
					p++
				}
				if p > 0 && p < l {
					longest, count = max(longest, p), count+1
				}
				off += l
			}
		}
	}
	return longest, count, nil
}

// shardMask reads the mask bits of a shard of n samples.
func shardMask(path string, n int) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var h [data.ShardHeaderSize]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return nil, fmt.Errorf("shard %s: header: %w", path, err)
	}
	t := int64(binary.LittleEndian.Uint64(h[24:]))
	at := int64(data.ShardHeaderSize) + 8*int64(n+1) + 4*t
	if binary.LittleEndian.Uint32(h[12:])&data.FlagPacked != 0 {
		at += 4 * t
	}
	mask := make([]byte, (t+7)/8)
	if _, err := f.ReadAt(mask, at); err != nil {
		return nil, fmt.Errorf("shard %s: mask: %w", path, err)
	}
	return mask, nil
}

// shardLengths reads a shard's header and offset table.
func shardLengths(path string) ([]int, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	var h [data.ShardHeaderSize]byte
	if _, err := io.ReadFull(f, h[:]); err != nil {
		return nil, false, fmt.Errorf("shard %s: header: %w", path, err)
	}
	if string(h[:8]) != data.ShardMagic {
		return nil, false, fmt.Errorf("shard %s: not a lathe shard (magic %q)", path, h[:8])
	}
	if v := binary.LittleEndian.Uint32(h[8:]); v != data.ShardVersion {
		return nil, false, fmt.Errorf("shard %s: version %d, this build reads %d", path, v, data.ShardVersion)
	}
	flags := binary.LittleEndian.Uint32(h[12:])
	n := binary.LittleEndian.Uint64(h[16:])
	t := binary.LittleEndian.Uint64(h[24:])
	st, err := f.Stat()
	if err != nil {
		return nil, false, err
	}
	if n >= 1<<40 || int64(data.ShardHeaderSize)+8*int64(n+1) > st.Size() {
		return nil, false, fmt.Errorf("shard %s: %d samples do not fit in %d bytes", path, n, st.Size())
	}
	raw := make([]byte, 8*(n+1))
	if _, err := io.ReadFull(f, raw); err != nil {
		return nil, false, fmt.Errorf("shard %s: offsets: %w", path, err)
	}
	out := make([]int, n)
	prev := binary.LittleEndian.Uint64(raw)
	if prev != 0 {
		return nil, false, fmt.Errorf("shard %s: offset 0 is %d, want 0", path, prev)
	}
	for i := range out {
		next := binary.LittleEndian.Uint64(raw[8*(i+1):])
		if next < prev || next > t {
			return nil, false, fmt.Errorf("shard %s: offset %d (%d) out of order or past the %d tokens", path, i+1, next, t)
		}
		out[i] = int(next - prev)
		prev = next
	}
	if prev != t {
		return nil, false, fmt.Errorf("shard %s: last offset %d, want the token count %d", path, prev, t)
	}
	return out, flags&data.FlagPairs != 0, nil
}

// batchShape is what batches of a dataset look like on average: the
// expected padded length of a batch (the longest of its rows, capped),
// its square (attention's cost grows with it), and the tokens and
// trained tokens of a unit.
type batchShape struct {
	T, T2         float64 // E[T], E[T²] of a batch
	tokens        float64 // tokens a unit holds (both sides of a pair), capped
	trainedTokens float64
}

// shape returns the expected batch shape for micro-batches of b units
// drawn without replacement (the trainer shuffles each epoch), rows capped
// at maxLen. The expectation of the longest of b units is exact over the
// sorted unit lengths: P(max ≤ l₍ₖ₎) = C(k, b)/C(n, b).
func (d *Data) shape(b, maxLen int) batchShape {
	n := len(d.Lengths)
	if d.Pairs {
		n /= 2
	}
	if n == 0 {
		return batchShape{}
	}
	capped := func(l int) int {
		if maxLen > 0 {
			return min(l, maxLen)
		}
		return l
	}
	units := make([]int, n)
	var tokens float64
	for i := range units {
		if d.Pairs {
			a, c := capped(d.Lengths[2*i]), capped(d.Lengths[2*i+1])
			units[i] = max(a, c)
			tokens += float64(a + c)
		} else {
			units[i] = capped(d.Lengths[i])
			tokens += float64(units[i])
		}
	}
	slices.Sort(units)
	b = min(max(b, 1), n)
	// F(k) = C(k, b)/C(n, b) for k = n down to b; F(b−1) = 0.
	var s batchShape
	F := 1.0
	for k := n; k >= b; k-- {
		Fprev := 0.0
		if k > b {
			Fprev = F * float64(k-b) / float64(k)
		}
		p := F - Fprev
		l := float64(units[k-1])
		s.T += p * l
		s.T2 += p * l * l
		F = Fprev
	}
	s.tokens = tokens / float64(n)
	s.trainedTokens = s.tokens * d.Trained
	return s
}
