package timeest

import (
	"fmt"
	"strings"
)

// The kinds of kernel call the time model counts.
const (
	KindGemm    = "gemm"     // tensor.Gemm: C = op(A)·op(B), M×N×K
	KindAttnFwd = "attn-fwd" // causal attention forward, [B, T, Hq/Hkv, D]
	KindAttnBwd = "attn-bwd" // its backward
	KindXent    = "xent"     // the fused LM-head cross-entropy, N rows, hidden C, vocabulary V
	KindNF4     = "nf4"      // dequantising an NF4 tile of Values values
	KindAdamW   = "adamw"    // one AdamW update of a tensor of Values values
	KindGrads   = "grads"    // zeroing, global norm and clipping of Values gradient values
	KindElemFwd = "elem-fwd" // a decoder layer's elementwise kernels, forward, for Rows tokens
	KindElemBwd = "elem-bwd" // and backward
)

// Cross-entropy variants: losses only (evaluation, DPO's first pass), with
// the input gradient (frozen head), with the head's gradient too.
const (
	XentLoss = "loss"
	XentDx   = "dx"
	XentDxDw = "dxdw"
)

// Op is one kernel call with its shape. Only the fields of its Kind are
// set; the zero values of the others keep Key canonical.
type Op struct {
	Kind string
	// gemm
	TransA, TransB bool
	M, N, K        int
	// attention: B rows of T tokens, Hq query and Hkv key/value heads of
	// width D
	B, T, Hq, Hkv, D int
	// xent: Rows (N) of Hidden (C) against Vocab (V); Variant as above
	Rows, Hidden, Vocab int
	Variant             string
	// elementwise: Rows tokens of a layer with Hidden, Inter
	// (intermediate size) and Hq, Hkv heads of width D
	Inter int
	// nf4, adamw, grads
	Values int
}

// Gemm returns a gemm op.
func Gemm(transA, transB bool, m, n, k int) Op {
	return Op{Kind: KindGemm, TransA: transA, TransB: transB, M: m, N: n, K: k}
}

// Key names the op and its shape; it keys the calibration cache.
func (o Op) Key() string {
	switch o.Kind {
	case KindGemm:
		t := func(b bool) string {
			if b {
				return "T"
			}
			return "N"
		}
		return fmt.Sprintf("gemm %s%s %dx%dx%d", t(o.TransA), t(o.TransB), o.M, o.N, o.K)
	case KindAttnFwd, KindAttnBwd:
		return fmt.Sprintf("%s b%d t%d h%d/%d d%d", o.Kind, o.B, o.T, o.Hq, o.Hkv, o.D)
	case KindXent:
		return fmt.Sprintf("xent %s n%d c%d v%d", o.Variant, o.Rows, o.Hidden, o.Vocab)
	case KindElemFwd, KindElemBwd:
		return fmt.Sprintf("%s n%d h%d i%d heads%d/%d d%d", o.Kind, o.Rows, o.Hidden, o.Inter, o.Hq, o.Hkv, o.D)
	default:
		return fmt.Sprintf("%s %d", o.Kind, o.Values)
	}
}

// String is Key.
func (o Op) String() string { return o.Key() }

// Flops is the op's floating-point operations (multiply and add count
// two): 2·M·N·K for a gemm; for causal attention the score and value
// products over the T(T+1)/2 visible pairs of each head, two of them
// forward and five backward (the scores again, dP, dV, dQ, dK); for the
// cross-entropy the logits product, and the input and head gradient
// products of the variants that compute them. Elementwise, NF4 and
// optimizer ops count none: they are bound by memory traffic.
func (o Op) Flops() float64 {
	switch o.Kind {
	case KindGemm:
		return 2 * float64(o.M) * float64(o.N) * float64(o.K)
	case KindAttnFwd, KindAttnBwd:
		pairs := float64(o.B) * float64(o.Hq) * float64(o.T) * float64(o.T+1) / 2
		per := 2.0
		if o.Kind == KindAttnBwd {
			per = 5
		}
		return per * 2 * float64(o.D) * pairs
	case KindXent:
		prods := 1.0
		switch o.Variant {
		case XentDx:
			prods = 2
		case XentDxDw:
			prods = 3
		}
		return prods * 2 * float64(o.Rows) * float64(o.Hidden) * float64(o.Vocab)
	}
	return 0
}

// cost is the op's work in units in which its time is about linear when
// it is large enough: its flops, or the values or tokens it streams.
func (o Op) cost() float64 {
	switch o.Kind {
	case KindAttnFwd, KindAttnBwd:
		// The kernels work in causal 64×64 tiles: a short sequence
		// computes a larger share of masked-out scores.
		nb := float64((o.T + attnTile - 1) / attnTile)
		per := 2.0
		if o.Kind == KindAttnBwd {
			per = 5
		}
		return per * 2 * float64(o.D) * float64(o.B) * float64(o.Hq) * nb * (nb + 1) / 2 * attnTile * attnTile
	case KindGemm, KindXent:
		return o.Flops()
	case KindElemFwd, KindElemBwd:
		return float64(o.Rows)
	default:
		return float64(o.Values)
	}
}

