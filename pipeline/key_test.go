package pipeline

import (
	"strings"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

type fakeKeyContext struct{}

func (fakeKeyContext) BaseDir() string                   { return "/nowhere" }
func (fakeKeyContext) HashPath(p string) (string, error) { return "sha256:" + p, nil }

func TestStageKeyText(t *testing.T) {
	kind := &stage.Kind{
		Name:        "train",
		Version:     "7",
		NonSemantic: []string{"logging_steps"},
		KeyLines: func(kc stage.KeyContext, args cty.Value) ([]stage.KeyLine, error) {
			return []stage.KeyLine{{Label: "input data", Value: "sha256:abc"}}, nil
		},
	}
	inst := &config.Instance{Addr: "train.x", Kind: kind}
	args := cty.ObjectVal(map[string]cty.Value{
		"learning_rate": cty.NumberFloatVal(5e-5),
		"epochs":        cty.NumberIntVal(3),
		"logging_steps": cty.NumberIntVal(10),
		"lora": cty.ObjectVal(map[string]cty.Value{
			"rank":   cty.NumberIntVal(8),
			"target": cty.ListVal([]cty.Value{cty.StringVal("q_proj"), cty.StringVal("v_proj")}),
		}),
		"model": stage.ArtifactVal(stage.Artifact{Kind: "model", Digest: "sha256:0123", Path: "/store/x"}),
		"note":  cty.NullVal(cty.String),
	})
	key, err := stageKey(inst, args, fakeKeyContext{})
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join([]string{
		"lathe-key v1",
		"kind train",
		"kind-version 7",
		"engine " + EngineVersion,
		"arg epochs = 3",
		"arg learning_rate = 5e-05",
		"arg lora.rank = 8",
		`arg lora.target = ["q_proj","v_proj"]`,
		"arg model = artifact(model) sha256:0123",
		"arg note = null",
		"input data = sha256:abc",
	}, "\n") + "\n"
	if key.Text != want {
		t.Errorf("key text:\n%s\nwant:\n%s", key.Text, want)
	}

	// The artifact's path and the non-semantic argument do not change the key.
	args2 := cty.ObjectVal(map[string]cty.Value{
		"learning_rate": cty.NumberFloatVal(5e-5),
		"epochs":        cty.NumberIntVal(3),
		"logging_steps": cty.NumberIntVal(100),
		"lora":          args.GetAttr("lora"),
		"model":         stage.ArtifactVal(stage.Artifact{Kind: "model", Digest: "sha256:0123", Path: "/elsewhere"}),
		"note":          cty.NullVal(cty.String),
	})
	key2, err := stageKey(inst, args2, fakeKeyContext{})
	if err != nil {
		t.Fatal(err)
	}
	if key2.Sum != key.Sum {
		t.Errorf("key changed with a path or a logging option:\n%s", key2.Text)
	}
}

func TestChangedLabels(t *testing.T) {
	old := "lathe-key v1\nkind exec\narg command = [\"a\"]\narg inputs.prev = artifact(files) sha256:1\ninput local = sha256:x\n"
	cur := "lathe-key v1\nkind exec\narg command = [\"b\"]\narg inputs.prev = artifact(files) sha256:2\ninput local = sha256:x\n"
	got := strings.Join(changedLabels(old, cur), ", ")
	if want := "command, inputs.prev (upstream result)"; got != want {
		t.Errorf("changedLabels = %q, want %q", got, want)
	}
}
