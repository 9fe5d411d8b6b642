package memest

import (
	"strings"
	"testing"
)

func stories(t *testing.T) Input {
	return Input{Config: loadConfig(t, "stories15M"), Method: Full, BatchSize: 8, SeqLen: 256, GradAccum: 1, Baseline: 40 << 20, Threads: 2}
}

func total(t *testing.T, in Input) int64 {
	t.Helper()
	e, err := Training(in)
	if err != nil {
		t.Fatal(err)
	}
	return e.Total
}

func TestFitting(t *testing.T) {
	base := stories(t)
	full := total(t, base)
	rc := base
	rc.Recompute = true
	withRecompute := total(t, rc)
	q := base
	q.Method, q.LoRARank, q.LoRAModules, q.Recompute, q.BatchSize, q.GradAccum = QLoRA, 8, []string{"all"}, true, 1, 8
	smallest := total(t, q)
	for _, c := range []struct {
		name  string
		in    Input
		limit int64
		// first are the descriptions the list must start with; none
		// means the list must be empty.
		first []string
		// contains are descriptions it must hold somewhere.
		contains []string
	}{
		{"already fits", base, full, nil, nil},
		{"nothing fits", base, 1 << 20, nil, nil},
		{"just over", base, full - 1, []string{
			"activation_recompute = true",
			"batch_size = 4 with gradient_accumulation = 2",
			`method = "lora"`,
			`method = "qlora"`,
		}, []string{"max_seq_len = 192"}},
		{"recompute is not enough", base, withRecompute - 1, []string{
			"batch_size = 2 with gradient_accumulation = 4",
		}, []string{`activation_recompute = true, method = "lora"`, `method = "qlora"`}},
		{"only the smallest", base, smallest + 1, nil, []string{`activation_recompute = true, method = "qlora", batch_size = 1 with gradient_accumulation = 8`}},
		{"effective batch kept", func() Input { in := base; in.BatchSize, in.GradAccum = 6, 2; return in }(), 0,
			[]string{"activation_recompute = true", "batch_size = 4 with gradient_accumulation = 3"}, nil},
		{"lora stays lora under qlora", func() Input {
			in := base
			in.Method, in.LoRARank, in.LoRAModules = LoRA, 16, []string{"q_proj", "v_proj"}
			return in
		}(), 0, nil, []string{`method = "qlora"`}},
	} {
		t.Run(c.name, func(t *testing.T) {
			limit := c.limit
			if limit == 0 {
				limit = total(t, c.in) - 1
			}
			opts := Fitting(c.in, limit)
			var desc []string
			for _, o := range opts {
				desc = append(desc, o.Description)
				if o.Total > limit {
					t.Errorf("%q: %d bytes, over the limit %d", o.Description, o.Total, limit)
				}
				if got := total(t, o.Input); got != o.Total {
					t.Errorf("%q: total %d, Training of its input %d", o.Description, o.Total, got)
				}
				if o.Input.BatchSize*o.Input.GradAccum != c.in.BatchSize*c.in.GradAccum {
					t.Errorf("%q: effective batch %d·%d, was %d·%d", o.Description, o.Input.BatchSize, o.Input.GradAccum, c.in.BatchSize, c.in.GradAccum)
				}
				if o.Input.Method == QLoRA && c.in.Method == LoRA && (o.Input.LoRARank != c.in.LoRARank || len(o.Input.LoRAModules) != 2) {
					t.Errorf("%q: QLoRA from LoRA lost the adapters' settings: %+v", o.Description, o.Input)
				}
			}
			t.Logf("limit %s:\n  %s", FormatBytes(limit), strings.Join(desc, "\n  "))
			if c.first == nil && c.contains == nil && len(opts) != 0 {
				t.Fatalf("options %q, want none", desc)
			}
			for i, w := range c.first {
				if i >= len(desc) || desc[i] != w {
					t.Fatalf("options %q, want them to start with %q", desc, c.first)
				}
			}
			for _, w := range c.contains {
				found := false
				for _, d := range desc {
					found = found || d == w
				}
				if !found {
					t.Errorf("options %q lack %q", desc, w)
				}
			}
			// No option repeats an earlier one with more changes.
			for i, a := range desc {
				for _, b := range desc[:i] {
					if strings.HasPrefix(a, b+", ") {
						t.Errorf("option %q extends the earlier %q", a, b)
					}
				}
			}
		})
	}
}

func TestAutoBatch(t *testing.T) {
	base := stories(t)
	at := func(b int) int64 {
		in := base
		in.BatchSize = b
		return total(t, in)
	}
	for _, c := range []struct {
		name  string
		limit int64
		max   int
		want  int
	}{
		{"exactly five", at(5), 64, 5},
		{"just under six", at(6) - 1, 64, 5},
		{"capped", at(40), 32, 32},
		{"one", at(1), 8, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, e, err := AutoBatch(base, c.limit, c.max)
			if err != nil {
				t.Fatal(err)
			}
			if b != c.want || e.Total != at(b) {
				t.Errorf("batch %d (%d bytes), want %d (%d bytes)", b, e.Total, c.want, at(c.want))
			}
		})
	}
	if _, e, err := AutoBatch(base, at(1)-1, 8); err == nil || !strings.Contains(err.Error(), "a batch of 1 needs") || e.Total != at(1) {
		t.Errorf("over the limit at one row: err %v, estimate %d", err, e.Total)
	}
	if _, _, err := AutoBatch(base, 1<<40, 0); err == nil || !strings.Contains(err.Error(), "want >= 1") {
		t.Errorf("max 0: %v", err)
	}
	bad := base
	bad.SeqLen = 0
	if _, _, err := AutoBatch(bad, 1<<40, 8); err == nil || !strings.Contains(err.Error(), "sequence length") {
		t.Errorf("bad input: %v", err)
	}
}
