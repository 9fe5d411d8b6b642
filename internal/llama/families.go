package llama

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
)

// A family is one model architecture lathe reads: how its config.json
// maps onto Config, how Config is written back, and how its checkpoint
// names and lays out the tensors. Inside the engine every family is the
// Llama decoder with a few switches (Config's family fields); the
// differences in tensor names, fused projections and rotary layout are
// undone when a checkpoint is read and redone when one is written, so the
// model's own parameters always carry the Llama names (fileLayout).
type family struct {
	modelType string
	archs     []string // architectures[0] values; the first is written
	parse     func(f *fields, c *Config)
	write     func(c Config, m map[string]any)
	// fileName maps a parameter's Llama name to the name the family's
	// checkpoint uses; parameters mapped to the same name are stacked
	// along the rows in parameter order (fused projections). nil: the
	// Llama names.
	fileName func(c Config, name string) string
	// permuted reports whether a parameter's rows are stored in the
	// interleaved rotary order (ChatGLM's q and k), which the engine's
	// rotate-half RoPE reads after a permutation.
	permuted func(name string) bool
}

var families = []*family{
	{modelType: "llama", archs: []string{"LlamaForCausalLM"}, parse: parseLlama, write: writeLlama},
	{modelType: "mistral", archs: []string{"MistralForCausalLM"}, parse: parseLlama, write: writeLlama},
	{modelType: "qwen2", archs: []string{"Qwen2ForCausalLM"}, parse: parseLlama, write: writeLlama},
	{modelType: "qwen3", archs: []string{"Qwen3ForCausalLM"}, parse: parseLlama, write: writeLlama},
	{modelType: "gemma", archs: []string{"GemmaForCausalLM"}, parse: parseGemma, write: writeGemma},
	{modelType: "gemma2", archs: []string{"Gemma2ForCausalLM"}, parse: parseGemma2, write: writeGemma2, fileName: gemma2FileName},
	{modelType: "phi3", archs: []string{"Phi3ForCausalLM"}, parse: parsePhi3, write: writePhi3, fileName: phi3FileName},
	{modelType: "baichuan", archs: []string{"BaichuanForCausalLM"}, parse: parseBaichuan, write: writeBaichuan, fileName: baichuanFileName},
	{modelType: "chatglm", archs: []string{"ChatGLMModel", "ChatGLMForConditionalGeneration"}, parse: parseChatGLM, write: writeChatGLM,
		fileName: chatGLMFileName, permuted: chatGLMPermuted},
}

func familyOf(modelType string) *family {
	for _, f := range families {
		if f.modelType == modelType {
			return f
		}
	}
	return nil
}

func familyOfArch(arch string) *family {
	for _, f := range families {
		if slices.Contains(f.archs, arch) {
			return f
		}
	}
	return nil
}

func knownArchitectures() []string {
	var out []string
	for _, f := range families {
		out = append(out, f.archs...)
	}
	sort.Strings(out)
	return out
}

func knownModelTypes() []string {
	var out []string
	for _, f := range families {
		out = append(out, f.modelType)
	}
	sort.Strings(out)
	return out
}

// ModelTypes lists the model_type values lathe can load.
func ModelTypes() []string { return knownModelTypes() }

// --- Gemma ---

func parseGemma(f *fields, c *Config) {
	parseLlama(f, c)
	c.TieEmbeddings = f.bool("tie_word_embeddings", true)
	act := f.str("hidden_activation", "gelu_pytorch_tanh")
	if act != "gelu_pytorch_tanh" {
		f.fail("hidden_activation", "%q is not supported (only gelu_pytorch_tanh)", act)
	}
	if f.bool("attention_bias", false) {
		f.fail("attention_bias", "true is not supported for gemma")
	}
	c.Activation = "gelu_tanh"
	c.EmbedScale, c.NormOffset = true, true
}

func writeGemma(c Config, m map[string]any) {
	writeLlama(c, m)
	delete(m, "hidden_act")
	m["hidden_activation"] = "gelu_pytorch_tanh"
	m["attention_bias"] = false
}

// --- Gemma 2 ---

