package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
)

// Encoder turns text into token ids. Special-token text inside text (such
// as "<|im_end|>") must map to its single id; addSpecial asks for the
// tokenizer's own BOS/EOS decoration, which Build never requests (templates
// spell out their special tokens).
type Encoder interface {
	Encode(text string, addSpecial bool) []uint32
}

// ExampleSource yields Examples until io.EOF; *Reader is one. A source that
// also has a Stats() Stats method contributes its row and drop counts to the
// manifest.
type ExampleSource interface {
	Next() (Example, error)
}

// Concat reads several sources one after another (several dataset files
// feeding one build). Its Stats sums those of the sources that have them.
func Concat(sources ...ExampleSource) ExampleSource { return &concat{srcs: sources} }

type concat struct {
	srcs []ExampleSource
	i    int
}

func (c *concat) Next() (Example, error) {
	for c.i < len(c.srcs) {
		ex, err := c.srcs[c.i].Next()
		if err == io.EOF {
			c.i++
			continue
		}
		return ex, err
	}
	return Example{}, io.EOF
}

func (c *concat) Stats() Stats {
	var s Stats
	for _, src := range c.srcs {
		st, ok := src.(interface{ Stats() Stats })
		if !ok {
			continue
		}
		x := st.Stats()
		s.RowsRead += x.RowsRead
		s.Kept += x.Kept
		for k, v := range x.Dropped {
			if s.Dropped == nil {
				s.Dropped = map[string]int64{}
			}
			s.Dropped[k] += v
		}
		s.DropExamples = append(s.DropExamples, x.DropExamples...)
	}
	return s
}

// BuildOptions configure Build.
type BuildOptions struct {
	// Template renders conversations (required unless the data is plain
	// text).
	Template *Template
	Render   RenderOptions
	Encoder  Encoder
	// CutoffLen is the maximum tokens per sample (required).
	CutoffLen int
	// Packing packs several samples into rows of up to CutoffLen tokens with
	// per-token segment ids (supervised and pretraining data; preference
	// data is never packed).
	Packing bool
	// ValSize is the validation share: a fraction in (0, 1), or an absolute
	// count when >= 1; 0 means no validation split.
	ValSize float64
	// Seed drives the deterministic shuffle (PCG).
	Seed uint64
	// MaxSamples stops reading after this many usable examples (0 = all).
	MaxSamples int
	// ShardTokens is the target number of tokens per shard file (default
	// 16Mi tokens).
	ShardTokens int
	// TextEOS is appended to every pretraining text before tokenizing (for
	// example the tokenizer's EOS "</s>" or "<|endoftext|>").
	TextEOS string
}

// Kinds of dataset a Build produces.
const (
	KindSFT        = "sft"
	KindPreference = "preference"
	KindPretrain   = "pretrain"
)

// Drop reasons added by Build.
const (
	// DropNoTrainable counts samples with no trainable token left after
	// truncation.
	DropNoTrainable = "no trainable tokens after truncation"
	// DropToolRoles counts conversations with tool calls or results, which
	// the built-in templates cannot render.
	DropToolRoles = "tool roles not supported by the template"
)

// Split describes one split of a built dataset.
type Split struct {
	Samples         int64       `json:"samples"`
	Tokens          int64       `json:"tokens"`
	TrainableTokens int64       `json:"trainable_tokens"`
	Shards          []ShardInfo `json:"shards"`
}

// Manifest is manifest.json: what a Build read and wrote.
type Manifest struct {
	ShardVersion int    `json:"shard_version"`
	Kind         string `json:"kind"`
	Template     string `json:"template,omitempty"`
	CutoffLen    int    `json:"cutoff_len"`
	Packing      bool   `json:"packing"`
	Seed         uint64 `json:"seed"`
	RowsRead     int64  `json:"rows_read"`
	// Examples is the number of tokenized examples (a preference pair counts
	// once) before packing.
	Examples int64 `json:"examples"`
	// SamplesWritten is the number of rows in all shards (a preference pair
	// is two rows, a packed row holds several examples).
	SamplesWritten  int64             `json:"samples_written"`
	Tokens          int64             `json:"tokens"`
	TrainableTokens int64             `json:"trainable_tokens"`
	Truncated       int64             `json:"truncated"`
	Dropped         map[string]int64  `json:"dropped"`
	DropExamples    []DropExample     `json:"drop_examples,omitempty"`
	Splits          map[string]*Split `json:"splits"`
}

