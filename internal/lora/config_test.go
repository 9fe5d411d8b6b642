package lora

import (
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	tests := []struct {
		in        Config
		wantAlpha float64
	}{
		{Config{Rank: 8}, 16},
		{Config{Rank: 8, Alpha: 32}, 32},
		{Config{Rank: 1}, 2},
		{Config{}, 0},
	}
	for _, tc := range tests {
		c := tc.in
		c.Defaults()
		if c.Alpha != tc.wantAlpha {
			t.Errorf("%+v.Defaults(): alpha %v, want %v", tc.in, c.Alpha, tc.wantAlpha)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Config{Rank: 8, Alpha: 16, Dropout: 0.1, Targets: []string{"q_proj", "v_proj"}}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // "" for valid
	}{
		{"good", func(*Config) {}, ""},
		{"all", func(c *Config) { c.Targets = []string{"all"} }, ""},
		{"dropout zero", func(c *Config) { c.Dropout = 0 }, ""},
		{"rank zero", func(c *Config) { c.Rank = 0 }, "rank must be >= 1, got 0"},
		{"rank negative", func(c *Config) { c.Rank = -2 }, "rank must be >= 1, got -2"},
		{"alpha zero", func(c *Config) { c.Alpha = 0 }, "alpha must be a finite number > 0"},
		{"alpha negative", func(c *Config) { c.Alpha = -1 }, "alpha must be a finite number > 0"},
		{"alpha NaN", func(c *Config) { c.Alpha = math.NaN() }, "alpha must be"},
		{"alpha Inf", func(c *Config) { c.Alpha = math.Inf(1) }, "alpha must be"},
		{"dropout one", func(c *Config) { c.Dropout = 1 }, "dropout must be in [0, 1), got 1"},
		{"dropout negative", func(c *Config) { c.Dropout = -0.1 }, "dropout must be in [0, 1)"},
		{"dropout NaN", func(c *Config) { c.Dropout = math.NaN() }, "dropout must be in [0, 1)"},
		{"no targets", func(c *Config) { c.Targets = nil }, "no target modules"},
		{"blank target", func(c *Config) { c.Targets = []string{"q_proj", " "} }, "target 1 is empty"},
		{"all mixed", func(c *Config) { c.Targets = []string{"all", "q_proj"} }, `target "all" cannot be combined`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			c.Targets = append([]string(nil), good.Targets...)
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("Validate accepted %+v", c)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("Validate: %v, want it to contain %q", err, tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "lora: "):
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
	// Several problems are reported together.
	err := Config{}.Validate()
	for _, want := range []string{"rank", "alpha", "no target modules"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Config{}.Validate() = %v, want it to mention %q", err, want)
		}
	}
}

func TestScale(t *testing.T) {
	tests := []struct {
		c    Config
		want float64
	}{
		{Config{Rank: 8, Alpha: 16}, 2},
		{Config{Rank: 16, Alpha: 8}, 0.5},
		{Config{Rank: 16, Alpha: 8, RSLoRA: true}, 2},
		{Config{Rank: 8, Alpha: 16, RSLoRA: true}, 16 / math.Sqrt(8)},
	}
	for _, tc := range tests {
		if got := tc.c.Scale(); got != tc.want {
			t.Errorf("%+v.Scale() = %v, want %v", tc.c, got, tc.want)
		}
	}
}

func TestResolveTargets(t *testing.T) {
	tests := []struct {
		name      string
		targets   []string
		available []string
		want      []string
		wantErr   []string
	}{
		{"all", []string{"all"}, LinearKinds,
			[]string{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"}, nil},
		{"all of a subset", []string{"all"}, []string{"v_proj", "q_proj"}, []string{"q_proj", "v_proj"}, nil},
		{"explicit", []string{"v_proj", "q_proj"}, LinearKinds, []string{"q_proj", "v_proj"}, nil},
		{"one", []string{"down_proj"}, LinearKinds, []string{"down_proj"}, nil},
		{"duplicates", []string{"q_proj", "v_proj", "q_proj", "v_proj"}, LinearKinds, []string{"q_proj", "v_proj"}, nil},
		{"unknown with suggestion", []string{"q_proj", "q_prj"}, LinearKinds, nil,
			[]string{`unknown target module "q_prj"`, `did you mean "q_proj"?`}},
		{"suggestion for a long name", []string{"gate_prj"}, LinearKinds, nil, []string{`did you mean "gate_proj"?`}},
		{"unknown without suggestion", []string{"lm_head"}, LinearKinds, nil,
			[]string{`unknown target module "lm_head"`, "q_proj, k_proj", `or "all" for all of them`}},
		{"not available in this model", []string{"gate_proj"}, []string{"q_proj", "v_proj"}, nil,
			[]string{`unknown target module "gate_proj"`}},
		{"case matters", []string{"Q_PROJ"}, LinearKinds, nil, []string{`unknown target module "Q_PROJ"`}},
		{"empty", nil, LinearKinds, nil, []string{"no target modules"}},
		{"all mixed", []string{"all", "q_proj"}, LinearKinds, nil, []string{`"all" cannot be combined`}},
		{"blank", []string{""}, LinearKinds, nil, []string{"target 0 is empty"}},
		{"nothing available", []string{"all"}, nil, nil, []string{"no linear modules"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ResolveTargets(tc.targets, tc.available)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("ResolveTargets(%q) = %q, want an error", tc.targets, got)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				if !strings.HasPrefix(err.Error(), "lora: ") {
					t.Errorf("error %q lacks the package prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ResolveTargets(%q): %v", tc.targets, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ResolveTargets(%q) = %q, want %q", tc.targets, got, tc.want)
			}
		})
	}
}

func TestResolveTargetsDoesNotAlias(t *testing.T) {
	avail := []string{"v_proj", "q_proj"}
	got, err := ResolveTargets([]string{"all"}, avail)
	if err != nil {
		t.Fatal(err)
	}
	got[0] = "changed"
	if avail[0] != "v_proj" || avail[1] != "q_proj" {
		t.Fatalf("ResolveTargets changed its input: %q", avail)
	}
}

func TestModules(t *testing.T) {
	tests := []struct {
		kinds  []string
		layers int
		want   []string
	}{
		{[]string{"v_proj", "q_proj"}, 2, []string{
			"model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj",
			"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj",
		}},
		{[]string{"down_proj", "gate_proj", "up_proj", "o_proj", "down_proj"}, 1, []string{
			"model.layers.0.self_attn.o_proj", "model.layers.0.mlp.gate_proj",
			"model.layers.0.mlp.up_proj", "model.layers.0.mlp.down_proj",
		}},
		{LinearKinds, 0, nil},
		{nil, 3, nil},
	}
	for _, tc := range tests {
		if got := Modules(tc.kinds, tc.layers); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Modules(%q, %d) = %q, want %q", tc.kinds, tc.layers, got, tc.want)
		}
	}
	if n := len(Modules(LinearKinds, 32)); n != 7*32 {
		t.Errorf("Modules(LinearKinds, 32) has %d modules, want %d", n, 7*32)
	}
	// Every module's kind is its last component, and the ones ResolveTargets
	// returns are all placeable.
	kinds, err := ResolveTargets([]string{"all"}, LinearKinds)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range Modules(kinds, 2) {
		if k := kindOf(m); !strings.HasSuffix(m, "."+k) || !slices.Contains(LinearKinds, k) {
			t.Errorf("module %q: kind %q", m, k)
		}
	}
}

func TestModulesPanicsOnUnknownKind(t *testing.T) {
	defer func() {
		r := recover()
		if r == nil || !strings.Contains(r.(string), `"lm_head"`) {
			t.Fatalf("recover() = %v, want a panic naming lm_head", r)
		}
	}()
	Modules([]string{"q_proj", "lm_head"}, 1)
}
