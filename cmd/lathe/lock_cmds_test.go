package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/lathe-ml/lathe/internal/hub/hubtest"
)

// TestLockUpdateCLI drives lathe in process against the fake Hub: run pins
// the branch, the branch moves, plan stays cached, `lock -update` moves the
// pin and plan then shows the download as changed.
func TestLockUpdateCLI(t *testing.T) {
	const commitA = "3f2a0c9e1b7d4a5f8e6c0b1a2d3e4f5a6b7c8d9e"
	const commitB = "9b8a7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3"
	repo := func(commit string, config string) *hubtest.Repo {
		return &hubtest.Repo{
			ID: "lathe/tiny", Commit: commit, Refs: map[string]string{"main": commit},
			Files: map[string]hubtest.File{
				"config.json":    {Data: []byte(config)},
				"tokenizer.json": {Data: []byte(`{"version":"1.0"}`)},
			},
		}
	}
	h := hubtest.New(t)
	h.Add(repo(commitA, `{"hidden_size":16}`))
	t.Setenv("HF_ENDPOINT", h.API.URL)
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HUGGING_FACE_HUB_TOKEN", "")
	t.Setenv("HF_HUB_OFFLINE", "")
	t.Setenv("HF_HUB_CACHE", t.TempDir())
	t.Setenv("LATHE_CACHE", "")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte("stage \"download\" \"base\" {\n  repo = \"lathe/tiny\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	lathe := func(want int, args ...string) string {
		t.Helper()
		var out, errb bytes.Buffer
		env := &cliEnv{stdout: &out, stderr: &errb, environ: os.Environ()}
		if code := runCLI(context.Background(), env, args); code != want {
			t.Fatalf("lathe %q: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", args, code, want, out.String(), errb.String())
		}
		return out.String()
	}
	match := func(out, re string) {
		t.Helper()
		if !regexp.MustCompile(re).MatchString(out) {
			t.Fatalf("output does not match %q:\n%s", re, out)
		}
	}

	match(lathe(exitOK, "plan", dir), `download.base +run +new: no earlier result for this stage; new pin commit 3f2a0c9e1b7d \(not yet in pipeline.lock.hcl\)`)
	if _, err := os.Stat(filepath.Join(dir, "pipeline.lock.hcl")); !os.IsNotExist(err) {
		t.Fatal("plan wrote pipeline.lock.hcl")
	}
	match(lathe(exitOK, "run", dir), `1 ran, 0 cached`)
	lock, err := os.ReadFile(filepath.Join(dir, "pipeline.lock.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	match(string(lock), `commit = "`+commitA+`"`)

	h.Add(repo(commitB, `{"hidden_size":32}`)) // main moves
	match(lathe(exitOK, "plan", dir), `download.base +cached +unchanged`)
	match(lathe(exitOK, "lock", "-p", dir), `download.base +kept +commit 3f2a0c9e1b7d`)
	match(lathe(exitOK, "lock", "-update", "-p", dir, "download.base"), `download.base +moved +commit `+commitA+` -> `+commitB+`\n\npipeline.lock.hcl: 0 pinned, 1 moved, 0 kept, 0 removed.`)
	match(lathe(exitOK, "plan", dir), `download.base +run +changed: commit\n`)
	match(lathe(exitOK, "run", dir), `1 ran, 0 cached`)
	match(lathe(exitOK, "plan", dir), `download.base +cached +unchanged`)
	match(lathe(exitUsage, "lock", "-p", dir, "-bogus"), ``)
	lathe(exitFailed, "lock", "-p", dir, "download.nope")
}
