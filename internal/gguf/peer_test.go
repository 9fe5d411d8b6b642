package gguf

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// numpyPython returns a python3 that imports numpy (Debian's python3-numpy
// lives in /usr/bin/python3, which a python3 earlier on PATH may not see).
// It skips the test when there is none, unless LATHE_REQUIRE_PEERS=1 makes
// that a failure.
func numpyPython(t *testing.T) string {
	t.Helper()
	var errs []string
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		out, err := exec.Command(p, "-c", "import numpy").CombinedOutput()
		if err == nil {
			return p
		}
		errs = append(errs, fmt.Sprintf("%s: %v %s", p, err, bytes.TrimSpace(out)))
	}
	msg := "no python3 with numpy: " + strings.Join(errs, "; ")
	if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
		t.Fatal(msg + " (LATHE_REQUIRE_PEERS=1)")
	}
	t.Skip(msg)
	return ""
}

// TestPeerNumpy compares the q/k row permutation and the Q8_0/Q4_0 bytes
// with testdata/ref.py (numpy, written from convert_hf_to_gguf.py's permute
// and ggml's reference quantisers).
func TestPeerNumpy(t *testing.T) {
	python := numpyPython(t)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, tc := range []struct {
		name             string
		rows, cols, head int
		gen              func(i int) float32
	}{
		{"normal", 64, 96, 4, func(int) float32 { return float32(rng.NormFloat64() * 0.05) }},
		{"wide range", 48, 64, 3, func(int) float32 { return float32(rng.NormFloat64() * math.Pow(10, float64(rng.IntN(8)-4))) }},
		{"integers", 32, 32, 2, func(i int) float32 { return float32(i%17 - 8) }},
		{"ties", 16, 64, 8, func(i int) float32 { return float32([]int{-2, 2, 1, 0}[i%4]) }},
		{"halves", 8, 32, 1, func(i int) float32 { return float32(i%32-16) / 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := make([]float32, tc.rows*tc.cols)
			for i := range w {
				w[i] = tc.gen(i)
			}
			raw, _ := EncodeFloat32(F32, w)
			if err := os.WriteFile(filepath.Join(dir, "in.f32"), raw, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(python, filepath.Join("testdata", "ref.py"), dir,
				itoa(tc.rows), itoa(tc.cols), itoa(tc.head))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("ref.py: %v\n%s", err, out)
			}
			read := func(name string) []byte {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			perm, err := permuteRows(w, tc.rows, tc.cols, tc.head, false)
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := EncodeFloat32(F32, perm); !bytes.Equal(got, read("permuted.f32")) {
				t.Error("permutation differs from numpy's reshape/swapaxes")
			}
			for _, q := range []struct {
				typ  Type
				file string
			}{{Q8_0, "q8_0.bin"}, {Q4_0, "q4_0.bin"}} {
				got, err := EncodeFloat32(q.typ, w)
				if err != nil {
					t.Fatal(err)
				}
				want := read(q.file)
				if !bytes.Equal(got, want) {
					bs := q.typ.TypeSize()
					for b := 0; b < len(got)/bs; b++ {
						if !bytes.Equal(got[b*bs:(b+1)*bs], want[b*bs:(b+1)*bs]) {
							t.Errorf("%v block %d:\n got % x\nwant % x", q.typ, b, got[b*bs:(b+1)*bs], want[b*bs:(b+1)*bs])
							break
						}
					}
				}
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
