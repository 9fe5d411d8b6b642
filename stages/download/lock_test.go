package download

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lathe-ml/lathe/internal/hub/hubtest"
	"github.com/lathe-ml/lathe/pipeline"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

const commitB = "9b8a7c6d5e4f30211203f4e5d6c7b8a9f0e1d2c3"

// These tests drive the download kind through the pipeline engine, to check
// the lock file end to end: pinning, offline replanning and moving pins.

func writePipeline(t *testing.T, dir, revision string) {
	t.Helper()
	src := "stage \"download\" \"base\" {\n  repo     = \"lathe/tiny-llama\"\n  revision = \"" + revision + "\"\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "pipeline.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

func loadWS(t *testing.T, dir, store string) *pipeline.Workspace {
	t.Helper()
	ws, diags := pipeline.Load(dir, stage.NewRegistry(Kind()), config.Inputs{})
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if err := ws.OpenStore(store); err != nil {
		t.Fatal(err)
	}
	return ws
}

func planStep(t *testing.T, ws *pipeline.Workspace) *pipeline.Step {
	t.Helper()
	plan, err := ws.Plan(context.Background(), pipeline.Selection{})
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	return plan.Step("download.base")
}

func runWS(t *testing.T, ws *pipeline.Workspace) *pipeline.RunResult {
	t.Helper()
	res, err := ws.Run(context.Background(), pipeline.RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != "succeeded" {
		t.Fatalf("run %s: %+v", res.Status, res.Stages)
	}
	return res
}

func lockedCommit(t *testing.T, dir string) string {
	t.Helper()
	f, diags := lockfile.Read(filepath.Join(dir, lockfile.FileName))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	e, ok := f.Get("download.base")
	if !ok {
		return ""
	}
	return e.Values["commit"]
}

func offlineEnv(t *testing.T) {
	t.Setenv("HF_ENDPOINT", "http://127.0.0.1:1") // nothing listens: any request fails
	t.Setenv("HF_HUB_OFFLINE", "1")
	t.Setenv("HF_HUB_CACHE", t.TempDir()) // empty: no cached refs to fall back on
}

func TestLockPinsThenPlansOffline(t *testing.T) {
	h := hubtest.New(t)
	h.Add(tinyModel())
	hubEnv(t, h)
	dir, store := t.TempDir(), t.TempDir()
	writePipeline(t, dir, "main")
	lockPath := filepath.Join(dir, lockfile.FileName)

	ws := loadWS(t, dir, store)
	step := planStep(t, ws)
	if step.Action != pipeline.ActionRun || step.Pin != "new pin commit "+commitA[:12] {
		t.Fatalf("first plan: %s, pin %q; want run with a new pin", step.Action, step.Pin)
	}
	if _, err := os.Stat(lockPath); !os.IsNotExist(err) {
		t.Fatalf("plan wrote the lock file (%v)", err)
	}
	runWS(t, ws)
	if got := lockedCommit(t, dir); got != commitA {
		t.Fatalf("lock after run pins %q, want %s", got, commitA)
	}

	// No network at all: the lock alone gives the key.
	offlineEnv(t)
	before := len(h.Requests())
	step = planStep(t, loadWS(t, dir, store))
	if step.Action != pipeline.ActionCached || step.Pin != "" {
		t.Fatalf("offline plan with the lock: %s (%s), pin %q; want cached", step.Action, step.Reason, step.Pin)
	}
	if n := len(h.Requests()) - before; n != 0 {
		t.Fatalf("offline plan made %d requests to the Hub", n)
	}
	// Without the lock the same plan needs the network, and fails.
	if err := os.Rename(lockPath, lockPath+".bak"); err != nil {
		t.Fatal(err)
	}
	if _, err := loadWS(t, dir, store).Plan(context.Background(), pipeline.Selection{}); err == nil {
		t.Fatal("offline plan without a lock and without cached refs succeeded; the lock test proves nothing")
	}
}

func TestLockUpdateMovesPin(t *testing.T) {
	h := hubtest.New(t)
	h.Add(tinyModel())
	hubEnv(t, h)
	dir, store := t.TempDir(), t.TempDir()
	writePipeline(t, dir, "main")
	ws := loadWS(t, dir, store)
	changes, err := ws.UpdateLock(context.Background(), pipeline.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Action != "pinned" {
		t.Fatalf("lock: %+v, want one new pin", changes)
	}
	runWS(t, ws)

	// The branch moves on the Hub.
	moved := tinyModel()
	moved.Commit = commitB
	moved.Refs = map[string]string{"main": commitB, "v2": commitB}
	moved.Files["config.json"] = hubtest.File{Data: []byte(`{"architectures":["LlamaForCausalLM"],"hidden_size":32}`)}
	h.Add(moved)

	before := len(h.Requests())
	ws = loadWS(t, dir, store)
	if step := planStep(t, ws); step.Action != pipeline.ActionCached {
		t.Fatalf("plan after the branch moved, lock unchanged: %s (%s); want cached (pinned)", step.Action, step.Reason)
	}
	if n := len(h.Requests()) - before; n != 0 {
		t.Fatalf("plan of a pinned pipeline made %d requests to the Hub", n)
	}
	// lock without -update keeps the pin.
	changes, err = ws.UpdateLock(context.Background(), pipeline.LockOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 1 || changes[0].Action != "kept" || lockedCommit(t, dir) != commitA {
		t.Fatalf("lock without -update: %+v, lock %s", changes, lockedCommit(t, dir))
	}
	changes, err = ws.UpdateLock(context.Background(), pipeline.LockOptions{Update: true, Stages: []string{"download.base"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "commit " + commitA + " -> " + commitB
	if len(changes) != 1 || changes[0].Action != "moved" || changes[0].Detail != want {
		t.Fatalf("lock -update: %+v, want moved %q", changes, want)
	}
	if got := lockedCommit(t, dir); got != commitB {
		t.Fatalf("lock after -update pins %q, want %s", got, commitB)
	}
	ws = loadWS(t, dir, store)
	step := planStep(t, ws)
	if step.Action != pipeline.ActionRun || step.Reason != "changed: commit" {
		t.Fatalf("plan after lock -update: %s (%s), want run (changed: commit)", step.Action, step.Reason)
	}
	res := runWS(t, ws)
	if res.Stages[0].Status != pipeline.StatusRan || res.Outputs != nil && len(res.Outputs) > 0 {
		t.Fatalf("run after -update: %+v", res.Stages)
	}

	// A new revision in the pipeline re-pins; plan says so, run writes it.
	writePipeline(t, dir, "v2")
	ws = loadWS(t, dir, store)
	step = planStep(t, ws)
	if step.Pin != "pin moves: revision main -> v2" || !strings.Contains(step.Reason, "pin moves: revision main -> v2") {
		t.Fatalf("plan after revision change: pin %q, reason %q", step.Pin, step.Reason)
	}
	if f, _ := lockfile.Read(filepath.Join(dir, lockfile.FileName)); f != nil {
		if e, _ := f.Get("download.base"); e.Inputs["revision"] != "main" {
			t.Fatalf("plan rewrote the lock: %+v", e)
		}
	}
	runWS(t, ws)
	f, diags := lockfile.Read(filepath.Join(dir, lockfile.FileName))
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if e, _ := f.Get("download.base"); e.Inputs["revision"] != "v2" || e.Values["commit"] != commitB {
		t.Fatalf("lock after run with revision v2: %+v", e)
	}
}

func TestRunDownloadsPinnedCommit(t *testing.T) {
	h := hubtest.New(t)
	h.Add(tinyModel())
	hubEnv(t, h)
	dir, store := t.TempDir(), t.TempDir()
	writePipeline(t, dir, "main")
	if _, err := loadWS(t, dir, store).UpdateLock(context.Background(), pipeline.LockOptions{}); err != nil {
		t.Fatal(err)
	}
	// The branch moves, but the fake Hub still serves the pinned commit.
	moved := tinyModel()
	moved.Refs = map[string]string{"main": commitB}
	h.Add(moved)
	before := len(h.Requests())
	res := runWS(t, loadWS(t, dir, store))
	if res.Stages[0].Status != pipeline.StatusRan {
		t.Fatalf("%+v", res.Stages)
	}
	if len(h.Requests()) == before {
		t.Fatal("the run made no requests: nothing was downloaded")
	}
	atPin := false
	for _, r := range h.Requests()[before:] {
		if strings.Contains(r.Path, "/main") {
			t.Fatalf("the run asked the Hub about the branch (%s %s) although it is pinned", r.Method, r.Path)
		}
		atPin = atPin || strings.Contains(r.Path, commitA)
	}
	if !atPin {
		t.Fatal("no request named the pinned commit")
	}
}

func TestPinInputs(t *testing.T) {
	tests := []struct {
		src  string
		want string // "" for no pin
	}{
		{`repo = "org/m"`, `repo=model org/m revision=main`},
		{"dataset = \"org/d\"\nrevision = \"v1\"", `repo=dataset org/d revision=v1`},
		{"repo = \"org/m\"\nrevision = \"" + commitA + "\"", ""},
		{`path = "x"`, ""},
		{"url = \"https://example.org/a\"\nsha256 = \"" + strings.Repeat("a", 64) + "\"", ""},
	}
	for _, tt := range tests {
		args, diags := decode(t, tt.src)
		if diags.HasErrors() {
			t.Fatal(diags)
		}
		in, err := pinInputs(args)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		if in != nil {
			got = "repo=" + in["repo"] + " revision=" + in["revision"]
		}
		if got != tt.want {
			t.Errorf("%s: inputs %q, want %q", tt.src, got, tt.want)
		}
	}
}
