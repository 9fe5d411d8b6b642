package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/lathe-ml/lathe/pipeline/stage"
	"github.com/zclconf/go-cty/cty"
)

func mustResolve(t *testing.T, path string, in Inputs) *Resolved {
	t.Helper()
	p, diags := Load(path)
	if diags.HasErrors() {
		t.Fatalf("Load: %s", render(p, diags))
	}
	r, diags := p.Resolve(testRegistry(), in)
	if diags.HasErrors() {
		t.Fatalf("Resolve: %s", render(p, diags))
	}
	return r
}

func render(p *Pipeline, diags hcl.Diagnostics) string {
	var b strings.Builder
	_ = p.WriteDiagnostics(&b, diags, 0, false)
	return b.String()
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

const precedencePipeline = `
variable "s" { default = "default" }
variable "n" {
  type    = number
  default = 1
}
variable "opts" {
  type    = object({ lr = number, wd = optional(number, 0.5), tags = optional(list(string), []) })
  default = { lr = 0.1 }
}
stage "model-source" "m" {
  repo = "${var.s}-${var.n}-${var.opts.lr}-${var.opts.wd}-${length(var.opts.tags)}"
}
`

func TestVariablePrecedence(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"main.hcl":      precedencePipeline,
		"one.lathevars": "s = \"file1\"\nn = 3\n",
		"two.json":      `{"n": 4, "opts": {"lr": 0.2, "tags": ["a"]}}`,
	})
	one, two := filepath.Join(dir, "one.lathevars"), filepath.Join(dir, "two.json")
	env := []string{"HOME=/x", "LATHE_VAR_s=env", "LATHE_VAR_n=2", "LATHE_VAR_undeclared=ignored"}
	tests := []struct {
		name string
		in   Inputs
		want string
	}{
		{"defaults", Inputs{}, "default-1-0.1-0.5-0"},
		{"env", Inputs{Env: env}, "env-2-0.1-0.5-0"},
		{"env object", Inputs{Env: []string{"LATHE_VAR_opts={lr=9, wd=1}"}}, "default-1-9-1-0"},
		{"var-file over env", Inputs{Env: env, VarFiles: []string{one}}, "file1-3-0.1-0.5-0"},
		{"later var-file wins", Inputs{Env: env, VarFiles: []string{one, two}}, "file1-4-0.2-0.5-1"},
		{"-var over all", Inputs{Env: env, VarFiles: []string{one, two}, Vars: []string{"n=5", "s=a=b", "opts={ lr = 1e-3 }"}}, "a=b-5-0.001-0.5-0"},
		{"later -var wins", Inputs{Vars: []string{"n=5", "n=6"}}, "default-6-0.1-0.5-0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustResolve(t, filepath.Join(dir, "main.hcl"), tt.in)
			got := r.Instance("model-source.m").StaticArgs.GetAttr("repo").AsString()
			if got != tt.want {
				t.Errorf("repo = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOptionalAttributes(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": precedencePipeline})
	r := mustResolve(t, dir, Inputs{Vars: []string{"opts={lr=2}"}})
	opts := r.Variables["opts"]
	if got := opts.GetAttr("wd"); !got.RawEquals(cty.NumberFloatVal(0.5)) {
		t.Errorf("opts.wd = %#v, want 0.5", got)
	}
	if got := opts.GetAttr("tags"); !got.RawEquals(cty.ListValEmpty(cty.String)) {
		t.Errorf("opts.tags = %#v, want []", got)
	}
	if got := opts.GetAttr("lr"); !got.RawEquals(cty.NumberIntVal(2)) {
		t.Errorf("opts.lr = %#v, want 2", got)
	}
}

func addrs(insts []*Instance) []string {
	var out []string
	for _, i := range insts {
		out = append(out, i.Addr)
	}
	return out
}

func TestHappyPipeline(t *testing.T) {
	r := mustResolve(t, "testdata/happy", Inputs{Vars: []string{"opts={lr=0.01}"}})

	wantOrder := []string{
		`exec.prep`, `model-source.base`, `train.sweep["r16"]`, `train.sweep["r8"]`,
		`exec.eval["r16"]`, `exec.eval["r8"]`, `exec.lang["en"]`, `exec.lang["fr"]`, `exec.pick`,
	}
	if got := addrs(r.Instances); !slices.Equal(got, wantOrder) {
		t.Fatalf("order = %q\nwant    %q", got, wantOrder)
	}
	wantDeps := map[string][]string{
		`exec.prep`:          nil,
		`model-source.base`:  nil,
		`train.sweep["r8"]`:  {`model-source.base`},
		`exec.eval["r8"]`:    {`exec.prep`, `train.sweep["r16"]`, `train.sweep["r8"]`},
		`exec.lang["fr"]`:    nil,
		`exec.pick`:          {`train.sweep["r16"]`, `train.sweep["r8"]`, `exec.eval["r16"]`, `exec.eval["r8"]`},
		`train.sweep["r16"]`: {`model-source.base`},
	}
	for addr, want := range wantDeps {
		inst := r.Instance(addr)
		if inst == nil {
			t.Fatalf("no instance %s", addr)
		}
		if got := addrs(inst.Deps); !slices.Equal(got, want) {
			t.Errorf("%s deps = %q, want %q", addr, got, want)
		}
	}
	// Every instance comes after its deps.
	pos := map[*Instance]int{}
	for i, inst := range r.Instances {
		pos[inst] = i
		for _, d := range inst.Deps {
			if _, ok := pos[d]; !ok {
				t.Errorf("%s comes before its dep %s", inst.Addr, d.Addr)
			}
		}
	}

	// Locals chain: cmd -> script -> prefix -> var.base, plus file().
	prep := r.Instance("exec.prep").StaticArgs
	wantCmd := cty.ListVal([]cty.Value{cty.StringVal("sh"), cty.StringVal("-c"),
		cty.StringVal("cp $IN_data $OUT_result/x # Qwen/Qwen2.5-0.5B-Instruct-x")})
	if got := prep.GetAttr("command"); !got.RawEquals(wantCmd) {
		t.Errorf("prep command = %#v", got)
	}
	if got := prep.GetAttr("inputs").GetAttr("note"); !got.RawEquals(cty.StringVal("a note")) {
		t.Errorf("file() = %#v", got)
	}

	// for_each over a map.
	r8 := r.Instance(`train.sweep["r8"]`)
	if !r8.Key.RawEquals(cty.StringVal("r8")) || !r8.EachValue.RawEquals(cty.NumberIntVal(8)) {
		t.Errorf("r8 key/value = %#v %#v", r8.Key, r8.EachValue)
	}
	lora := r8.StaticArgs.GetAttr("lora")
	if !lora.GetAttr("alpha").RawEquals(cty.NumberIntVal(16)) {
		t.Errorf("r8 lora = %#v", lora)
	}
	if m := r8.StaticArgs.GetAttr("model"); m.IsKnown() || !m.Type().Equals(stage.ArtifactType("model")) {
		t.Errorf("static model = %#v, want an unknown model artifact", m)
	}
	// for_each over a set.
	fr := r.Instance(`exec.lang["fr"]`)
	want := cty.ListVal([]cty.Value{cty.StringVal("echo"), cty.StringVal("fr"), cty.StringVal("0.5")})
	if got := fr.StaticArgs.GetAttr("command"); !got.RawEquals(want) {
		t.Errorf("lang fr command = %#v", got)
	}
	// for_each over another stage's instances: keys known, values not.
	ev := r.Instance(`exec.eval["r16"]`)
	if !ev.Key.RawEquals(cty.StringVal("r16")) || ev.EachValue.IsWhollyKnown() {
		t.Errorf("eval r16 key/value = %#v %#v", ev.Key, ev.EachValue)
	}
	if _, ok := ev.Outputs["report"]; !ok {
		t.Errorf("eval outputs = %v", ev.Outputs)
	}
	if r.Instance("exec.nope") != nil {
		t.Error("Instance of an unknown address is not nil")
	}
}

func art(kind, digest string) cty.Value {
	return stage.ArtifactVal(stage.Artifact{Kind: kind, Digest: digest, Path: "/store/" + digest})
}

func happyResults() map[string]map[string]cty.Value {
	return map[string]map[string]cty.Value{
		`exec.prep`:          {"result": art("files", "sha256:prep")},
		`model-source.base`:  {"model": art("model", "sha256:base")},
		`train.sweep["r8"]`:  {"model": art("model", "sha256:r8"), "metrics": cty.MapVal(map[string]cty.Value{"loss": cty.NumberFloatVal(1.5)})},
		`train.sweep["r16"]`: {"model": art("model", "sha256:r16"), "metrics": cty.MapVal(map[string]cty.Value{"loss": cty.NumberFloatVal(1.25)})},
		`exec.eval["r8"]`:    {"report": art("files", "sha256:ev8")},
		`exec.eval["r16"]`:   {"report": art("files", "sha256:ev16")},
		`exec.lang["en"]`:    {},
		`exec.lang["fr"]`:    {},
		`exec.pick`:          {"result": art("files", "sha256:pick")},
	}
}

func TestArgs(t *testing.T) {
	r := mustResolve(t, "testdata/happy", Inputs{Vars: []string{"opts={lr=0.01}"}})
	results := happyResults()

	digest := func(v cty.Value) string {
		a, ok := stage.ArtifactOf(v)
		if !ok {
			t.Fatalf("not an artifact: %#v", v)
		}
		return a.Digest
	}
	// each.value of a for_each over another stage, and a local that refers
	// to a stage output, both take the real values.
	args, diags := r.Args(r.Instance(`exec.eval["r8"]`), results)
	if diags.HasErrors() {
		t.Fatal(render(r.Pipeline, diags))
	}
	in := args.GetAttr("inputs")
	if got := digest(in.GetAttr("model")); got != "sha256:r8" {
		t.Errorf("eval r8 model = %s", got)
	}
	if got := digest(in.GetAttr("data")); got != "sha256:prep" {
		t.Errorf("eval r8 data = %s", got)
	}
	args, diags = r.Args(r.Instance(`exec.pick`), results)
	if diags.HasErrors() {
		t.Fatal(render(r.Pipeline, diags))
	}
	if got := digest(args.GetAttr("inputs").GetAttr("best")); got != "sha256:r8" {
		t.Errorf("pick best = %s", got)
	}
	if got := digest(args.GetAttr("inputs").GetAttr("report")); got != "sha256:ev16" {
		t.Errorf("pick report = %s", got)
	}
	args, diags = r.Args(r.Instance(`train.sweep["r16"]`), results)
	if diags.HasErrors() {
		t.Fatal(render(r.Pipeline, diags))
	}
	if got := digest(args.GetAttr("model")); got != "sha256:base" {
		t.Errorf("sweep model = %s", got)
	}
	if !args.IsWhollyKnown() {
		t.Errorf("args not known: %#v", args)
	}

	// A missing dep is an error.
	delete(results, `train.sweep["r16"]`)
	if _, diags := r.Args(r.Instance(`exec.pick`), results); !diags.HasErrors() ||
		!strings.Contains(diags[0].Detail, `train.sweep[\"r16\"]`) {
		t.Errorf("missing dep: diags = %v", diags)
	}
}

func TestOutputValues(t *testing.T) {
	r := mustResolve(t, "testdata/happy", Inputs{Vars: []string{"opts={lr=0.01}"}})
	out, diags := r.OutputValues(happyResults())
	if diags.HasErrors() {
		t.Fatal(render(r.Pipeline, diags))
	}
	all := out["all"]
	if got := all.GetAttr("r16").Index(cty.StringVal("loss")); !got.RawEquals(cty.NumberFloatVal(1.25)) {
		t.Errorf("all.r16.loss = %#v", got)
	}
	if a, ok := stage.ArtifactOf(out["picked"]); !ok || a.Digest != "sha256:pick" {
		t.Errorf("picked = %#v", out["picked"])
	}
	if got := out["greeting"]; !got.RawEquals(cty.StringVal("Hello, QWEN/QWEN2.5-0.5B-INSTRUCT!\n")) {
		t.Errorf("greeting = %#v", got)
	}
	if d := r.Pipeline.Outputs["picked"].Description; d != "the pick" {
		t.Errorf("description = %q", d)
	}
}

func TestLoadDirectory(t *testing.T) {
	p, diags := Load("testdata/multi")
	if diags.HasErrors() {
		t.Fatal(render(p, diags))
	}
	if len(p.Files) != 2 || len(p.Stages) != 2 {
		t.Fatalf("files %d, stages %d; want 2 and 2 (the lock file ignored)", len(p.Files), len(p.Stages))
	}
	abs, _ := filepath.Abs("testdata/multi")
	if p.Dir != abs {
		t.Errorf("Dir = %q, want %q", p.Dir, abs)
	}
	r, diags := p.Resolve(testRegistry(), Inputs{})
	if diags.HasErrors() {
		t.Fatal(render(p, diags))
	}
	if got := addrs(r.Instances); !slices.Equal(got, []string{"model-source.base", "train.t"}) {
		t.Errorf("instances %q", got)
	}
}

func TestInstanceAddressQuoting(t *testing.T) {
	dir := writeFiles(t, map[string]string{"main.hcl": `
stage "exec" "q" {
  for_each = toset(["a b", "x\"y", "$${z}", "tab\t"])
  command  = [each.key]
}
`})
	r := mustResolve(t, dir, Inputs{})
	want := []string{`exec.q["$${z}"]`, `exec.q["a b"]`, `exec.q["tab\t"]`, `exec.q["x\"y"]`}
	if got := addrs(r.Instances); !slices.Equal(got, want) {
		t.Errorf("addrs = %q, want %q", got, want)
	}
}

func TestLoadKeepsFilesOnSyntaxError(t *testing.T) {
	p, diags := Load("testdata/diagnostics/syntax_error/main.hcl")
	if !diags.HasErrors() || p == nil || len(p.Files) != 1 {
		t.Fatalf("p = %v, diags = %v", p, diags)
	}
	if _, diags := Load("testdata/does-not-exist.hcl"); !diags.HasErrors() {
		t.Error("no error for a missing file")
	}
}