func parseGemma2(f *fields, c *Config) {
	parseGemma(f, c)
	c.PostNorms = true
	c.AttnSoftCap = f.float("attn_logit_softcapping", 0)
	c.FinalSoftCap = f.float("final_logit_softcapping", 0)
	c.QueryScale = f.float("query_pre_attn_scalar", float64(c.HeadDim))
	c.SlidingWindow = f.int("sliding_window", 0, false)
	c.WindowEvenLayers = true
	if c.AttnSoftCap < 0 || c.FinalSoftCap < 0 || !(c.QueryScale > 0) {
		f.fail("attn_logit_softcapping", "soft caps must be >= 0 and query_pre_attn_scalar > 0")
	}
}

func writeGemma2(c Config, m map[string]any) {
	writeGemma(c, m)
	nullable := func(v float64) any {
		if v == 0 {
			return nil
		}
		return v
	}
	m["attn_logit_softcapping"] = nullable(c.AttnSoftCap)
	m["final_logit_softcapping"] = nullable(c.FinalSoftCap)
	m["query_pre_attn_scalar"] = c.QueryScale
	if c.SlidingWindow > 0 {
		m["sliding_window"] = c.SlidingWindow
	}
}

// gemma2FileName: Gemma 2 has four norms per layer; the engine's
// post_attention_layernorm (before the MLP) is its pre_feedforward one.
func gemma2FileName(_ Config, name string) string {
	for _, r := range [][2]string{
		{".post_attention_layernorm.weight", ".pre_feedforward_layernorm.weight"},
		{".attn_output_norm.weight", ".post_attention_layernorm.weight"},
		{".mlp_output_norm.weight", ".post_feedforward_layernorm.weight"},
	} {
		if rest, ok := strings.CutSuffix(name, r[0]); ok {
			return rest + r[1]
		}
	}
	return name
}

// --- Phi-3 ---

func parsePhi3(f *fields, c *Config) {
	if p := f.float("partial_rotary_factor", 1); p != 1 {
		hd := f.int("head_dim", 0, false)
		if hd == 0 && f.int("num_attention_heads", 0, false) > 0 {
			hd = f.int("hidden_size", 0, false) / f.int("num_attention_heads", 0, false)
		}
		c.RotaryDim = int(float64(hd) * p)
	}
	parseLlama(f, c)
	c.SlidingWindow = f.int("sliding_window", 0, false)
	if f.bool("attention_bias", false) {
		f.fail("attention_bias", "true is not supported for phi3")
	}
}

func parseLongRoPE(f *fields, sub *fields, c *Config) {
	rot := c.rotaryDim()
	short, long := sub.floats("short_factor"), sub.floats("long_factor")
	if sub.err != nil {
		return
	}
	if len(short) != rot/2 || len(long) != rot/2 {
		f.fail("rope_scaling", "longrope has %d short and %d long factors, want %d each (half the rotary dims)", len(short), len(long), rot/2)
		return
	}
	if sub.has("short_mscale") || sub.has("long_mscale") {
		f.fail("rope_scaling", "short_mscale/long_mscale are not supported")
		return
	}
	orig := f.int("original_max_position_embeddings", 0, true)
	if orig <= 0 {
		f.fail("original_max_position_embeddings", "want > 0 with longrope")
		return
	}
	af := sub.float("attention_factor", 0)
	if af == 0 {
		af = 1
		if factor := float64(c.MaxPositions) / float64(orig); factor > 1 {
			af = math.Sqrt(1 + math.Log(factor)/math.Log(float64(orig)))
		}
	}
	if c.RotaryDim != 0 && c.RotaryDim != c.HeadDim && af != 1 {
		f.fail("rope_scaling", "longrope with a partial rotary factor is not supported")
		return
	}
	c.RopeExtFactors, c.RopeLongFactors = short, long
	c.RopeAttnFactor, c.RopeOriginalMax = af, orig
}

func writePhi3(c Config, m map[string]any) {
	writeLlama(c, m)
	if c.SlidingWindow > 0 {
		m["sliding_window"] = c.SlidingWindow
	}
	if c.RotaryDim != 0 && c.RotaryDim != c.HeadDim {
		m["partial_rotary_factor"] = float64(c.RotaryDim) / float64(c.HeadDim)
	}
	m["attention_bias"] = false
}

