package memest

import (
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/cpu"
	"github.com/lathe-ml/lathe/internal/llama"
)

// TestLayoutMatchesModel checks Layout's trainable values and tensors
// against the models llama builds, for each method.
func TestLayoutMatchesModel(t *testing.T) {
	base := Input{Config: loadConfig(t, "tiny"), BatchSize: 1, SeqLen: 8}
	cases := map[string]func(*Input){
		"full":       func(in *Input) { in.Method = Full },
		"full+value": func(in *Input) { in.Method, in.ValueHead = Full, true },
		"lora q,v":   func(in *Input) { in.Method, in.LoRARank, in.LoRAModules = LoRA, 4, []string{"q_proj", "v_proj"} },
		"qlora all":  func(in *Input) { in.Method, in.LoRARank, in.LoRAModules = QLoRA, 2, []string{"all"} },
		"freeze last": func(in *Input) {
			in.Method, in.Trainable = Freeze, func(n string) bool { return strings.HasPrefix(n, "model.layers.3.") }
		},
	}
	for name, edit := range cases {
		in := base
		edit(&in)
		p, err := Layout(in)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := llama.NewWith(in.Config, cpu.New(), options(in))
		if err != nil {
			t.Fatal(err)
		}
		if p.Trainable != int64(m.NumTrainable()) || p.TrainableTensors != len(m.Trainable()) {
			t.Errorf("%s: Layout %d values in %d tensors, the model trains %d in %d", name, p.Trainable, p.TrainableTensors, m.NumTrainable(), len(m.Trainable()))
		}
		if (in.Method == QLoRA) != (p.NF4TileRows != nil) || (in.Method == LoRA || in.Method == QLoRA) != (p.Adapted != nil) {
			t.Errorf("%s: tiles %v, adapted %v", name, p.NF4TileRows, p.Adapted)
		}
		m.Free()
	}
	if got := Linears(base); len(got) != 7 || got[0].Kind != "q_proj" || got[6].Path != "mlp.down_proj" || got[4].Out != 192 || got[4].In != 64 {
		t.Errorf("Linears = %+v", got)
	}
}

// ppoTiny is a PPO stage on the tiny shape: 4 rollouts of 16 + 16 tokens.
func ppoTiny(t *testing.T, m Method) PPOInput {
	c := loadConfig(t, "tiny")
	in := Input{Config: c, Method: m, BatchSize: 4, SeqLen: 32, Baseline: 1 << 20, Threads: 2}
	if m != Full {
		in.LoRARank, in.LoRAModules = 8, []string{"q_proj", "v_proj"}
	}
	return PPOInput{Policy: in, PromptLen: 16, RewardConfig: c}
}

func TestPPOPieces(t *testing.T) {
	full, err := PPO(ppoTiny(t, Full))
	if err != nil {
		t.Fatal(err)
	}
	lora, err := PPO(ppoTiny(t, LoRA))
	if err != nil {
		t.Fatal(err)
	}
	// A reference copy only under full training.
	if full.Piece(PieceReference) == 0 || lora.Piece(PieceReference) != 0 {
		t.Errorf("reference: full %d, lora %d", full.Piece(PieceReference), lora.Piece(PieceReference))
	}
	// The KV cache as llama's newCache allocates it, and the host copy
	// of the logits: 4 rows of 32 positions of 4 heads of 16, 4 layers.
	c := loadConfig(t, "tiny")
	kv := 4 * (2*4*4*32*4*16 + 4*int64(c.VocabSize) + 4*64)
	if got, want := lora.Piece(PieceKVCache), kv+4*4+4*4*int64(c.VocabSize); got != want {
		t.Errorf("kv cache %d, want %d", got, want)
	}
	if got, want := lora.Piece(PieceLogitsBuf), int64(8*4*32*c.VocabSize); got != want {
		t.Errorf("logits buffer %d, want %d", got, want)
	}
	// The policy trains with its value head: its pieces are Training's.
	pol := ppoTiny(t, LoRA).Policy
	pol.ValueHead = true
	tr, err := Training(pol)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{PieceWeights, PieceGradients, PieceOptimizer, PieceActivations} {
		if lora.Piece(name) != tr.Piece(name) {
			t.Errorf("%s: %d in PPO, %d in training", name, lora.Piece(name), tr.Piece(name))
		}
	}
	var sum int64
	for _, p := range full.Pieces {
		sum += p.Bytes
	}
	if sum != full.Total {
		t.Errorf("pieces sum to %d, total %d", sum, full.Total)
	}
}

func TestPPOBadInput(t *testing.T) {
	cases := map[string]func(*PPOInput){
		"freeze":          func(in *PPOInput) { in.Policy.Method = Freeze; in.Policy.Trainable = func(string) bool { return true } },
		"no prompt":       func(in *PPOInput) { in.PromptLen = 0 },
		"no new tokens":   func(in *PPOInput) { in.PromptLen = in.Policy.SeqLen },
		"no batch":        func(in *PPOInput) { in.Policy.BatchSize = 0 },
		"bad reward lora": func(in *PPOInput) { in.RewardLoRARank, in.RewardLoRAModules = 4, []string{"w_proj"} },
	}
	for name, edit := range cases {
		in := ppoTiny(t, LoRA)
		edit(&in)
		if _, err := PPO(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestFittingPPO checks that every option fits, and that adapters are
// proposed for full training.
func TestFittingPPO(t *testing.T) {
	in := ppoTiny(t, Full)
	e, err := PPO(in)
	if err != nil {
		t.Fatal(err)
	}
	limit := e.Total - e.Piece(PieceReference)/2
	opts := FittingPPO(in, 2, limit)
	if len(opts) == 0 || opts[0].Description != `method = "lora"` {
		t.Fatalf("options %+v", opts)
	}
	for _, o := range opts {
		if o.Total > limit {
			t.Errorf("%s: %d > %d", o.Description, o.Total, limit)
		}
		if strings.HasPrefix(o.Description, "batch_size") && !strings.Contains(o.Description, "mini_batch_size = 2") {
			t.Errorf("%s: the batch must stay a multiple of the mini-batch", o.Description)
		}
	}
	if FittingPPO(in, 2, e.Total) != nil {
		t.Error("options for a stage that fits")
	}
	if FittingPPO(in, 2, 1<<10) != nil {
		t.Error("options that cannot fit 1 KiB")
	}
}
