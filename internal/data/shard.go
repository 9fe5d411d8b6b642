package data

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"path/filepath"
)

// Shard file layout constants; FORMAT.md is the specification.
const (
	ShardMagic      = "LATHESHD"
	ShardVersion    = 1
	ShardHeaderSize = 64

	// FlagPacked: the shard stores per-token segment ids (packed rows).
	FlagPacked uint32 = 1 << 0
	// FlagPairs: samples 2k and 2k+1 are the chosen and rejected sides of
	// preference pair k.
	FlagPairs uint32 = 1 << 1

	knownFlags = FlagPacked | FlagPairs
)

// ErrShardChecksum is wrapped by the error for a shard whose payload does not
// match its SHA-256.
var ErrShardChecksum = errors.New("checksum mismatch")

// Sample is one tokenized training row.
type Sample struct {
	Tokens []uint32
	// Mask[i] reports whether the loss is computed on Tokens[i].
	Mask []bool
	// SegmentIDs is set for packed rows: the 0-based index of the original
	// sample each token came from; positions restart at every change.
	SegmentIDs []uint32
}

// Trainable counts the tokens with the mask set.
func (s *Sample) Trainable() int {
	n := 0
	for _, m := range s.Mask {
		if m {
			n++
		}
	}
	return n
}

// Positions returns the position ids of a row: 0,1,2,... restarting where
// the segment id changes.
func (s *Sample) Positions() []uint32 {
	pos := make([]uint32, len(s.Tokens))
	var p uint32
	for i := range pos {
		if i > 0 && s.SegmentIDs != nil && s.SegmentIDs[i] != s.SegmentIDs[i-1] {
			p = 0
		}
		pos[i] = p
		p++
	}
	return pos
}

// ShardInfo describes a written shard; it is listed in the manifest.
type ShardInfo struct {
	File string `json:"file"`
	// SHA256 is the digest of the whole file (hex).
	Samples         int64  `json:"samples"`
	Tokens          int64  `json:"tokens"`
	TrainableTokens int64  `json:"trainable_tokens"`
	Bytes           int64  `json:"bytes"`
	SHA256          string `json:"sha256"`
}

// ShardWriter collects samples in memory and writes one shard file.
type ShardWriter struct {
	flags   uint32
	offsets []uint64
	tokens  []uint32
	segs    []uint32
	mask    []bool
	samples int64
}

// NewShardWriter starts a shard; flags is a combination of FlagPacked and
// FlagPairs.
func NewShardWriter(flags uint32) *ShardWriter {
	return &ShardWriter{flags: flags, offsets: []uint64{0}}
}

// Tokens is the number of tokens added so far.
func (w *ShardWriter) Tokens() int { return len(w.tokens) }

// Samples is the number of samples added so far.
func (w *ShardWriter) Samples() int64 { return w.samples }

// Add appends a sample.
func (w *ShardWriter) Add(s Sample) error {
	if len(s.Mask) != len(s.Tokens) {
		return fmt.Errorf("shard: sample %d: %d mask entries for %d tokens", w.samples, len(s.Mask), len(s.Tokens))
	}
	packed := w.flags&FlagPacked != 0
	if packed != (s.SegmentIDs != nil) || (packed && len(s.SegmentIDs) != len(s.Tokens)) {
		return fmt.Errorf("shard: sample %d: segment ids must be given exactly for packed shards, one per token", w.samples)
	}
	w.tokens = append(w.tokens, s.Tokens...)
	w.mask = append(w.mask, s.Mask...)
	if packed {
		w.segs = append(w.segs, s.SegmentIDs...)
	}
	w.offsets = append(w.offsets, uint64(len(w.tokens)))
	w.samples++
	return nil
}

func (w *ShardWriter) header() []byte {
	h := make([]byte, ShardHeaderSize)
	copy(h, ShardMagic)
	binary.LittleEndian.PutUint32(h[8:], ShardVersion)
	binary.LittleEndian.PutUint32(h[12:], w.flags)
	binary.LittleEndian.PutUint64(h[16:], uint64(w.samples))
	binary.LittleEndian.PutUint64(h[24:], uint64(len(w.tokens)))
	return h
}