func phi3FileName(_ Config, name string) string {
	for _, r := range [][2]string{
		{"self_attn.q_proj.", "self_attn.qkv_proj."}, {"self_attn.k_proj.", "self_attn.qkv_proj."}, {"self_attn.v_proj.", "self_attn.qkv_proj."},
		{"mlp.gate_proj.", "mlp.gate_up_proj."}, {"mlp.up_proj.", "mlp.gate_up_proj."},
	} {
		if strings.Contains(name, r[0]) {
			return strings.Replace(name, r[0], r[1], 1)
		}
	}
	return name
}

// --- Baichuan 2 ---

func parseBaichuan(f *fields, c *Config) {
	c.VocabSize = f.int("vocab_size", 0, true)
	c.Hidden = f.int("hidden_size", 0, true)
	c.Intermediate = f.int("intermediate_size", 0, true)
	c.Layers = f.int("num_hidden_layers", 0, true)
	c.Heads = f.int("num_attention_heads", 0, true)
	c.KVHeads = c.Heads
	if c.Heads > 0 {
		c.HeadDim = c.Hidden / c.Heads
	}
	c.RMSNormEps = f.float("rms_norm_eps", 1e-6)
	c.RopeTheta = 10000 // fixed in Baichuan 2's modelling code
	c.Activation = "silu"
	c.NormHead = true
	if act := f.str("hidden_act", "silu"); act != "silu" {
		f.fail("hidden_act", "%v is not supported (only silu)", act)
	}
	if f.bool("tie_word_embeddings", false) {
		f.fail("tie_word_embeddings", "true is not supported for baichuan (its head is normalised)")
	}
	if z := f.float("z_loss_weight", 0); z != 0 {
		f.fail("z_loss_weight", "%v is not supported (only 0, as the released models)", z)
	}
	if !f.has("max_position_embeddings") {
		// Baichuan 2 13B: ALiBi position biases instead of rotary
		// embeddings; its config has model_max_length only.
		c.ALiBi = true
		c.MaxPositions = f.int("model_max_length", 0, false)
		return
	}
	c.MaxPositions = f.int("max_position_embeddings", 0, false)
}

func writeBaichuan(c Config, m map[string]any) {
	m["vocab_size"] = c.VocabSize
	m["hidden_size"] = c.Hidden
	m["intermediate_size"] = c.Intermediate
	m["num_hidden_layers"] = c.Layers
	m["num_attention_heads"] = c.Heads
	m["rms_norm_eps"] = c.RMSNormEps
	m["hidden_act"] = "silu"
	m["tie_word_embeddings"] = false
	if c.ALiBi {
		delete(m, "max_position_embeddings")
		m["model_max_length"] = c.MaxPositions
	} else {
		m["max_position_embeddings"] = c.MaxPositions
	}
}

func baichuanFileName(_ Config, name string) string {
	for _, p := range []string{"self_attn.q_proj.", "self_attn.k_proj.", "self_attn.v_proj."} {
		if strings.Contains(name, p) {
			return strings.Replace(name, p, "self_attn.W_pack.", 1)
		}
	}
	return name
}

// --- ChatGLM 3 / GLM-4 (THUDM's ChatGLMModel code) ---

