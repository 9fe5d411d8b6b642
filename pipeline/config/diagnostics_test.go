package config

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/diagnostics")

// caseInputs reads a case's args.txt: one "-var name=value",
// "-var-file path" or "env KEY=value" per line.
func caseInputs(t *testing.T, dir string) Inputs {
	t.Helper()
	var in Inputs
	b, err := os.ReadFile(filepath.Join(dir, "args.txt"))
	if os.IsNotExist(err) {
		return in
	}
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		flagName, value, _ := strings.Cut(line, " ")
		switch flagName {
		case "-var":
			in.Vars = append(in.Vars, value)
		case "-var-file":
			in.VarFiles = append(in.VarFiles, value)
		case "env":
			in.Env = append(in.Env, value)
		default:
			t.Fatalf("args.txt: bad line %q", line)
		}
	}
	return in
}

// renderCase loads and resolves the pipeline of a case directory, from
// inside it, and renders every diagnostic as a user would see it.
func renderCase(t *testing.T, dir string) string {
	t.Helper()
	in := caseInputs(t, dir)
	t.Chdir(dir)
	p, diags := Load("main.hcl")
	if !diags.HasErrors() {
		_, rdiags := p.Resolve(testRegistry(), in)
		diags = append(diags, rdiags...)
	}
	if !diags.HasErrors() {
		t.Fatalf("no errors reported")
	}
	var buf bytes.Buffer
	if err := p.WriteDiagnostics(&buf, diags, 80, false); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func TestDiagnosticsGolden(t *testing.T) {
	dirs, err := filepath.Glob("testdata/diagnostics/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 12 {
		t.Fatalf("only %d diagnostic cases", len(dirs))
	}
	for _, dir := range dirs {
		abs, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			got := renderCase(t, abs)
			golden := filepath.Join(abs, "expected.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("diagnostics differ from %s\n--- got ---\n%s\n--- want ---\n%s", golden, got, want)
			}
		})
	}
}
