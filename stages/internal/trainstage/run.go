package trainstage

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/internal/llama"
	"github.com/lathe-ml/lathe/internal/train"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// FineTune describes a fine-tuning kind to Run.
type FineTune struct {
	// Kind names the stage kind in errors.
	Kind string
	// ValueHead adds a value head (reward models).
	ValueHead bool
	// Pairs opens the data as preference pairs.
	Pairs bool
	// Perplexity reports exp(eval loss) (language-modelling losses).
	Perplexity bool
	// Objectives builds the training and validation objectives (eval may
	// be nil when evalSet is nil) and an optional step to run before
	// training (e.g. reference log-probs).
	Objectives func(args cty.Value, m *llama.Model, trainSet, evalSet train.Samples, maxSeqLen int) (obj, eval train.Objective, prepare func() error, err error)
	// Extra adds kind-specific entries to the report.
	Extra func(args cty.Value) map[string]any
}

// Check validates the arguments every fine-tuning kind shares.
func Check(args cty.Value) hcl.Diagnostics {
	if d := CheckMethod(args); d.HasErrors() {
		return d
	}
	return CheckLoop(args)
}

// Run is the body of a fine-tuning kind: load the starting model with the
// method applied, open the data, train the kind's objective with the loop
// arguments (checkpointing into the request's directory, so an interrupted
// run resumes), and write the adapter and/or model and the report.
func Run(ctx context.Context, req *stage.Request, ft FineTune) (*stage.Result, error) {
	args := req.Args
	if d := Check(args); d.HasErrors() {
		return nil, d
	}
	fail := func(err error) (*stage.Result, error) { return nil, fmt.Errorf("%s: %w", ft.Kind, err) }
	rep := Reporter(req)
	cfg, err := llama.LoadConfig(filepath.Join(ArtifactPath(args.GetAttr("model")), "config.json"))
	if err != nil {
		return fail(err)
	}
	be, freeBackend, err := Backend(req)
	if err != nil {
		return fail(err)
	}
	defer freeBackend()
	release, err := Guard(req, GuardInput{Config: cfg, Args: args, ValueHead: ft.ValueHead, Pairs: ft.Pairs, Backend: be})
	if err != nil {
		return fail(err)
	}
	defer release()
	ld, err := Load(args, be, ft.ValueHead, req.ScratchDir)
	if err != nil {
		return fail(err)
	}
	m := ld.Model
	defer m.Free()
	nb, nv := m.NF4Bytes()
	rep.Logf("model: %s, %d parameters, %d trainable (method %s)", m.Cfg.Architecture, m.NumParams(), m.NumTrainable(), ld.Method)
	if nv > 0 {
		rep.Logf("nf4 base: %d weights in %.1f MiB (%.3f× their f32 size)", nv, float64(nb)/(1<<20), float64(nb)/(4*float64(nv)))
	}
	open := train.OpenDataset
	if ft.Pairs {
		open = train.OpenPairs
	}
	trainSet, err := open(ArtifactPath(args.GetAttr("data")))
	if err != nil {
		return fail(err)
	}
	defer trainSet.Close()
	var evalSet train.Samples
	if v := args.GetAttr("validation"); !v.IsNull() {
		ds, err := open(ArtifactPath(v))
		if err != nil {
			return fail(err)
		}
		defer ds.Close()
		if ds.Len() > 0 {
			evalSet = ds
		}
	}
	for _, s := range []train.Samples{trainSet, evalSet} {
		if err := CheckVocab(s, m.Cfg.VocabSize); err != nil {
			return fail(err)
		}
	}
	m.SetRecompute(args.GetAttr("activation_recompute").True())
	tr := &train.Trainer{Model: m, Cfg: LoopConfig(args, req.CheckpointDir, defaultEpochs)}
	Hooks(tr, rep)
	maxSeq := tr.Cfg.MaxSeqLen
	if maxSeq <= 0 {
		maxSeq = m.Cfg.MaxPositions
	}
	obj, evalObj, prepare, err := ft.Objectives(args, m, trainSet, evalSet, maxSeq)
	if err != nil {
		return fail(err)
	}
	tr.Objective, tr.EvalObjective = obj, evalObj
	if prepare != nil {
		if err := prepare(); err != nil {
			return fail(err)
		}
	}
	res, err := tr.Run(ctx)
	if err != nil {
		return fail(err)
	}
	h := res.History
	rep.Logf("trained %d steps: loss %.4f -> %.4f", res.Steps, h.Train[0].Loss, h.Train[len(h.Train)-1].Loss)
	outs := ModelOutputs(args, "", "", "")
	if _, ok := outs["adapter"]; ok {
		lc := *ld.LoRA
		lc.BaseModel = baseModelName(args)
		if err := WriteAdapter(req.OutputDir("adapter"), m, lc, ld.BaseDir); err != nil {
			return fail(err)
		}
	}
	if _, ok := outs["model"]; ok {
		dir := req.OutputDir("model")
		if err := WriteModel(dir, m, ld.BaseDir, nil, nil); err != nil {
			return fail(err)
		}
		if err := WriteValueHead(dir, m); err != nil {
			return fail(err)
		}
	}
	var extra map[string]any
	if ft.Extra != nil {
		extra = ft.Extra(args)
	}
	if err := WriteReport(req.OutputDir("report"), res, ft.Perplexity, extra); err != nil {
		return fail(err)
	}
	return &stage.Result{}, nil
}

