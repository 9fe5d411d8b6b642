package data

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func testSamples() []Sample {
	return []Sample{
		{Tokens: []uint32{1, 2, 3}, Mask: []bool{false, true, true}},
		{Tokens: []uint32{}, Mask: []bool{}},
		{Tokens: []uint32{0xFFFFFFFF, 7, 8, 9, 10, 11, 12, 13, 14}, Mask: []bool{true, false, true, false, true, false, true, false, true}},
	}
}

func writeShard(t testing.TB, flags uint32, samples []Sample) (string, ShardInfo) {
	t.Helper()
	w := NewShardWriter(flags)
	for _, s := range samples {
		if err := w.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(t.TempDir(), "train-00000.shard")
	info, err := w.WriteFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return p, info
}

func TestShardRoundTrip(t *testing.T) {
	packed := []Sample{
		{Tokens: []uint32{5, 6, 7, 8}, Mask: []bool{false, true, false, true}, SegmentIDs: []uint32{0, 0, 1, 1}},
		{Tokens: []uint32{9}, Mask: []bool{true}, SegmentIDs: []uint32{0}},
	}
	for _, tc := range []struct {
		name    string
		flags   uint32
		samples []Sample
	}{
		{"plain", 0, testSamples()},
		{"packed", FlagPacked, packed},
		{"pairs", FlagPairs, testSamples()[:2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, info := writeShard(t, tc.flags, tc.samples)
			s, err := OpenShard(p)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if s.NumSamples() != len(tc.samples) || s.Flags() != tc.flags {
				t.Fatalf("samples %d flags %d", s.NumSamples(), s.Flags())
			}
			var toks, tr int64
			for i, want := range tc.samples {
				got := s.Sample(i)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("sample %d: got %+v want %+v", i, got, want)
				}
				toks += int64(len(want.Tokens))
				tr += int64(want.Trainable())
			}
			if info.Tokens != toks || info.TrainableTokens != tr || info.Samples != int64(len(tc.samples)) || info.File != "train-00000.shard" {
				t.Errorf("info %+v", info)
			}
			d, _ := hashFile(p)
			if d != info.SHA256 {
				t.Errorf("digest %s vs %s", d, info.SHA256)
			}
			entries, _ := os.ReadDir(filepath.Dir(p))
			if len(entries) != 1 {
				t.Errorf("temporary files left: %v", entries)
			}
		})
	}
}

func TestShardGoldenHeader(t *testing.T) {
	p, _ := writeShard(t, 0, testSamples())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	want := "4c41544845534844" + // LATHESHD
		"01000000" + // version 1
		"00000000" + // flags
		"0300000000000000" + // 3 samples
		"0c00000000000000" // 12 tokens
	if got := hex.EncodeToString(b[:32]); got != want {
		t.Errorf("header\n got %s\nwant %s", got, want)
	}
	// 64 header + 4*8 offsets + 12*4 tokens + 2 mask bytes
	if len(b) != 64+32+48+2 {
		t.Errorf("size %d", len(b))
	}
	wantOffsets := "0000000000000000" + "0300000000000000" + "0300000000000000" + "0c00000000000000"
	if got := hex.EncodeToString(b[64:96]); got != wantOffsets {
		t.Errorf("offsets %s", got)
	}
	// mask bits, LSB first: tokens 0..7 = 0,1,1,1,0,1,0,1 -> 0b10101110; 8..11 = 0,1,0,1 -> 0b1010
	if got := hex.EncodeToString(b[len(b)-2:]); got != "ae0a" {
		t.Errorf("mask %s", got)
	}
}

