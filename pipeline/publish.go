package pipeline

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lathe-ml/lathe/pipeline/runs"
)

// Publication is one publish target of a run: an artifact copied to a path
// in the workspace.
type Publication struct {
	Stage  string // instance address
	Output string
	Path   string // relative to the pipeline directory, slash-separated
	Digest string
	Err    error
}

// publish copies the artifacts named by publish meta-arguments to their
// targets, for every stage that ran or was reused in the run.
func (ws *Workspace) publish(res *RunResult, emit func(runs.Event)) []Publication {
	var out []Publication
	for _, s := range res.Stages {
		if s.Status != StatusRan && s.Status != StatusCached {
			continue
		}
		inst := ws.Resolved.Instance(s.Addr)
		if inst == nil {
			continue
		}
		for _, t := range inst.Publish {
			p := Publication{Stage: s.Addr, Output: t.Output, Path: filepath.ToSlash(t.Path), Digest: s.Artifacts[t.Output]}
			start := time.Now()
			target := filepath.Join(ws.Pipeline.Dir, t.Path)
			if p.Digest == "" {
				p.Err = fmt.Errorf("publish %s: %s has no %q artifact in this run", p.Path, s.Addr, t.Output)
			} else if overlaps(target, ws.Store.Root()) {
				p.Err = fmt.Errorf("publish %s: the target overlaps the artifact store %s", p.Path, ws.Store.Root())
			} else if err := ReplaceTree(ws.Store.ArtifactPath(p.Digest), target); err != nil {
				p.Err = fmt.Errorf("publish %s.%s to %s: %w", s.Addr, t.Output, p.Path, err)
			}
			ev := runs.Event{Type: "log", Stage: s.Addr, Duration: time.Since(start)}
			if p.Err != nil {
				ev.Message = "publish failed: " + p.Err.Error()
			} else {
				ev.Message = fmt.Sprintf("published %s to %s", t.Output, p.Path)
			}
			emit(ev)
			out = append(out, p)
		}
	}
	return out
}

// overlaps reports whether one of two absolute paths is the other or lies
// inside it.
func overlaps(a, b string) bool {
	a, b = filepath.Clean(a), filepath.Clean(b)
	sep := string(filepath.Separator)
	return a == b || strings.HasPrefix(a, b+sep) || strings.HasPrefix(b, a+sep)
}

// ReplaceTree makes dst a writable copy of the directory tree src, never
// leaving a half-copied dst: the copy is made in a temporary directory
// beside dst and renamed over it (atomically exchanged with an existing dst
// where the system allows, else dst is moved aside for the instant of the
// rename). Files keep their executable bit; symbolic links are copied as
// links.
func ReplaceTree(src, dst string) error {
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(dst)+".tmp-")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			_ = os.RemoveAll(tmp)
		}
	}()
	if err := copyTree(src, tmp); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dst); err != nil {
			return err
		}
		ok = true
		return nil
	}
	if err := exchange(tmp, dst); err == nil {
		ok = true
		return os.RemoveAll(tmp) // tmp now holds the old tree
	}
	old := tmp + ".old"
	if err := os.Rename(dst, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Rename(old, dst)
		return err
	}
	ok = true
	return os.RemoveAll(old)
}

// copyTree copies the contents of directory src into the existing
// directory dst.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.Mkdir(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			return copyFile(p, target, info.Mode().Perm()|0o644)
		default:
			return fmt.Errorf("%s: not a regular file, directory or link", p)
		}
	})
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