// baseModelName is base_model_name_or_path for adapter_config.json: the
// base_model_name argument, or the base model artifact's digest (never a
// local path, which would make the artifact differ between machines).
func baseModelName(args cty.Value) string {
	if v := args.GetAttr("base_model_name"); !v.IsNull() {
		return v.AsString()
	}
	a, _ := stage.ArtifactOf(args.GetAttr("model"))
	return "lathe-artifact:" + a.Digest
}

// KindSpec describes a fine-tuning stage kind for NewKind.
type KindSpec struct {
	Name, Version, Summary string
	// LR and Batch are the kind's default learning rate and batch size.
	LR    float64
	Batch int64
	// Model, Adapter and Report summarise the outputs.
	Model, Adapter, Report string
	// Extra are the kind's own arguments; Check validates them (may be nil).
	Extra hcldec.ObjectSpec
	Check func(args cty.Value) hcl.Diagnostics
	// Run is what the stage trains (FineTune.Kind defaults to Name).
	Run FineTune
}

// NewKind builds a fine-tuning kind: data and validation, the loop and
// method arguments, the kind's own, outputs by method, and Run.
func NewKind(s KindSpec) *stage.Kind {
	schema := hcldec.ObjectSpec{
		"data":       Artifact("data", true, stage.DatasetArtifact),
		"validation": Artifact("validation", false, stage.DatasetArtifact),
	}
	for k, v := range s.Extra {
		schema[k] = v
	}
	AddLoop(schema, s.LR, s.Batch)
	AddMethod(schema)
	ft := s.Run
	if ft.Kind == "" {
		ft.Kind = s.Name
	}
	return &stage.Kind{
		Name:        s.Name,
		Version:     s.Version,
		Summary:     s.Summary,
		Schema:      schema,
		NonSemantic: LoopNonSemantic,
		Outputs: func(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
			d := Check(args)
			if !d.HasErrors() && s.Check != nil {
				d = s.Check(args)
			}
			return ModelOutputs(args, s.Model, s.Adapter, s.Report), d
		},
		KeyLines: KeyLines,
		Estimate: Estimate(ft.ValueHead, ft.Pairs),
		Resolve:  Resolver(ConfigFromModel, ft.ValueHead, ft.Pairs),
		Run: func(ctx context.Context, req *stage.Request) (*stage.Result, error) {
			if s.Check != nil {
				if d := s.Check(req.Args); d.HasErrors() {
					return nil, d
				}
			}
			return Run(ctx, req, ft)
		},
	}
}