// ManifestName is the manifest's file name in a dataset directory.
const ManifestName = "manifest.json"

// inferSeqLen is LLaMA Factory's infer_seqlen: how many source (prompt) and
// target (answer) tokens to keep within cutoff.
func inferSeqLen(source, target, cutoff int) (int, int) {
	var maxTarget int
	switch {
	case target*2 < cutoff: // short answer: keep it, truncate the prompt
		maxTarget = cutoff
	case source*2 < cutoff: // short prompt: keep it, truncate the answer
		maxTarget = cutoff - source
	default: // both long: share the budget by their lengths
		maxTarget = int(float64(cutoff) * (float64(target) / float64(source+target)))
	}
	newTarget := min(maxTarget, target)
	newSource := min(max(cutoff-newTarget, 0), source)
	return newSource, newTarget
}

// piece is a run of tokens with their mask.
type piece struct {
	ids  []uint32
	mask []bool
}

func (p *piece) add(ids []uint32, train bool) {
	p.ids = append(p.ids, ids...)
	for range ids {
		p.mask = append(p.mask, train)
	}
}

func (p piece) cut(n int) piece { return piece{p.ids[:n], p.mask[:n]} }

// turnPieces tokenizes segments into (source, target) per turn: the source
// is the prompt side up to the first answer segment, the target the rest of
// the turn.
func turnPieces(enc Encoder, segs []Segment) (src, tgt []piece) {
	for _, s := range segs {
		for len(src) <= s.Turn {
			src = append(src, piece{})
			tgt = append(tgt, piece{})
		}
		ids := EncodeSegment(enc, s)
		if s.Answer || len(tgt[s.Turn].ids) > 0 {
			tgt[s.Turn].add(ids, s.Train)
		} else {
			src[s.Turn].add(ids, s.Train)
		}
	}
	return src, tgt
}

// truncateTurns applies LLaMA Factory's multi-turn rule: turns are taken in
// order (last first under mask_history), each gets infer_seqlen of the
// remaining budget; turns past the budget are dropped.
func truncateTurns(src, tgt []piece, cutoff int, lastFirst bool) (Sample, bool) {
	n := len(src)
	keepS, keepT := make([]int, n), make([]int, n)
	total, truncated := 0, false
	for k := range n {
		i := k
		if lastFirst {
			i = n - 1 - k
		}
		if total >= cutoff {
			truncated = true
			continue
		}
		s, t := inferSeqLen(len(src[i].ids), len(tgt[i].ids), cutoff-total)
		if s < len(src[i].ids) || t < len(tgt[i].ids) {
			truncated = true
		}
		keepS[i], keepT[i] = s, t
		total += s + t
	}
	var out piece
	for i := range n {
		a, b := src[i].cut(keepS[i]), tgt[i].cut(keepT[i])
		out.ids = append(append(out.ids, a.ids...), b.ids...)
		out.mask = append(append(out.mask, a.mask...), b.mask...)
	}
	return Sample{Tokens: nonNil(out.ids), Mask: nonNilB(out.mask)}, truncated
}

func nonNil(x []uint32) []uint32 {
	if x == nil {
		return []uint32{}
	}
	return x
}

func nonNilB(x []bool) []bool {
	if x == nil {
		return []bool{}
	}
	return x
}

// unit is one tokenized example: one sample, or two for a preference pair.
type unit []Sample

type sampleBuilder struct {
	opt       BuildOptions
	kind      string
	truncated int64
	dropped   map[string]int64
	dropEx    []DropExample
}

func (b *sampleBuilder) drop(ex *Example, reason, detail string) {
	b.dropped[reason]++
	if n := b.dropped[reason]; n <= 3 {
		b.dropEx = append(b.dropEx, DropExample{Source: ex.Source, Reason: reason, Detail: detail})
	}
}

func kindOf(ex *Example) string {
	switch {
	case ex.IsPreference():
		return KindPreference
	case ex.IsText():
		return KindPretrain
	}
	return KindSFT
}

