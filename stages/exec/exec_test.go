package exec

import (
	"strings"
	"sync"
	"testing"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/stage"
)

type recorder struct {
	mu       sync.Mutex
	progress []string
	metrics  []string
	logs     []string
}

func (r *recorder) Progress(done, total int64, unit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.progress = append(r.progress, strings.TrimSpace(strings.Join([]string{itoa(done), "/", itoa(total), " ", unit}, "")))
}

func (r *recorder) Logf(format string, args ...any) {}

func (r *recorder) Metrics(step int64, values map[string]float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range values {
		r.metrics = append(r.metrics, k+"@"+itoa(step)+"="+itoa(int64(v*10)))
	}
}

func itoa(n int64) string { return cty.NumberIntVal(n).AsBigFloat().Text('f', 0) }

func TestDirectives(t *testing.T) {
	tests := []struct {
		line     string
		handled  bool
		progress string
		metric   string
	}{
		{"lathe:progress 3/10 steps", true, "3/10 steps", ""},
		{"lathe:progress 3/10", true, "3/10", ""},
		{"lathe:metrics 7 loss=1.5", true, "", "loss@7=15"},
		{"lathe:progress three/10", false, "", ""},
		{"lathe:metrics x loss=1", false, "", ""},
		{"lathe:metrics 1 loss", false, "", ""},
		{"plain output", false, "", ""},
		{"lathe:progress", false, "", ""},
	}
	for _, tc := range tests {
		rec := &recorder{}
		if got := handleDirective(tc.line, rec); got != tc.handled {
			t.Errorf("%q: handled = %v, want %v", tc.line, got, tc.handled)
		}
		if tc.progress != "" && (len(rec.progress) != 1 || rec.progress[0] != tc.progress) {
			t.Errorf("%q: progress %v, want %q", tc.line, rec.progress, tc.progress)
		}
		if tc.metric != "" && (len(rec.metrics) != 1 || rec.metrics[0] != tc.metric) {
			t.Errorf("%q: metrics %v, want %q", tc.line, rec.metrics, tc.metric)
		}
	}
}

func TestValidation(t *testing.T) {
	strs := func(s ...string) cty.Value {
		var vs []cty.Value
		for _, x := range s {
			vs = append(vs, cty.StringVal(x))
		}
		return cty.ListVal(vs)
	}
	if d := validateCommand(cty.ListValEmpty(cty.String)); !d.HasErrors() {
		t.Error("empty command accepted")
	}
	if d := validateOutputNames(strs("ok", "bad-name")); !d.HasErrors() {
		t.Error("output name with a dash accepted")
	}
	if d := validateOutputNames(strs("a", "a")); !d.HasErrors() {
		t.Error("duplicate output accepted")
	}
	inputs := cty.ObjectVal(map[string]cty.Value{
		"file":     cty.StringVal("x.txt"),
		"artifact": stage.ArtifactVal(stage.Artifact{Kind: "model", Digest: "sha256:00"}),
		"pending":  cty.UnknownVal(stage.ArtifactType("files")),
	})
	if d := validateInputs(inputs); d.HasErrors() {
		t.Errorf("valid inputs rejected: %v", d)
	}
	bad := cty.ObjectVal(map[string]cty.Value{"n": cty.NumberIntVal(3)})
	if d := validateInputs(bad); !d.HasErrors() || !strings.Contains(d[0].Detail, "not number") {
		t.Errorf("number input: %v", d)
	}
}