// WriteFile writes the shard to path atomically (a temporary file in the
// same directory, synced, then renamed) and returns its description with
// File set to the base name.
func (w *ShardWriter) WriteFile(path string) (ShardInfo, error) {
	if w.flags&FlagPairs != 0 && w.samples%2 != 0 {
		return ShardInfo{}, fmt.Errorf("shard %s: a pair shard needs an even sample count, have %d", path, w.samples)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	h := sha256.New()
	hdr := w.header()
	h.Write(hdr[:32])
	bw := bufio.NewWriterSize(f, 1<<20)
	if _, err := bw.Write(hdr); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	if err := w.writePayload(io.MultiWriter(bw, h)); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	sum := h.Sum(nil)
	if _, err := f.WriteAt(sum, 32); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	st, err := f.Stat()
	if err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	ok = true
	digest, err := hashFile(path)
	if err != nil {
		return ShardInfo{}, fmt.Errorf("shard %s: %w", path, err)
	}
	var trainable int64
	for _, m := range w.mask {
		if m {
			trainable++
		}
	}
	return ShardInfo{
		File: filepath.Base(path), Samples: w.samples, Tokens: int64(len(w.tokens)),
		TrainableTokens: trainable, Bytes: st.Size(), SHA256: digest,
	}, nil
}

func (w *ShardWriter) writePayload(out io.Writer) error {
	buf := make([]byte, 0, 64<<10)
	flush := func() error {
		_, err := out.Write(buf)
		buf = buf[:0]
		return err
	}
	for _, o := range w.offsets {
		buf = binary.LittleEndian.AppendUint64(buf, o)
		if len(buf) >= 60<<10 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	for _, arr := range [][]uint32{w.tokens, w.segs} {
		for _, v := range arr {
			buf = binary.LittleEndian.AppendUint32(buf, v)
			if len(buf) >= 60<<10 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	var b byte
	for i, m := range w.mask {
		if m {
			b |= 1 << (i % 8)
		}
		if i%8 == 7 {
			buf = append(buf, b)
			b = 0
			if len(buf) >= 60<<10 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if len(w.mask)%8 != 0 {
		buf = append(buf, b)
	}
	return flush()
}

// Shard is a validated, read-only shard.
type Shard struct {
	name    string
	flags   uint32
	n       uint64
	t       uint64
	offsets []byte
	tokens  []byte
	segs    []byte
	mask    []byte
	unmap   func() error
}

// shardSize returns the exact file size for a header, or false on overflow.
func shardSize(flags uint32, n, t uint64) (uint64, bool) {
	const lim = math.MaxInt64 / 16
	if n >= lim || t >= lim {
		return 0, false
	}
	size := uint64(ShardHeaderSize) + 8*(n+1) + 4*t + (t+7)/8
	if flags&FlagPacked != 0 {
		size += 4 * t
	}
	return size, true
}

// ParseShard validates a whole shard image held in b; name is used in
// errors. The returned Shard refers to b.
func ParseShard(name string, b []byte) (*Shard, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("shard %s: "+format, append([]any{name}, a...)...)
	}
	if len(b) < ShardHeaderSize {
		if len(b) >= 8 && string(b[:8]) != ShardMagic {
			return nil, fail("not a lathe shard (magic %q, want %q)", b[:8], ShardMagic)
		}
		return nil, fail("truncated: %d bytes, shorter than the %d-byte header", len(b), ShardHeaderSize)
	}
	if string(b[:8]) != ShardMagic {
		return nil, fail("not a lathe shard (magic %q, want %q)", b[:8], ShardMagic)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != ShardVersion {
		return nil, fail("unsupported version %d (this build reads version %d)", v, ShardVersion)
	}
	s := &Shard{name: name}
	s.flags = binary.LittleEndian.Uint32(b[12:])
	if s.flags&^knownFlags != 0 {
		return nil, fail("unknown flags %#x", s.flags&^knownFlags)
	}
	s.n = binary.LittleEndian.Uint64(b[16:])
	s.t = binary.LittleEndian.Uint64(b[24:])
	size, ok := shardSize(s.flags, s.n, s.t)
	if !ok {
		return nil, fail("header counts out of range (%d samples, %d tokens)", s.n, s.t)
	}
	if uint64(len(b)) < size {
		return nil, fail("truncated: header describes %d bytes, file has %d", size, len(b))
	}
	if uint64(len(b)) > size {
		return nil, fail("%d unexpected bytes after the payload (header describes %d bytes)", uint64(len(b))-size, size)
	}
	h := sha256.New()
	h.Write(b[:32])
	h.Write(b[ShardHeaderSize:])
	if sum := h.Sum(nil); !bytes.Equal(sum, b[32:64]) {
		return nil, fmt.Errorf("shard %s: %w: header says %x, content hashes to %x", name, ErrShardChecksum, b[32:64], sum)
	}
	p := b[ShardHeaderSize:]
	s.offsets, p = p[:8*(s.n+1)], p[8*(s.n+1):]
	s.tokens, p = p[:4*s.t], p[4*s.t:]
	if s.flags&FlagPacked != 0 {
		s.segs, p = p[:4*s.t], p[4*s.t:]
	}
	s.mask = p
	if err := s.validate(); err != nil {
		return nil, fail("%v", err)
	}
	return s, nil
}

func (s *Shard) off(i uint64) uint64 { return binary.LittleEndian.Uint64(s.offsets[8*i:]) }

func (s *Shard) validate() error {
	if s.flags&FlagPairs != 0 && s.n%2 != 0 {
		return fmt.Errorf("pair shard with an odd sample count %d", s.n)
	}
	if s.off(0) != 0 {
		return fmt.Errorf("offset 0 is %d, want 0", s.off(0))
	}
	for i := uint64(1); i <= s.n; i++ {
		if s.off(i) < s.off(i-1) {
			return fmt.Errorf("offset %d (%d) is less than offset %d (%d)", i, s.off(i), i-1, s.off(i-1))
		}
	}
	if s.off(s.n) != s.t {
		return fmt.Errorf("last offset %d does not match the token count %d", s.off(s.n), s.t)
	}
	if r := s.t % 8; r != 0 && s.mask[len(s.mask)-1]>>r != 0 {
		return fmt.Errorf("mask padding bits are not zero")
	}
	if s.segs != nil {
		for i := uint64(0); i < s.n; i++ {
			lo, hi := s.off(i), s.off(i+1)
			var prev uint32
			for j := lo; j < hi; j++ {
				v := binary.LittleEndian.Uint32(s.segs[4*j:])
				if (j == lo && v != 0) || (j > lo && v != prev && v != prev+1) {
					return fmt.Errorf("sample %d: segment id %d at token %d breaks the 0,0,..,1,1,.. order", i, v, j-lo)
				}
				prev = v
			}
		}
	}
	return nil
}

// Name is the file name the shard was opened with.
func (s *Shard) Name() string { return s.name }

// NumSamples is the number of samples (rows).
func (s *Shard) NumSamples() int { return int(s.n) }

// NumTokens is the total number of tokens.
func (s *Shard) NumTokens() int64 { return int64(s.t) }

// Flags returns the header flags.
func (s *Shard) Flags() uint32 { return s.flags }

// Sample decodes sample i (0 <= i < NumSamples).
func (s *Shard) Sample(i int) Sample {
	lo, hi := s.off(uint64(i)), s.off(uint64(i)+1)
	out := Sample{Tokens: make([]uint32, hi-lo), Mask: make([]bool, hi-lo)}
	for j := lo; j < hi; j++ {
		out.Tokens[j-lo] = binary.LittleEndian.Uint32(s.tokens[4*j:])
		out.Mask[j-lo] = s.mask[j/8]>>(j%8)&1 == 1
	}
	if s.segs != nil {
		out.SegmentIDs = make([]uint32, hi-lo)
		for j := lo; j < hi; j++ {
			out.SegmentIDs[j-lo] = binary.LittleEndian.Uint32(s.segs[4*j:])
		}
	}
	return out
}

// Close releases the mapping of a shard opened with OpenShard.
func (s *Shard) Close() error {
	if s.unmap != nil {
		u := s.unmap
		s.unmap = nil
		return u()
	}
	return nil
}

// OpenShard maps (or, where mapping is unavailable, reads) a shard file and
// validates all of it: header, sizes, checksum, offsets, mask and segment
// ids.
func OpenShard(path string) (*Shard, error) {
	b, unmap, err := mapFile(path)
	if err != nil {
		return nil, fmt.Errorf("shard %s: %w", path, err)
	}
	s, err := ParseShard(path, b)
	if err != nil {
		if unmap != nil {
			unmap()
		}
		return nil, err
	}
	s.unmap = unmap
	return s, nil
}

// hashFile returns the SHA-256 of a whole file (the digest the manifest
// lists).
func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var h hash.Hash = sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sha256Sum(parts ...[]byte) []byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}