// tokenize turns an Example into samples; nil means dropped.
func (b *sampleBuilder) tokenize(ex *Example) ([]unit, error) {
	o := b.opt
	switch b.kind {
	case KindPretrain:
		var p piece
		p.add(o.Encoder.Encode(ex.Text, false), true)
		if o.TextEOS != "" {
			p.add(o.Encoder.Encode(o.TextEOS, false), true)
		}
		var out []unit
		for start := 0; start < len(p.ids); start += o.CutoffLen {
			end := min(start+o.CutoffLen, len(p.ids))
			out = append(out, unit{{Tokens: p.ids[start:end], Mask: p.mask[start:end]}})
		}
		return out, nil
	case KindPreference:
		ropt := o.Render
		ropt.MaskHistory, ropt.TrainOnPrompt, ropt.AddGenerationPrompt = true, false, false
		var tg [2]piece
		var prompt piece
		for k, ans := range []*Message{ex.Chosen, ex.Rejected} {
			conv := append(append([]Message(nil), ex.Turns...), *ans)
			segs, err := o.Template.Render(ex.System, conv, ropt)
			if errors.Is(err, ErrToolRole) {
				b.drop(ex, DropToolRoles, err.Error())
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", ex.Source, err)
			}
			src, tgt := turnPieces(o.Encoder, segs)
			last := len(src) - 1
			if k == 0 {
				for i := 0; i < last; i++ {
					prompt.add(src[i].ids, false)
					prompt.add(tgt[i].ids, false)
				}
				prompt.add(src[last].ids, false)
			}
			tg[k] = tgt[last]
		}
		s, t := inferSeqLen(len(prompt.ids), max(len(tg[0].ids), len(tg[1].ids)), o.CutoffLen)
		if s < len(prompt.ids) || t < len(tg[0].ids) || t < len(tg[1].ids) {
			b.truncated++
		}
		p := prompt.cut(s)
		var u unit
		for k := range tg {
			a := tg[k].cut(min(t, len(tg[k].ids)))
			smp := Sample{
				Tokens: append(append([]uint32{}, p.ids...), a.ids...),
				Mask:   append(append([]bool{}, p.mask...), a.mask...),
			}
			if smp.Trainable() == 0 {
				b.drop(ex, DropNoTrainable, "")
				return nil, nil
			}
			u = append(u, smp)
		}
		return []unit{u}, nil
	default:
		segs, err := o.Template.Render(ex.System, ex.Turns, o.Render)
		if errors.Is(err, ErrToolRole) {
			b.drop(ex, DropToolRoles, err.Error())
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", ex.Source, err)
		}
		src, tgt := turnPieces(o.Encoder, segs)
		smp, tr := truncateTurns(src, tgt, o.CutoffLen, o.Render.MaskHistory)
		if tr {
			b.truncated++
		}
		if smp.Trainable() == 0 {
			b.drop(ex, DropNoTrainable, "")
			return nil, nil
		}
		return []unit{{smp}}, nil
	}
}