func TestShardCorruption(t *testing.T) {
	p, _ := writeShard(t, FlagPacked, []Sample{{Tokens: []uint32{1, 2}, Mask: []bool{true, true}, SegmentIDs: []uint32{0, 1}}})
	orig, _ := os.ReadFile(p)
	for _, tc := range []struct {
		name   string
		mutate func([]byte) []byte
		want   string
	}{
		{"payload byte", func(b []byte) []byte { b[70] ^= 1; return b }, "checksum mismatch"},
		{"checksum byte", func(b []byte) []byte { b[40] ^= 0x80; return b }, "checksum mismatch"},
		{"flags", func(b []byte) []byte { b[12] = 2; return b }, "8 unexpected bytes after the payload (header describes 89 bytes)"},
		{"magic", func(b []byte) []byte { b[0] = 'X'; return b }, `not a lathe shard (magic "XATHESHD", want "LATHESHD")`},
		{"version", func(b []byte) []byte { b[8] = 9; return b }, "unsupported version 9"},
		{"unknown flag", func(b []byte) []byte { b[13] = 1; return b }, "unknown flags 0x100"},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }, "truncated: header describes 97 bytes, file has 96"},
		{"truncated header", func(b []byte) []byte { return b[:20] }, "truncated: 20 bytes, shorter than the 64-byte header"},
		{"trailing", func(b []byte) []byte { return append(b, 0) }, "1 unexpected bytes after the payload"},
		{"empty", func(b []byte) []byte { return nil }, "truncated: 0 bytes"},
		{"huge counts", func(b []byte) []byte { b[31] = 0x7f; return b }, "header counts out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(append([]byte(nil), orig...))
			bad := filepath.Join(t.TempDir(), "bad.shard")
			os.WriteFile(bad, b, 0o644)
			_, err := OpenShard(bad)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), bad) {
				t.Errorf("error %q, want it to name %s and say %q", err, bad, tc.want)
			}
			if tc.want == "checksum mismatch" && !errors.Is(err, ErrShardChecksum) {
				t.Errorf("not ErrShardChecksum: %v", err)
			}
		})
	}
}

// TestShardStructuralValidation builds images with valid checksums but bad
// contents, so the structural checks (not the checksum) must catch them.
func TestShardStructuralValidation(t *testing.T) {
	reseal := func(b []byte) []byte {
		s := sha256Sum(b[:32], b[64:])
		copy(b[32:64], s)
		return b
	}
	p, _ := writeShard(t, FlagPacked, []Sample{{Tokens: []uint32{1, 2, 3}, Mask: []bool{true, true, false}, SegmentIDs: []uint32{0, 1, 1}}})
	orig, _ := os.ReadFile(p)
	for _, tc := range []struct {
		name   string
		mutate func([]byte)
		want   string
	}{
		{"offset end", func(b []byte) { b[72] = 2 }, "last offset 2 does not match the token count 3"},
		{"segment jump", func(b []byte) { b[64+16+12+8] = 3 }, "segment id 3 at token 2"},
		{"segment start", func(b []byte) { b[64+16+12] = 1 }, "segment id 1 at token 0"},
		{"mask padding", func(b []byte) { b[len(b)-1] |= 0x80 }, "mask padding bits are not zero"},
	} {
		b := append([]byte(nil), orig...)
		tc.mutate(b)
		_, err := ParseShard("x.shard", reseal(b))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSamplePositions(t *testing.T) {
	s := Sample{Tokens: make([]uint32, 6), SegmentIDs: []uint32{0, 0, 0, 1, 1, 2}}
	if got := s.Positions(); !reflect.DeepEqual(got, []uint32{0, 1, 2, 0, 1, 0}) {
		t.Errorf("positions %v", got)
	}
}

func FuzzReadShard(f *testing.F) {
	for _, flags := range []uint32{0, FlagPacked, FlagPairs} {
		samples := testSamples()
		if flags == FlagPacked {
			samples = []Sample{{Tokens: []uint32{1, 2}, Mask: []bool{true, false}, SegmentIDs: []uint32{0, 1}}}
		}
		if flags == FlagPairs {
			samples = samples[:2]
		}
		p, _ := writeShard(f, flags, samples)
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Add([]byte("LATHESHD"))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseShard("fuzz", b)
		if err != nil {
			return
		}
		for i := 0; i < s.NumSamples(); i++ {
			x := s.Sample(i)
			x.Positions()
		}
	})
}
