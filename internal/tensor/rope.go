package tensor

import (
	"fmt"
	"math"
)

// RoPE configures rotary position embeddings as Hugging Face transformers
// does for the Llama family.
type RoPE struct {
	HeadDim int
	// RotaryDim is the number of leading dims of each head that rotate
	// (partial_rotary_factor·HeadDim); 0 means HeadDim. Must be even.
	RotaryDim int
	Theta     float64 // rope_theta, e.g. 10000 or 500000
	// Llama3 is rope_scaling with rope_type "llama3", or nil.
	Llama3 *Llama3Scaling
	// ExtFactors, when set, divides frequency i by ExtFactors[i] (Phi-3's
	// longrope short or long factors); it has RotaryDim/2 entries.
	ExtFactors []float64
}

// Llama3Scaling is rope_scaling {"rope_type": "llama3", ...}.
type Llama3Scaling struct {
	Factor                        float64
	LowFreqFactor, HighFreqFactor float64
	OriginalMaxPositions          int // original_max_position_embeddings
}

// Dim returns the number of rotated dims.
func (r RoPE) Dim() int {
	if r.RotaryDim == 0 {
		return r.HeadDim
	}
	return r.RotaryDim
}

// InvFreq returns the RotaryDim/2 inverse frequencies
// theta^(-2i/RotaryDim), adjusted by llama3 scaling when set, rounded to
// float32: the invFreq argument of RoPEForward and RoPEBackward.
func (r RoPE) InvFreq() ([]float32, error) {
	dim := r.Dim()
	if dim <= 0 || dim%2 != 0 || dim > r.HeadDim {
		return nil, fmt.Errorf("tensor: rope: rotary dim %d of head dim %d must be even and positive", dim, r.HeadDim)
	}
	if !(r.Theta > 0) {
		return nil, fmt.Errorf("tensor: rope: theta %v must be positive", r.Theta)
	}
	out := make([]float32, dim/2)
	for i := range out {
		f := 1 / math.Pow(r.Theta, float64(2*i)/float64(dim))
		if s := r.Llama3; s != nil {
			if s.Factor <= 0 || s.LowFreqFactor <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.OriginalMaxPositions <= 0 {
				return nil, fmt.Errorf("tensor: rope: invalid llama3 scaling %+v", *s)
			}
			old := float64(s.OriginalMaxPositions)
			lowWave := old / s.LowFreqFactor
			highWave := old / s.HighFreqFactor
			wave := 2 * math.Pi / f
			switch {
			case wave > lowWave:
				f /= s.Factor
			case wave < highWave:
			default:
				smooth := (old/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				f = (1-smooth)*f/s.Factor + smooth*f
			}
		}
		if r.ExtFactors != nil {
			if len(r.ExtFactors) != dim/2 || !(r.ExtFactors[i] > 0) {
				return nil, fmt.Errorf("tensor: rope: %d extension factors for %d frequencies (each must be positive)", len(r.ExtFactors), dim/2)
			}
			f /= r.ExtFactors[i]
		}
		out[i] = float32(f)
	}
	return out, nil
}