// floats is how many floats the op's operands take.
func (o Op) floats() int64 {
	switch o.Kind {
	case KindGemm:
		return int64(o.M)*int64(o.K) + int64(o.K)*int64(o.N) + int64(o.M)*int64(o.N)
	case KindAttnFwd, KindAttnBwd:
		return 2 * int64(o.B) * int64(o.T) * int64(o.Hq+o.Hkv) * int64(o.D)
	case KindXent:
		return 2*int64(o.Vocab)*int64(o.Hidden) + 2*int64(o.Rows)*int64(o.Hidden) + 64*int64(o.Vocab)
	case KindElemFwd, KindElemBwd:
		return int64(o.Rows) * int64(6*o.Hidden+4*o.Inter+2*(o.Hq+o.Hkv)*o.D)
	default:
		return 4 * int64(o.Values)
	}
}

// Limits of a measured op: the work of one call and the floats its
// operands take. A larger op is measured at a reduced shape and its time
// scaled by cost (see Measured).
const (
	maxMeasuredFlops  = 1e9
	maxMeasuredFloats = 64 << 20
	maxMeasuredRows   = 512     // tokens of an elementwise op
	maxMeasuredValues = 1 << 20 // values of an nf4, adamw or grads op
	minMeasuredT      = 256     // attention is not measured on shorter rows than this (or than its own)
	minMeasuredVocab  = 8192    // nor the cross-entropy on a smaller vocabulary
	attnTile          = 64      // the CPU attention kernels' tile
)

// Measured returns the shape at which op is calibrated: op itself when it
// is small, else op with its largest dimensions halved until one call
// stays within about 10⁹ flops and 256 MiB of operands (attention: fewer
// rows, then shorter ones down to 256 tokens; the cross-entropy: fewer
// rows down to one 64-row chunk, then a smaller vocabulary down to 8192).
// Time scales with cost between the two, which holds once the dimensions
// are large enough for the kernels to run at their steady rate: a gemm
// dimension is never halved below 128.
func (o Op) Measured() Op {
	m := o
	big := func() bool { return m.Flops() > maxMeasuredFlops || m.floats() > maxMeasuredFloats }
	switch m.Kind {
	case KindGemm:
		for big() {
			d := largest(&m.M, &m.N, &m.K)
			if *d < 256 {
				break
			}
			*d /= 2
		}
	case KindAttnFwd, KindAttnBwd:
		for big() && m.B > 1 {
			m.B = (m.B + 1) / 2
		}
		for big() && m.T >= 2*minMeasuredT {
			m.T /= 2
		}
	case KindXent:
		// Whole 64-row chunks; the vocabulary stays large enough that
		// the head is as far from fitting in cache as the model's.
		if big() {
			for big() && m.Rows >= 2*xentChunk {
				m.Rows = (m.Rows + 1) / 2
			}
			m.Rows = max(xentChunk, m.Rows-m.Rows%xentChunk)
		}
		for big() && m.Vocab >= 2*minMeasuredVocab {
			m.Vocab /= 2
		}
	case KindElemFwd, KindElemBwd:
		for m.Rows > maxMeasuredRows {
			m.Rows = (m.Rows + 1) / 2
		}
	default:
		for m.Values > maxMeasuredValues {
			m.Values = (m.Values + 1) / 2
		}
		if m.Kind == KindNF4 {
			m.Values -= m.Values % 64 // whole NF4 blocks
			m.Values = max(m.Values, 64)
		}
	}
	return m
}

func largest(ds ...*int) *int {
	best := ds[0]
	for _, d := range ds[1:] {
		if *d > *best {
			best = d
		}
	}
	return best
}

// check reports an op that cannot be measured.
func (o Op) check() error {
	var bad []string
	pos := func(name string, v int) {
		if v <= 0 {
			bad = append(bad, fmt.Sprintf("%s %d", name, v))
		}
	}
	switch o.Kind {
	case KindGemm:
		pos("M", o.M)
		pos("N", o.N)
		pos("K", o.K)
	case KindAttnFwd, KindAttnBwd:
		pos("B", o.B)
		pos("T", o.T)
		pos("Hq", o.Hq)
		pos("Hkv", o.Hkv)
		pos("D", o.D)
		if o.Hkv > 0 && o.Hq%o.Hkv != 0 {
			bad = append(bad, fmt.Sprintf("Hq %d not a multiple of Hkv %d", o.Hq, o.Hkv))
		}
	case KindXent:
		pos("rows", o.Rows)
		pos("hidden", o.Hidden)
		pos("vocab", o.Vocab)
		if o.Variant != XentLoss && o.Variant != XentDx && o.Variant != XentDxDw {
			bad = append(bad, fmt.Sprintf("variant %q", o.Variant))
		}
	case KindElemFwd, KindElemBwd:
		pos("rows", o.Rows)
		pos("hidden", o.Hidden)
		pos("inter", o.Inter)
		pos("Hq", o.Hq)
		pos("Hkv", o.Hkv)
		pos("D", o.D)
	case KindNF4, KindAdamW, KindGrads:
		pos("values", o.Values)
		if o.Kind == KindNF4 && o.Values%64 != 0 {
			bad = append(bad, fmt.Sprintf("nf4 values %d not a multiple of 64", o.Values))
		}
	default:
		return fmt.Errorf("timeest: unknown op kind %q", o.Kind)
	}
	if len(bad) > 0 {
		return fmt.Errorf("timeest: op %s: bad shape (%s)", o.Key(), strings.Join(bad, ", "))
	}
	return nil
}
