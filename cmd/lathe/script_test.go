package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"lathe": func() {
			fakeGPUsFromEnv()
			env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ(), isTTY: false}
			os.Exit(runCLI(context.Background(), env, os.Args[1:]))
		},
		// lathe-cuda-stand-in is a stand-in for the CUDA worker: the worker's
		// stage exec (internal/worker) with the CPU backend as its device.
		"lathe-cuda-stand-in": fakeWorkerMain,
		// lathe-signals is lathe with the real binary's signal handling, for
		// the tests that interrupt a run.
		"lathe-signals": func() { fakeGPUsFromEnv(); main() },
	})
}

// TestScripts runs the script tests in testdata/script against the real
// binary: each lathe invocation is a separate process.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(e *testscript.Env) error {
			e.Setenv("LATHE_CACHE", "")
			e.Setenv("CI", "")
			// The stand-in worker, for scripts that set LATHE_CUDA_WORKER
			// to it.
			e.Setenv("TEST_WORKER", filepath.Join(filepath.SplitList(e.Getenv("PATH"))[0], "lathe-cuda-stand-in"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile": cmdWaitFile,
		},
	})
}

// cmdWaitFile waits until a file exists: waitfile FILE [SECONDS].
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitfile FILE [SECONDS]")
	}
	limit := 30 * time.Second
	if len(args) == 2 {
		s, err := strconv.Atoi(args[1])
		ts.Check(err)
		limit = time.Duration(s) * time.Second
	}
	deadline := time.Now().Add(limit)
	for {
		if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear within %s", args[0], limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
