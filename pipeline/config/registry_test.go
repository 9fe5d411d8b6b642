package config

import (
	"context"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/zclconf/go-cty/cty"
)

func noRun(context.Context, *stage.Request) (*stage.Result, error) {
	return nil, fmt.Errorf("test kinds do not run")
}

// execKind is like the real exec kind: a command, arbitrary inputs, and one
// "files" artifact per name in outputs.
var execKind = &stage.Kind{
	Name:    "exec",
	Version: "test-1",
	Schema: hcldec.ObjectSpec{
		"command": &hcldec.AttrSpec{Name: "command", Type: cty.List(cty.String), Required: true},
		"inputs":  &hcldec.AttrSpec{Name: "inputs", Type: cty.DynamicPseudoType},
		"outputs": &hcldec.AttrSpec{Name: "outputs", Type: cty.List(cty.String)},
	},
	Outputs: func(args cty.Value) (map[string]stage.Output, hcl.Diagnostics) {
		outs := args.GetAttr("outputs")
		if !outs.IsWhollyKnown() {
			return nil, hcl.Diagnostics{{Severity: hcl.DiagError, Summary: "Unknown outputs", Detail: "The outputs argument of an exec stage must be known before running."}}
		}
		m := map[string]stage.Output{}
		if outs.IsNull() {
			return m, nil
		}
		for it := outs.ElementIterator(); it.Next(); {
			_, v := it.Element()
			m[v.AsString()] = stage.Output{Type: stage.ArtifactType(stage.FilesArtifact)}
		}
		return m, nil
	},
	Run: noRun,
}

var methods = map[string]bool{"full": true, "freeze": true, "lora": true, "qlora": true}

var trainKind = &stage.Kind{
	Name:    "train",
	Version: "test-1",
	Schema: hcldec.ObjectSpec{
		"model":         &hcldec.AttrSpec{Name: "model", Type: stage.ArtifactType(stage.ModelArtifact), Required: true},
		"learning_rate": &hcldec.AttrSpec{Name: "learning_rate", Type: cty.Number},
		"method": &hcldec.ValidateSpec{
			Wrapped: &hcldec.AttrSpec{Name: "method", Type: cty.String},
			Func: func(v cty.Value) hcl.Diagnostics {
				if !v.IsKnown() || v.IsNull() || methods[v.AsString()] {
					return nil
				}
				return hcl.Diagnostics{{
					Severity: hcl.DiagError,
					Summary:  "Invalid training method",
					Detail:   fmt.Sprintf("The method %q is not one of full, freeze, lora and qlora.", v.AsString()),
				}}
			},
		},
		"lora": &hcldec.BlockSpec{TypeName: "lora", Nested: hcldec.ObjectSpec{
			"rank":  &hcldec.AttrSpec{Name: "rank", Type: cty.Number, Required: true},
			"alpha": &hcldec.AttrSpec{Name: "alpha", Type: cty.Number},
		}},
	},
	Outputs: stage.FixedOutputs(map[string]stage.Output{
		"model":   {Type: stage.ArtifactType(stage.ModelArtifact)},
		"metrics": {Type: cty.Map(cty.Number)},
	}),
	Run: noRun,
}

// sourceKind produces a model from a name, like download.
var sourceKind = &stage.Kind{
	Name:    "model-source",
	Version: "test-1",
	Schema: hcldec.ObjectSpec{
		"repo": &hcldec.AttrSpec{Name: "repo", Type: cty.String, Required: true},
	},
	Outputs: stage.FixedOutputs(map[string]stage.Output{
		"model": {Type: stage.ArtifactType(stage.ModelArtifact)},
	}),
	Run: noRun,
}

func testRegistry() *stage.Registry { return stage.NewRegistry(execKind, trainKind, sourceKind) }
