package main

// lathe ui: serves the board (internal/board), a web page to configure,
// launch and watch the pipelines of a directory.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/lathe-ml/lathe/internal/board"
	"github.com/lathe-ml/lathe/stages"
)

// The ui command's entry in the command table.
const (
	uiUsage   = "ui [--listen ADDR] [--cache DIR] [-j N] [DIR]"
	uiSummary = "serve the board: configure, launch and watch pipelines in a browser"
)

// defaultListen is where the board listens unless --listen says otherwise.
const defaultListen = "127.0.0.1:7860"

func cmdUI(ctx context.Context, env *cliEnv, args []string) int {
	fs := subFlagSet(env, "ui", uiUsage, uiSummary+".\n\nDIR (default .) holds pipeline.hcl, or subdirectories that do.")
	listen := fs.String("listen", defaultListen, "serve on `ADDR` (host:port); beyond loopback the printed URL carries a token that every request needs")
	cacheDir := fs.String("cache", "", "artifact store directory for every pipeline (default $LATHE_CACHE, else .lathe beside each pipeline)")
	jobs := fs.Int("j", 2, "how many stages of a run may run at once")
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return flagError(err)
	}
	if *jobs < 1 {
		return usageError(env, "-j must be at least 1")
	}
	dir := "."
	switch len(pos) {
	case 0:
	case 1:
		dir = pos[0]
	default:
		return usageError(env, "ui takes one directory, got %d arguments", len(pos))
	}
	if fi, err := os.Stat(dir); err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	} else if !fi.IsDir() {
		dir = filepath.Dir(dir) // a pipeline file: its directory
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	addr := ln.Addr().(*net.TCPAddr)
	remote := !addr.IP.IsLoopback()
	b, err := board.New(board.Options{
		Dir: dir, Registry: stages.Registry(), CacheDir: *cacheDir,
		Env: env.environ, Jobs: *jobs, Remote: remote, GPUs: newLocalGPUs(env),
	})
	if err != nil {
		ln.Close()
		fmt.Fprintf(env.stderr, "lathe: %v\n", err)
		return exitFailed
	}
	url := "http://" + net.JoinHostPort(urlHost(addr), strconv.Itoa(addr.Port)) + "/"
	if remote {
		url += "?token=" + b.Token()
		fmt.Fprintf(env.stderr, "lathe: the board listens beyond loopback; anyone with the URL below can run pipelines here\n")
	}
	fmt.Fprintf(env.stdout, "lathe board: pipelines in %s at %s\nPress Ctrl-C to stop.\n", dir, url)

	srv := &http.Server{
		Handler:           b,
		ReadHeaderTimeout: 10 * time.Second,
		// Requests (event streams included) end when lathe is interrupted.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	code := exitOK
	select {
	case <-ctx.Done():
	case err := <-served:
		if !errors.Is(err, http.ErrServerClosed) {
			fmt.Fprintf(env.stderr, "lathe: %v\n", err)
			code = exitFailed
		}
	}
	// Runs the board started are cancelled and awaited: their committed
	// stages stay in the store, their checkpoints resumable.
	b.Close()
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(shutdown)
	return code
}

// urlHost is the host to print in the board's URL: the listening address,
// or this machine's name when it listens on every interface.
func urlHost(a *net.TCPAddr) string {
	if a.IP.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return h
		}
	}
	return a.IP.String()
}