// Build reads every example from src, tokenizes, truncates, shuffles,
// splits, optionally packs, and writes shards plus manifest.json into
// outDir (created if needed). The manifest is written last.
//
// Memory: tokenized samples are held in memory for the shuffle and split
// (about 5 bytes per token); the input is streamed.
func Build(src ExampleSource, outDir string, opt BuildOptions) (*Manifest, error) {
	if opt.Encoder == nil {
		return nil, errors.New("build dataset: no encoder")
	}
	if opt.CutoffLen <= 0 {
		return nil, fmt.Errorf("build dataset: cutoff_len must be positive, got %d", opt.CutoffLen)
	}
	if opt.ValSize < 0 || math.IsNaN(opt.ValSize) || (opt.ValSize >= 1 && opt.ValSize != math.Trunc(opt.ValSize)) {
		return nil, fmt.Errorf("build dataset: val_size must be a fraction in [0, 1) or a whole count, got %v", opt.ValSize)
	}
	if opt.ShardTokens <= 0 {
		opt.ShardTokens = 16 << 20
	}
	b := &sampleBuilder{opt: opt, dropped: map[string]int64{}}
	var units []unit
	var examples int64
	for opt.MaxSamples <= 0 || examples < int64(opt.MaxSamples) {
		ex, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("build dataset: %w", err)
		}
		k := kindOf(&ex)
		if b.kind == "" {
			b.kind = k
			if k != KindPretrain && opt.Template == nil {
				return nil, errors.New("build dataset: conversations need a chat template")
			}
		} else if k != b.kind {
			return nil, fmt.Errorf("build dataset: %s: a %s example in a %s dataset", ex.Source, k, b.kind)
		}
		examples++
		us, err := b.tokenize(&ex)
		if err != nil {
			return nil, fmt.Errorf("build dataset: %w", err)
		}
		units = append(units, us...)
	}
	if len(units) == 0 {
		return nil, fmt.Errorf("build dataset: no samples left (dropped: %v)", b.dropped)
	}

	// Deterministic shuffle, then split.
	rng := rand.New(rand.NewPCG(opt.Seed, opt.Seed^0x9e3779b97f4a7c15))
	rng.Shuffle(len(units), func(i, j int) { units[i], units[j] = units[j], units[i] })
	nVal := 0
	switch {
	case opt.ValSize >= 1:
		nVal = int(opt.ValSize)
	case opt.ValSize > 0:
		nVal = int(math.Ceil(opt.ValSize * float64(len(units))))
	}
	if nVal >= len(units) {
		return nil, fmt.Errorf("build dataset: val_size %v leaves no training samples out of %d", opt.ValSize, len(units))
	}

	m := &Manifest{
		ShardVersion: ShardVersion, Kind: b.kind, CutoffLen: opt.CutoffLen, Seed: opt.Seed,
		Examples: int64(len(units)), Truncated: b.truncated, Dropped: b.dropped, Splits: map[string]*Split{},
		Packing: opt.Packing && b.kind != KindPreference,
	}
	if b.kind == KindPretrain {
		m.Examples = examples - b.dropped[DropNoTrainable]
	}
	if opt.Template != nil && b.kind != KindPretrain {
		m.Template = opt.Template.Name
	}
	if st, ok := src.(interface{ Stats() Stats }); ok {
		s := st.Stats()
		m.RowsRead = s.RowsRead
		for k, v := range s.Dropped {
			m.Dropped[k] += v
		}
		m.DropExamples = append(s.DropExamples, b.dropEx...)
	} else {
		m.RowsRead = examples
		m.DropExamples = b.dropEx
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("build dataset: %w", err)
	}
	// The manifest is the commit point: remove a stale one first.
	if err := os.Remove(filepath.Join(outDir, ManifestName)); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("build dataset: %w", err)
	}
	parts := []struct {
		name  string
		units []unit
	}{{"train", units[nVal:]}, {"validation", units[:nVal]}}
	for i, part := range parts {
		if len(part.units) == 0 {
			continue
		}
		rows := part.units
		flags := uint32(0)
		if b.kind == KindPreference {
			flags = FlagPairs
		} else if m.Packing {
			flags = FlagPacked
			rows = pack(part.units, opt.CutoffLen)
			prng := rand.New(rand.NewPCG(opt.Seed+uint64(i)+1, opt.Seed^0x632be59bd9b4e019))
			prng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
		}
		sp, err := writeSplit(outDir, part.name, flags, rows, opt.ShardTokens)
		if err != nil {
			return nil, fmt.Errorf("build dataset: %w", err)
		}
		m.Splits[part.name] = sp
		m.SamplesWritten += sp.Samples
		m.Tokens += sp.Tokens
		m.TrainableTokens += sp.TrainableTokens
	}
	if err := writeManifest(outDir, m); err != nil {
		return nil, fmt.Errorf("build dataset: %w", err)
	}
	return m, nil
}

