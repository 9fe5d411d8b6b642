// Package stages assembles the registry of every stage kind lathe ships.
// Each kind lives in its own package below this one; this package only lists
// them. The pipeline engine receives the registry and never imports a kind.
package stages

import (
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/lathe-ml/lathe/stages/download"
	"github.com/lathe-ml/lathe/stages/dpo"
	"github.com/lathe-ml/lathe/stages/evaluate"
	"github.com/lathe-ml/lathe/stages/exec"
	"github.com/lathe-ml/lathe/stages/export"
	"github.com/lathe-ml/lathe/stages/ppo"
	"github.com/lathe-ml/lathe/stages/pretrain"
	"github.com/lathe-ml/lathe/stages/rewardmodel"
	"github.com/lathe-ml/lathe/stages/sft"
	"github.com/lathe-ml/lathe/stages/tokenize"
)

// Registry returns a registry holding every built-in stage kind.
func Registry() *stage.Registry {
	return stage.NewRegistry(
		download.Kind(),
		dpo.Kind(),
		evaluate.Kind(),
		exec.Kind(),
		export.Kind(),
		ppo.Kind(),
		pretrain.Kind(),
		rewardmodel.Kind(),
		sft.Kind(),
		tokenize.Kind(),
	)
}