func parseChatGLM(f *fields, c *Config) {
	c.VocabSize = f.int("padded_vocab_size", 0, true)
	c.Hidden = f.int("hidden_size", 0, true)
	c.Intermediate = f.int("ffn_hidden_size", 0, true)
	c.Layers = f.int("num_layers", 0, true)
	c.Heads = f.int("num_attention_heads", 0, true)
	hd := 0
	if c.Heads > 0 {
		hd = c.Hidden / c.Heads
	}
	c.HeadDim = f.int("kv_channels", hd, false)
	c.KVHeads = c.Heads
	if f.bool("multi_query_attention", false) {
		c.KVHeads = f.int("multi_query_group_num", 1, false)
	}
	c.RMSNormEps = f.float("layernorm_epsilon", 1e-5)
	c.MaxPositions = f.int("seq_length", 0, false)
	c.RopeTheta = 10000 * f.float("rope_ratio", 1)
	c.RotaryDim = c.HeadDim / 2
	c.QKVBias = f.bool("add_qkv_bias", false)
	c.OBias = f.bool("add_bias_linear", false)
	c.MLPBias = c.OBias
	c.Activation = "silu"
	for _, want := range []struct {
		field string
		v     bool
	}{{"rmsnorm", true}, {"apply_residual_connection_post_layernorm", false}, {"post_layer_norm", true}, {"original_rope", true}} {
		if got := f.bool(want.field, want.v); got != want.v {
			f.fail(want.field, "%v is not supported (only %v, as ChatGLM 3 and GLM-4)", got, want.v)
		}
	}
	if c.HeadDim%4 != 0 {
		f.fail("kv_channels", "%d: ChatGLM's rotary embedding needs a multiple of 4", c.HeadDim)
	}
}

func writeChatGLM(c Config, m map[string]any) {
	m["padded_vocab_size"] = c.VocabSize
	m["hidden_size"] = c.Hidden
	m["ffn_hidden_size"] = c.Intermediate
	m["num_layers"] = c.Layers
	m["num_attention_heads"] = c.Heads
	m["kv_channels"] = c.HeadDim
	m["multi_query_attention"] = c.KVHeads != c.Heads
	m["multi_query_group_num"] = c.KVHeads
	m["layernorm_epsilon"] = c.RMSNormEps
	if c.MaxPositions > 0 {
		m["seq_length"] = c.MaxPositions
	}
	if c.RopeTheta != 10000 {
		m["rope_ratio"] = c.RopeTheta / 10000
	}
	m["add_qkv_bias"] = c.QKVBias
	m["add_bias_linear"] = c.OBias
	m["rmsnorm"] = true
	m["apply_residual_connection_post_layernorm"] = false
	m["post_layer_norm"] = true
	m["original_rope"] = true
}

func chatGLMFileName(_ Config, name string) string {
	switch name {
	case "model.embed_tokens.weight":
		return "transformer.embedding.word_embeddings.weight"
	case "model.norm.weight":
		return "transformer.encoder.final_layernorm.weight"
	case "lm_head.weight":
		return "transformer.output_layer.weight"
	}
	rest, ok := strings.CutPrefix(name, "model.layers.")
	if !ok {
		return name
	}
	dot := strings.IndexByte(rest, '.')
	layer, part := rest[:dot], rest[dot+1:]
	for _, r := range [][2]string{
		{"self_attn.q_proj.", "self_attention.query_key_value."}, {"self_attn.k_proj.", "self_attention.query_key_value."},
		{"self_attn.v_proj.", "self_attention.query_key_value."}, {"self_attn.o_proj.", "self_attention.dense."},
		{"mlp.gate_proj.", "mlp.dense_h_to_4h."}, {"mlp.up_proj.", "mlp.dense_h_to_4h."}, {"mlp.down_proj.", "mlp.dense_4h_to_h."},
	} {
		if strings.HasPrefix(part, r[0]) {
			part = r[1] + part[len(r[0]):]
			break
		}
	}
	return "transformer.encoder.layers." + layer + "." + part
}

func chatGLMPermuted(name string) bool {
	// Rows are output dims for weights, biases and LoRA B, not for LoRA A.
	return !strings.HasSuffix(name, LoRAASuffix) &&
		(strings.Contains(name, ".self_attn.q_proj.") || strings.Contains(name, ".self_attn.k_proj."))
}

// --- checkpoint layout ---

// fileTensor is one tensor of a checkpoint: the parameters it holds,
// stacked along the rows.
type fileTensor struct {
	name  string
	parts []*Param
	// permute[i]: part i's rows are in the interleaved rotary order.
	permute []bool
}

// rows is the leading dimension of p (1-D parameters: their length).
func rows(p *Param) int { return p.Shape[0] }

// shape is the stacked tensor's shape.
func (ft fileTensor) shape() []int {
	s := slices.Clone(ft.parts[0].Shape)
	s[0] = 0
	for _, p := range ft.parts {
		s[0] += rows(p)
	}
	return s
}