func writeSplit(dir, name string, flags uint32, rows []unit, shardTokens int) (*Split, error) {
	sp := &Split{}
	var w *ShardWriter
	flush := func() error {
		if w == nil || w.Samples() == 0 {
			return nil
		}
		info, err := w.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%05d.shard", name, len(sp.Shards))))
		if err != nil {
			return err
		}
		sp.Shards = append(sp.Shards, info)
		sp.Samples += info.Samples
		sp.Tokens += info.Tokens
		sp.TrainableTokens += info.TrainableTokens
		w = nil
		return nil
	}
	for _, u := range rows {
		if w == nil {
			w = NewShardWriter(flags)
		}
		for _, s := range u {
			if err := w.Add(s); err != nil {
				return nil, err
			}
		}
		if w.Tokens() >= shardTokens {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return sp, nil
}

// pack places single-sample units into rows of at most cutoff tokens:
// LLaMA Factory's greedy knapsack (repeatedly take the longest remaining
// sample that still fits), ties broken by input order. Each row carries
// segment ids 0, 1, ... per packed sample.
func pack(units []unit, cutoff int) []unit {
	// buckets[l] holds the indices of samples of length l, in input order.
	buckets := make([][]int, cutoff+1)
	nonEmpty := make([]uint64, cutoff/64+1)
	left := 0
	for i, u := range units {
		l := len(u[0].Tokens)
		if len(buckets[l]) == 0 {
			nonEmpty[l/64] |= 1 << (l % 64)
		}
		buckets[l] = append(buckets[l], i)
		left++
	}
	// largest returns the longest available length <= x, or -1.
	largest := func(x int) int {
		w := x / 64
		word := nonEmpty[w] & (^uint64(0) >> (63 - x%64))
		for {
			if word != 0 {
				return w*64 + 63 - bits.LeadingZeros64(word)
			}
			w--
			if w < 0 {
				return -1
			}
			word = nonEmpty[w]
		}
	}
	take := func(l int) int {
		i := buckets[l][0]
		buckets[l] = buckets[l][1:]
		if len(buckets[l]) == 0 {
			nonEmpty[l/64] &^= 1 << (l % 64)
		}
		left--
		return i
	}
	var rows []unit
	for left > 0 {
		var row Sample
		row.Tokens, row.Mask, row.SegmentIDs = []uint32{}, []bool{}, []uint32{}
		room := cutoff
		var seg uint32
		for left > 0 {
			l := largest(room)
			if l < 0 {
				break
			}
			s := units[take(l)][0]
			row.Tokens = append(row.Tokens, s.Tokens...)
			row.Mask = append(row.Mask, s.Mask...)
			for range s.Tokens {
				row.SegmentIDs = append(row.SegmentIDs, seg)
			}
			seg++
			room -= l
		}
		rows = append(rows, unit{row})
	}
	return rows
}

func writeManifest(dir string, m *Manifest) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	f, err := os.CreateTemp(dir, "."+ManifestName+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestName)); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// ReadManifest reads dir/manifest.json.
func ReadManifest(dir string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", filepath.Join(dir, ManifestName), err)
	}
	if m.ShardVersion != ShardVersion {
		return nil, fmt.Errorf("read manifest %s: shard version %d, this build reads %d", filepath.Join(dir, ManifestName), m.ShardVersion, ShardVersion)
	}
	return &m, nil
}

// VerifyDir checks a built dataset directory: every shard the manifest
// lists exists, has the listed SHA-256, and validates, and the counts add up.
func VerifyDir(dir string) (*Manifest, error) {
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(m.Splits))
	for n := range m.Splits {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sp := m.Splits[n]
		var samples, tokens int64
		for _, si := range sp.Shards {
			p := filepath.Join(dir, si.File)
			d, err := hashFile(p)
			if err != nil {
				return nil, fmt.Errorf("verify %s: %w", dir, err)
			}
			if d != si.SHA256 {
				return nil, fmt.Errorf("verify %s: shard %s: %w: manifest says %s, file hashes to %s", dir, si.File, ErrShardChecksum, si.SHA256, d)
			}
			s, err := OpenShard(p)
			if err != nil {
				return nil, fmt.Errorf("verify %s: %w", dir, err)
			}
			samples += int64(s.NumSamples())
			tokens += s.NumTokens()
			s.Close()
		}
		if samples != sp.Samples || tokens != sp.Tokens {
			return nil, fmt.Errorf("verify %s: split %s: shards hold %d samples / %d tokens, manifest says %d / %d", dir, n, samples, tokens, sp.Samples, sp.Tokens)
		}
	}
	return m, nil
}
