package gpu

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFindWorker(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withWorker := write("a/lathe", 0o755)
	worker := write("a/lathe-cuda", 0o755)
	alone := write("b/lathe", 0o755)
	notExec := write("c/lathe-cuda", 0o644)
	write("c/lathe", 0o755)
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "d", "lathe-cuda"), 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "linked-lathe")
	if err := os.Symlink(withWorker, link); err != nil {
		t.Fatal(err)
	}
	explicit := write("elsewhere/my-worker", 0o755)

	tests := []struct {
		name     string
		env, exe string
		want     string
		wantErr  []string
	}{
		{name: "beside lathe", exe: withWorker, want: worker},
		{name: "beside the symlink's target", exe: link, want: worker},
		{name: "explicit", env: explicit, exe: alone, want: explicit},
		{name: "explicit wins", env: explicit, exe: withWorker, want: explicit},
		{name: "missing", exe: alone, wantErr: []string{
			filepath.Join(dir, "b", "lathe-cuda") + " does not exist",
			"go build -tags cuda -o " + filepath.Join(dir, "b", "lathe-cuda") + " ./cmd/lathe-cuda",
			"LATHE_CUDA_WORKER is not set",
		}},
		{name: "not executable", exe: filepath.Join(dir, "c", "lathe"), wantErr: []string{notExec + " is not executable"}},
		{name: "a directory", exe: filepath.Join(dir, "d", "lathe"), wantErr: []string{"is a directory"}},
		{name: "explicit missing", env: filepath.Join(dir, "nope"), exe: withWorker, wantErr: []string{"LATHE_CUDA_WORKER=" + filepath.Join(dir, "nope") + " does not exist"}},
		{name: "explicit not executable", env: notExec, exe: withWorker, wantErr: []string{"is not executable"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FindWorker(tt.env, tt.exe)
			if len(tt.wantErr) == 0 {
				if err != nil || got != tt.want {
					t.Fatalf("FindWorker = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("FindWorker = %q, want an error", got)
			}
			if !errors.Is(err, ErrNoWorker) {
				t.Errorf("error does not wrap ErrNoWorker: %v", err)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestFindWorkerThisBinary looks beside the running test binary, where no
// worker is: the default lookup must fail with the build hint.
func TestFindWorkerThisBinary(t *testing.T) {
	_, err := FindWorker("", "")
	if err == nil {
		t.Skip("a lathe-cuda happens to sit beside the test binary")
	}
	if !errors.Is(err, ErrNoWorker) || !strings.Contains(err.Error(), "go build -tags cuda") {
		t.Errorf("error: %v", err)
	}
}