// fileLayout lists the checkpoint tensors holding the base parameters
// (adapters and the value head excluded), in parameter order.
func (m *Model) fileLayout() []fileTensor {
	return m.layoutOf(func(p *Param) bool { return !m.isAdapter(p) })
}

// adapterLayout lists the LoRA tensors as the family's PEFT adapter holds
// them (in-model names of its modules; fused modules' B stacked).
func (m *Model) adapterLayout() []fileTensor {
	return m.layoutOf(func(p *Param) bool {
		return strings.HasSuffix(p.Name, LoRAASuffix) || strings.HasSuffix(p.Name, LoRABSuffix)
	})
}

func (m *Model) layoutOf(keep func(*Param) bool) []fileTensor {
	fam := familyOf(m.Cfg.ModelType)
	var out []fileTensor
	index := map[string]int{}
	for _, p := range m.Params {
		if !keep(p) {
			continue
		}
		name := p.Name
		if fam != nil && fam.fileName != nil {
			name = fam.fileName(m.Cfg, p.Name)
		}
		perm := fam != nil && fam.permuted != nil && fam.permuted(p.Name)
		if i, ok := index[name]; ok {
			out[i].parts = append(out[i].parts, p)
			out[i].permute = append(out[i].permute, perm)
			continue
		}
		index[name] = len(out)
		out = append(out, fileTensor{name: name, parts: []*Param{p}, permute: []bool{perm}})
	}
	return out
}

// FileName returns the name a parameter has in the model's checkpoint
// files (its family's naming), and whether it is stored fused with
// others, stacked along the rows.
func (m *Model) FileName(name string) (file string, fused bool) {
	for _, ft := range m.fileLayout() {
		for _, p := range ft.parts {
			if p.Name == name {
				return ft.name, len(ft.parts) > 1
			}
		}
	}
	return name, false
}

// rotaryPermutation returns, for a part of heads·headDim rows, the
// checkpoint row each engine row comes from: within the first rot dims of
// every head, the checkpoint's interleaved pairs (2i, 2i+1) become the
// engine's rotate-half pairs (i, i+rot/2).
func rotaryPermutation(n, headDim, rot int) []int {
	perm := make([]int, n)
	for r := range perm {
		h, d := r/headDim, r%headDim
		switch {
		case d < rot/2:
			d = 2 * d
		case d < rot:
			d = 2*(d-rot/2) + 1
		}
		perm[r] = h*headDim + d
	}
	return perm
}

// splitFile turns a checkpoint tensor's values into its parts' values.
func (m *Model) splitFile(ft fileTensor, v []float32) ([][]float32, error) {
	out := make([][]float32, len(ft.parts))
	off := 0
	for i, p := range ft.parts {
		n := p.Len()
		if off+n > len(v) {
			return nil, fmt.Errorf("tensor %q is too short for its parts", ft.name)
		}
		part := v[off : off+n]
		off += n
		if ft.permute[i] {
			part = permuteRows(part, rows(p), m.rotaryPerm(rows(p)), false)
		}
		out[i] = part
	}
	return out, nil
}

// joinFile stacks the parts' values into the checkpoint tensor's.
func (m *Model) joinFile(ft fileTensor, parts [][]float32) []float32 {
	if len(parts) == 1 && !ft.permute[0] {
		return parts[0]
	}
	var out []float32
	for i, p := range ft.parts {
		part := parts[i]
		if ft.permute[i] {
			part = permuteRows(part, rows(p), m.rotaryPerm(rows(p)), true)
		}
		out = append(out, part...)
	}
	return out
}

func (m *Model) rotaryPerm(n int) []int {
	return rotaryPermutation(n, m.Cfg.HeadDim, m.Cfg.rotaryDim())
}

// permuteRows reorders the rows of v ([n, len(v)/n]): engine row r is
// checkpoint row perm[r]. Reading a checkpoint (inverse false) gathers,
// writing one (inverse true) scatters.
func permuteRows(v []float32, n int, perm []int, inverse bool) []float32 {
	cols := len(v) / n
	out := make([]float32, len(v))
	for r, src := range perm {
		if inverse {
			copy(out[src*cols:(src+1)*cols], v[r*cols:(r+1)*cols])
		} else {
			copy(out[r*cols:(r+1)*cols], v[src*cols:(src+1)*cols])
		}
	}
	return out
}

