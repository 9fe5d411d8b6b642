package gpu

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WorkerName is the CUDA worker binary's file name, and WorkerEnv the
// variable that names it explicitly.
const (
	WorkerName = "lathe-cuda"
	WorkerEnv  = "LATHE_CUDA_WORKER"
)

// BuildCommand is the command, run in lathe's source tree, that builds the
// worker at path.
func BuildCommand(path string) string {
	return "go build -tags cuda -o " + path + " ./cmd/lathe-cuda"
}

// ErrNoWorker is wrapped by FindWorker's error when no worker was found.
var ErrNoWorker = errors.New("the CUDA worker binary " + WorkerName + " was not found")

// FindWorker locates the CUDA worker: $LATHE_CUDA_WORKER when it is set
// (envValue, which must then name an executable file), else lathe-cuda in
// the directory of the running lathe (exe; "" means os.Executable). The
// worker is not looked up on PATH: the one beside lathe comes from the same
// build. The error says where it looked and how to build one.
func FindWorker(envValue, exe string) (string, error) {
	if envValue != "" {
		if err := checkExecutable(envValue); err != nil {
			return "", fmt.Errorf("%w: %s=%s %v", ErrNoWorker, WorkerEnv, envValue, err)
		}
		return envValue, nil
	}
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return "", fmt.Errorf("%w: cannot tell where lathe itself is (%v); set %s to the worker's path", ErrNoWorker, err, WorkerEnv)
		}
	}
	if resolved, err := filepath.EvalSymlinks(exe); err == nil {
		exe = resolved
	}
	path := filepath.Join(filepath.Dir(exe), WorkerName)
	if err := checkExecutable(path); err != nil {
		return "", fmt.Errorf("%w: %s %v and %s is not set; build it with `%s` in lathe's source tree (it needs cgo and the CUDA headers), or set %s to its path",
			ErrNoWorker, path, err, WorkerEnv, BuildCommand(path), WorkerEnv)
	}
	return path, nil
}

// checkExecutable says why path is not an executable file, or nil.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return errors.New("does not exist")
	case err != nil:
		return err
	case fi.IsDir():
		return errors.New("is a directory")
	case fi.Mode().Perm()&0o111 == 0:
		return errors.New("is not executable")
	}
	return nil
}
