package cpu

import (
	"fmt"
	"math"

	"github.com/lathe-ml/lathe/internal/tensor"
)

// nf4Mid are the midpoints between consecutive NF4 code values: a
// normalised value v gets the code of the first midpoint above it.
var nf4Mid = func() (m [15]float32) {
	for i := range m {
		m[i] = (tensor.NF4Codes[i] + tensor.NF4Codes[i+1]) / 2
	}
	return m
}()

// nf4Code returns the index of the NF4 code value nearest to v (v is
// clamped to [-1, 1] by construction of the search).
func nf4Code(v float32) uint8 {
	lo, hi := 0, len(nf4Mid)
	for lo < hi {
		mid := (lo + hi) / 2
		if v > nf4Mid[mid] {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return uint8(lo)
}

// nf4Absmax decodes block b's double-quantised absmax. Quantiser and
// dequantiser both use this one expression so they agree bit for bit.
func nf4Absmax(q uint8, scale2, offset float32) float32 {
	return float32(int8(q))*(scale2/127) + offset
}

type nf4K struct {
	x, absTrue []float32 // quantise: input, true absmax per block
	out        []float32 // dequantise: output
	codes      []uint8
	absQ       []uint8
	scale2     []float32
	offset     float32
	phase      int // 0: absmax, 1: second-level quantisation per group, 2: codes, 3: dequantise
	block0     int // dequantise: the first block (out starts there)
}

func (k *nf4K) run(lo, hi int) {
	const bs = tensor.NF4BlockSize
	switch k.phase {
	case 0:
		for b := lo; b < hi; b++ {
			var m float32
			for _, v := range k.x[b*bs : (b+1)*bs] {
				m = max(m, float32(math.Abs(float64(v))))
			}
			k.absTrue[b] = m
		}
	case 1:
		for g := lo; g < hi; g++ {
			blocks := k.absTrue[g*tensor.NF4GroupSize : min((g+1)*tensor.NF4GroupSize, len(k.absTrue))]
			var s float32
			for _, a := range blocks {
				s = max(s, float32(math.Abs(float64(a-k.offset))))
			}
			k.scale2[g] = s
			for i, a := range blocks {
				var q float64
				if s > 0 {
					q = math.Round(127 * float64(a-k.offset) / float64(s))
				}
				k.absQ[g*tensor.NF4GroupSize+i] = uint8(int8(max(-127, min(127, q))))
			}
		}
	case 2:
		for b := lo; b < hi; b++ {
			a := nf4Absmax(k.absQ[b], k.scale2[b/tensor.NF4GroupSize], k.offset)
			var inv float32
			if a != 0 {
				inv = 1 / a
			}
			x := k.x[b*bs : (b+1)*bs]
			codes := k.codes[b*bs/2 : (b+1)*bs/2]
			for i := range codes {
				codes[i] = nf4Code(x[2*i]*inv)<<4 | nf4Code(x[2*i+1]*inv)
			}
		}
	case 3:
		for ob := lo; ob < hi; ob++ {
			b := ob + k.block0
			a := nf4Absmax(k.absQ[b], k.scale2[b/tensor.NF4GroupSize], k.offset)
			out := k.out[ob*bs : (ob+1)*bs]
			for i, c := range k.codes[b*bs/2 : (b+1)*bs/2] {
				out[2*i] = tensor.NF4Codes[c>>4] * a
				out[2*i+1] = tensor.NF4Codes[c&15] * a
			}
		}
	}
}

func nf4Views(what string, q tensor.NF4Tensor) (codes, absQ []uint8, scale2, offset []float32) {
	q.Check(what)
	blocks, groups := tensor.NF4Sizes(q.N)
	codes = view[uint8]("cpu nf4 codes", q.Codes.As(tensor.U8), tensor.U8, q.N/2)
	absQ = view[uint8]("cpu nf4 absmax", q.Absmax, tensor.U8, blocks)
	return codes, absQ, f32("cpu nf4 scale2", q.Scale2, groups), f32("cpu nf4 offset", q.Offset, 1)
}

// QuantizeNF4 quantises x [q.N] into q: per 64-value block the absmax;
// the absmaxes minus their mean (Offset) quantised to int8 per group of 256
// (Scale2 = the group's largest |absmax − Offset|); each value then gets the
// nearest code to x/absmax', absmax' being the decoded absmax, so the
// dequantised tensor is the nearest one representable with the stored
// scales. The mean is summed in block order.
func (be *Backend) QuantizeNF4(q tensor.NF4Tensor, x tensor.Buffer) {
	codes, absQ, scale2, offset := nf4Views("cpu.QuantizeNF4", q)
	blocks, groups := tensor.NF4Sizes(q.N)
	if cap(be.nf4Scratch) < blocks {
		be.nf4Scratch = make([]float32, blocks)
	}
	k := &be.k.nf4
	*k = nf4K{x: f32("cpu.QuantizeNF4 x", x, q.N), absTrue: be.nf4Scratch[:blocks],
		codes: codes, absQ: absQ, scale2: scale2}
	be.par(blocks, 64, k)
	var sum float64
	for _, a := range k.absTrue {
		sum += float64(a)
	}
	k.offset = float32(sum / float64(blocks))
	offset[0] = k.offset
	k.phase = 1
	be.par(groups, 1, k)
	k.phase = 2
	be.par(blocks, 64, k)
	*k = nf4K{}
}

// DequantNF4 expands values [start, start+n) of q into out [n].
func (be *Backend) DequantNF4(out tensor.Buffer, q tensor.NF4Tensor, start, n int) {
	const bs = tensor.NF4BlockSize
	if start < 0 || n < 0 || start%bs != 0 || n%bs != 0 || start+n > q.N {
		panic(fmt.Sprintf("cpu.DequantNF4: range [%d,%d) of %d values is not whole %d-value blocks", start, start+n, q.N, bs))
	}
	codes, absQ, scale2, offset := nf4Views("cpu.DequantNF4", q)
	b0 := start / bs
	be.k.nf4 = nf4K{out: f32("cpu.DequantNF4 out", out, n), codes: codes, absQ: absQ,
		scale2: scale2, offset: offset[0], phase: 3, block0: b0}
	be.par(n/bs, 64, &be.k.nf4)
	be.k.nf4 = nf4K{}
}