// --- LoRA on a family's modules ---

// linearFileModule is the module kind (last path component) under which
// the family's checkpoint holds canonical linear i; fused projections
// share one (W_pack, qkv_proj, query_key_value, ...).
func (c Config) linearFileModule(i int) string {
	name := "model.layers.0." + linearKinds[i].path + ".weight"
	if fam := familyOf(c.ModelType); fam != nil && fam.fileName != nil {
		name = fam.fileName(c, name)
	}
	name = strings.TrimSuffix(name, ".weight")
	return name[strings.LastIndexByte(name, '.')+1:]
}

// fusedLead returns, for each canonical linear, the first linear stored in
// the same checkpoint tensor (itself when not fused). LoRA adapters on a
// fused module share that linear's A matrix, as PEFT's single adapter on
// the fused module does.
func (c Config) fusedLead() [numLinear]int {
	var lead [numLinear]int
	for i := range numLinear {
		lead[i] = i
		for j := range i {
			if c.linearFileModule(j) == c.linearFileModule(i) {
				lead[i] = j
				break
			}
		}
	}
	return lead
}

// AdapterKinds returns the LoRA target kinds of a model of cfg: its
// family's module names (q_proj ... down_proj for Llama; W_pack for
// Baichuan; qkv_proj, gate_up_proj for Phi-3; query_key_value, dense,
// dense_h_to_4h, dense_4h_to_h for ChatGLM), what "all" expands to.
func AdapterKinds(cfg Config) []string {
	var out []string
	for i := range numLinear {
		if k := cfg.linearFileModule(i); !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// AdapterModules returns the engine's module paths (the Llama names) that
// LoRA on the given kinds of AdapterKinds adapts in every layer; a fused
// kind stands for all the projections it holds.
func AdapterModules(cfg Config, kinds []string) []string {
	var out []string
	for l := range cfg.Layers {
		for i, k := range linearKinds {
			if slices.Contains(kinds, cfg.linearFileModule(i)) {
				out = append(out, fmt.Sprintf("model.layers.%d.%s", l, k.path))
			}
		}
	}
	return out
}

// AdapterLinearKinds maps AdapterKinds kinds to the engine's linear kinds
// (q_proj ... down_proj) they cover.
func AdapterLinearKinds(cfg Config, kinds []string) []string {
	var out []string
	for i, k := range linearKinds {
		if slices.Contains(kinds, cfg.linearFileModule(i)) {
			out = append(out, k.kind)
		}
	}
	return out
}

// NewConfig returns the config of a model of the given family with the
// shape of c (its Llama-named fields: sizes, heads, rope_theta, eps,
// tied embeddings, max positions), the family's own switches set as its
// released models have them (ChatGLM: q/k/v bias and half-head rotary;
// Gemma: GeGLU, scaled embeddings, 1 + w norms; Baichuan 2: normalised
// head; Gemma 2: soft caps 50 and 30, a 4096-token window on even
// layers), as a config.json of that family would give. Special token ids
// are not set.
func NewConfig(modelType string, c Config) (Config, error) {
	fam := familyOf(modelType)
	if fam == nil {
		return Config{}, fmt.Errorf("llama: model_type %q is not supported (want one of %s)", modelType, strings.Join(knownModelTypes(), ", "))
	}
	c.ModelType, c.Architecture, c.raw = modelType, fam.archs[0], nil
	c.BOSTokenID, c.EOSTokenIDs = -1, nil
	switch modelType {
	case "chatglm":
		c.QKVBias = true
	case "gemma2": // as Gemma 2 2B/9B are released
		c.QueryScale, c.AttnSoftCap, c.FinalSoftCap, c.SlidingWindow = float64(c.HeadDim), 50, 30, 4096
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	b, err := c.JSON("float32")
	if err != nil {
		return Config{}, err
	}
	return ParseConfig(b)
}
