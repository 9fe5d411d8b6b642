package lora

import (
	"math"
	"math/rand"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func randSlice(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// naiveMerge is the definition, element by element, in float64.
func naiveMerge(w []float32, out, in int, a, b []float32, rank int, scale float64) []float32 {
	res := make([]float32, len(w))
	for i := 0; i < out; i++ {
		for j := 0; j < in; j++ {
			var s float64
			for k := 0; k < rank; k++ {
				s += float64(b[i*rank+k]) * float64(a[k*in+j])
			}
			res[i*in+j] = float32(float64(w[i*in+j]) + float64(scale*s))
		}
	}
	return res
}

func TestMerge(t *testing.T) {
	tests := []struct {
		name          string
		out, in, rank int
		scale         float64
	}{
		{"tiny", 2, 3, 1, 2},
		{"square", 16, 16, 4, 0.5},
		{"wide", 5, 300, 8, 16 / math.Sqrt(8)},
		{"tall, parallel", 300, 256, 16, 2},
		{"zero rank", 4, 4, 0, 2},
		{"zero scale", 4, 6, 2, 0},
		{"empty", 0, 0, 3, 1},
	}
	rng := rand.New(rand.NewSource(1))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := randSlice(rng, tc.out*tc.in)
			a := randSlice(rng, tc.rank*tc.in)
			b := randSlice(rng, tc.out*tc.rank)
			w0 := slices.Clone(w)
			got := Merge(w, tc.out, tc.in, a, b, tc.rank, tc.scale)
			want := naiveMerge(w, tc.out, tc.in, a, b, tc.rank, tc.scale)
			if !slices.Equal(w, w0) {
				t.Fatal("Merge modified w")
			}
			if len(got) != len(want) {
				t.Fatalf("len %d, want %d", len(got), len(want))
			}
			for i := range got {
				// Both sum the same exact float64 products in the same order
				// and round once to float32, so they agree bit for bit.
				if got[i] != want[i] {
					t.Fatalf("element %d: %v, want %v", i, got[i], want[i])
				}
			}
			if tc.rank == 0 || tc.scale == 0 {
				if !slices.Equal(got, w) {
					t.Fatal("a zero update changed W")
				}
			}
		})
	}
}

func TestMergeKnownValues(t *testing.T) {
	// W = 0 (2x2), A = [1 2] (1x2), B = [3; 4] (2x1), scale 0.5:
	// scale·B·A = 0.5·[[3 6] [4 8]].
	got := Merge([]float32{1, 0, 0, 1}, 2, 2, []float32{1, 2}, []float32{3, 4}, 1, 0.5)
	want := []float32{2.5, 3, 2, 5}
	if !slices.Equal(got, want) {
		t.Fatalf("Merge = %v, want %v", got, want)
	}
}

func TestMergeDeterministicAcrossThreads(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	out, in, rank := 257, 129, 8
	w, a, b := randSlice(rng, out*in), randSlice(rng, rank*in), randSlice(rng, out*rank)
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	one := Merge(w, out, in, a, b, rank, 1.5)
	for _, p := range []int{2, 3, 8} {
		runtime.GOMAXPROCS(p)
		if got := Merge(w, out, in, a, b, rank, 1.5); !slices.Equal(got, one) {
			t.Fatalf("GOMAXPROCS=%d gives a different result", p)
		}
	}
}

func TestMergePanicsOnBadLengths(t *testing.T) {
	tests := []struct {
		name          string
		w, a, b       int
		out, in, rank int
	}{
		{"w", 5, 4, 4, 2, 2, 2},
		{"a", 4, 3, 4, 2, 2, 2},
		{"b", 4, 4, 5, 2, 2, 2},
		{"negative", 0, 0, 0, -1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				r := recover()
				if s, ok := r.(string); !ok || !strings.Contains(s, "lora.Merge") {
					t.Fatalf("recover() = %v, want a lora.Merge panic", r)
				}
			}()
			Merge(make([]float32, tc.w), tc.out, tc.in, make([]float32, tc.a), make([]float32, tc.b), tc.rank, 1)
		})
	}
}
