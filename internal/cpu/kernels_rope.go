package cpu

import (
	"fmt"
	"math"
	"slices"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// maxRoPEHalf bounds rotDim/2 so the per-token cos/sin tables fit on the
// stack (head dims up to 1024).
const maxRoPEHalf = 512

type ropeK struct {
	out, x, invFreq   []float32
	pos               []int32
	heads, hd, rotDim int
	sign              float32 // +1 forward, -1 backward (rotate by -angle)
	// cos, sin: the tables of ropeTable for every position in pos, or nil
	// to compute the angles here.
	cos, sin []float32
}

func (k *ropeK) run(lo, hi int) {
	var cosT, sinT [maxRoPEHalf]float32
	half := k.rotDim / 2
	for t := lo; t < hi; t++ {
		var ct, st []float32
		if k.cos != nil {
			p := int(k.pos[t])
			ct, st = k.cos[p*half:(p+1)*half], k.sin[p*half:(p+1)*half]
		} else {
			ropeAngles(cosT[:half], sinT[:half], k.invFreq[:half], k.pos[t])
			ct, st = cosT[:half], sinT[:half]
		}
		base := t * k.heads * k.hd
		x := k.x[base : base+k.heads*k.hd]
		out := k.out[base : base+k.heads*k.hd]
		ropeHeads(out, x, ct, st, k.heads, k.hd, half, k.sign)
		if k.rotDim < k.hd && &out[0] != &x[0] {
			for h := 0; h < k.heads; h++ {
				copy(out[h*k.hd+k.rotDim:(h+1)*k.hd], x[h*k.hd+k.rotDim:(h+1)*k.hd])
			}
		}
	}
}

// ropeAngles sets cos[i], sin[i] of the angle pos·invFreq[i], the angle
// rounded to float32 as transformers computes it.
func ropeAngles(cos, sin, invFreq []float32, pos int32) {
	p := float32(pos)
	for i, f := range invFreq {
		a := float64(p * f)
		cos[i] = float32(math.Cos(a))
		sin[i] = float32(math.Sin(a))
	}
}

// maxRoPETable bounds the positions ropeTable caches (higher ones are
// computed per call).
const maxRoPETable = 1 << 16

// ropeTable caches cos and sin of ropeAngles for positions 0..npos-1 of one
// invFreq: training calls RoPE four times per layer with the same
// positions, and the sines and cosines cost more than the rotation.
type ropeTable struct {
	invFreq  []float32
	npos     int
	cos, sin []float32
}

// lookup returns the tables for invFreq covering every position in pos,
// building them if needed, or nils when a position is out of range.
func (r *ropeTable) lookup(invFreq []float32, pos []int32) (cos, sin []float32) {
	hi := int32(0)
	for _, p := range pos {
		if p < 0 || p >= maxRoPETable {
			return nil, nil
		}
		hi = max(hi, p)
	}
	half := len(invFreq)
	same := slices.Equal(r.invFreq, invFreq)
	if same && int(hi) < r.npos {
		return r.cos, r.sin
	}
	npos := max(int(hi)+1, 256)
	if same {
		npos = max(npos, 2*r.npos) // grow geometrically
	}
	r.npos = min(npos, maxRoPETable)
	r.invFreq = append(r.invFreq[:0], invFreq...)
	r.cos = growScratch(r.cos, r.npos*half)
	r.sin = growScratch(r.sin, r.npos*half)
	for p := 0; p < r.npos; p++ {
		ropeAngles(r.cos[p*half:(p+1)*half], r.sin[p*half:(p+1)*half], invFreq, int32(p))
	}
	return r.cos, r.sin
}

func (be *Backend) rope(name string, out, x, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int, sign float32) {
	if rotDim <= 0 || rotDim%2 != 0 || rotDim > headDim || rotDim/2 > maxRoPEHalf {
		panic(fmt.Sprintf("%s: rotary dim %d of head dim %d must be even, positive and at most %d", name, rotDim, headDim, 2*maxRoPEHalf))
	}
	size := n * heads * headDim
	// A bfloat16 x (an activation, RoPE in place) is widened, rotated in
	// float32 and rounded back.
	xs := be.actIn(slotQ, "cpu.RoPE x", x, size)
	os, oh := be.actOut("cpu.RoPE out", out, size)
	be.k.rope = ropeK{out: os, x: xs,
		invFreq: f32("cpu.RoPE invFreq", invFreq, rotDim/2), pos: i32("cpu.RoPE pos", pos, n),
		heads: heads, hd: headDim, rotDim: rotDim, sign: sign}
	be.k.rope.cos, be.k.rope.sin = be.ropeTab.lookup(be.k.rope.invFreq, be.k.rope.pos)
	be.par(n, max(1, grainElems/max(heads*headDim, 1)), &be.k.rope)
	be.k.rope = ropeK{}
	be.round(oh, os)
}

// RoPEForward applies rotate-half rotary embeddings (see tensor.Backend).
func (be *Backend) RoPEForward(out, x, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int) {
	be.rope("cpu.RoPEForward", out, x, pos, invFreq, n, heads, headDim, rotDim, 1)
}

// RoPEBackward applies the inverse (transposed) rotation to dout.
func (be *Backend) RoPEBackward(dx, dout, pos, invFreq tensor.Buffer, n, heads, headDim, rotDim int) {
	be.rope("cpu.RoPEBackward", dx, dout, pos, invFreq, n, heads, headDim, rotDim, -1)
}
