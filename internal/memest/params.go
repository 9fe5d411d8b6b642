package memest

import "fmt"

// What the memory model knows of a model's layout, exported for the time
// model (internal/timeest), which needs the same shapes and the same
// reading of an Input's method.

// Linear is one linear module of a decoder layer: its kind ("q_proj"), its
// path below the layer ("self_attn.q_proj") and its weight's shape [Out,
// In].
type Linear struct {
	Kind, Path string
	Out, In    int
}

// Linears returns the linear modules of one decoder layer of in.Config, in
// llama's order (q, k, v, o, gate, up, down).
func Linears(in Input) []Linear {
	var out []Linear
	for _, k := range linearKinds(in.Config) {
		out = append(out, Linear{Kind: k.kind, Path: k.path, Out: k.out, In: k.in})
	}
	return out
}

// Params is a training stage's parameter layout.
type Params struct {
	// Trainable is the number of trainable values (base parameters that
	// train, adapters, value head); TrainableTensors the number of
	// tensors holding them (AdamW updates each separately).
	Trainable        int64
	TrainableTensors int
	// Adapted is, per layer and per Linears index, whether a LoRA adapter
	// covers the module (nil for full and freeze training).
	Adapted [][]bool
	// NF4TileRows is, per Linears index, the rows of the tile QLoRA
	// dequantises at a time (nil unless the method is QLoRA).
	NF4TileRows []int
}

// Layout returns in's parameter layout, or the error Training would give
// for a bad Input.
func Layout(in Input) (Params, error) {
	if err := check(in); err != nil {
		return Params{}, err
	}
	s, err := layout(in)
	if err != nil {
		return Params{}, err
	}
	if s.trainable == 0 {
		return Params{}, fmt.Errorf("memest: nothing trains (method %q with no trainable parameters)", in.Method)
	}
	p := Params{Trainable: s.trainable, TrainableTensors: s.trainableTensors, Adapted: s.adapted}
	if in.Method == QLoRA {
		for _, k := range linearKinds(in.Config) {
			p.NF4TileRows = append(p.NF4TileRows, nf4TileRows(k.out, k.in))
		}
	}
	return p, nil
}
