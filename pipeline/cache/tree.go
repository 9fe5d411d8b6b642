package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// hashBufSize is the size of the per-worker read buffer.
const hashBufSize = 1 << 20

// maxHashWorkers bounds the number of files hashed at once.
const maxHashWorkers = 8

var bufPool = sync.Pool{New: func() any { b := make([]byte, hashBufSize); return &b }}

// testHookReadFile, when set, is called with the path of every file whose
// content is read for hashing. Tests use it to count rereads.
var testHookReadFile func(path string)

// treeEntry is one entry of a tree being hashed.
type treeEntry struct {
	typ  byte   // 'd', 'f', 'x' or 'l'
	rel  string // slash path relative to the root
	abs  string // OS path
	size int64
	sum  string // hex sha256 of content or link target; "-" for directories
}

func (e *treeEntry) line() string {
	return string(e.typ) + " " + e.sum + " " + strconv.FormatInt(e.size, 10) + " " + e.rel + "\n"
}

// HashTree computes the digest of the directory tree at dir, as defined in
// the package documentation, together with its total file size and number
// of non-directory entries. It needs no store.
func HashTree(dir string) (Artifact, error) {
	a, _, err := hashTree(dir, false)
	return a, err
}

// hashTree hashes the tree at dir and also returns its manifest (the digest
// lines). With durable set every file is fsynced after it is read.
func hashTree(dir string, durable bool) (Artifact, []byte, error) {
	entries, err := walkTree(dir)
	if err != nil {
		return Artifact{}, nil, err
	}
	if err := hashEntries(entries, durable); err != nil {
		return Artifact{}, nil, err
	}
	return summarize(entries)
}

func summarize(entries []treeEntry) (Artifact, []byte, error) {
	var manifest strings.Builder
	var a Artifact
	for i := range entries {
		e := &entries[i]
		manifest.WriteString(e.line())
		switch e.typ {
		case 'f', 'x':
			a.Size += e.size
			a.Files++
		case 'l':
			a.Files++
		}
	}
	sum := sha256.Sum256([]byte(manifest.String()))
	a.Digest = "sha256:" + hex.EncodeToString(sum[:])
	return a, []byte(manifest.String()), nil
}

// walkTree lists the entries below dir, sorted by slash path, with links
// resolved to their targets but file contents not yet hashed.
func walkTree(dir string) ([]treeEntry, error) {
	info, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("hash tree: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("hash tree: %s is not a directory", dir)
	}
	var entries []treeEntry
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if strings.ContainsAny(rel, "\n\r") {
			return fmt.Errorf("path %q contains a line break", rel)
		}
		e, err := statEntry(p, rel, d.Type())
		if err != nil {
			return err
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("hash tree %s: %w", dir, err)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].rel < entries[j].rel })
	return entries, nil
}

// statEntry describes one entry; for regular files the content hash is
// left for hashEntries.
func statEntry(p, rel string, typ fs.FileMode) (treeEntry, error) {
	e := treeEntry{rel: rel, abs: p}
	switch {
	case typ.IsDir():
		e.typ, e.sum = 'd', "-"
	case typ&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return e, err
		}
		if err := checkLink(rel, target); err != nil {
			return e, err
		}
		sum := sha256.Sum256([]byte(target))
		e.typ, e.sum, e.size = 'l', hex.EncodeToString(sum[:]), int64(len(target))
	case typ.IsRegular():
		info, err := os.Lstat(p)
		if err != nil {
			return e, err
		}
		e.typ, e.size = 'f', info.Size()
		if info.Mode().Perm()&0o111 != 0 {
			e.typ = 'x'
		}
	default:
		return e, fmt.Errorf("%s: unsupported file type %v", rel, typ)
	}
	return e, nil
}

// checkLink refuses absolute link targets and targets that leave the tree.
// The check is lexical: it does not follow other links on the way.
func checkLink(rel, target string) error {
	t := filepath.ToSlash(target)
	if path.IsAbs(t) || filepath.IsAbs(target) {
		return fmt.Errorf("%s: symbolic link to absolute path %q", rel, target)
	}
	if strings.ContainsAny(t, "\n\r") {
		return fmt.Errorf("%s: symbolic link target contains a line break", rel)
	}
	j := path.Join(path.Dir(rel), t)
	if j == ".." || strings.HasPrefix(j, "../") {
		return fmt.Errorf("%s: symbolic link %q points outside the tree", rel, target)
	}
	return nil
}

// hashEntries fills in the content hashes of the regular files, using a
// bounded pool of workers that each reuse one buffer.
func hashEntries(entries []treeEntry, durable bool) error {
	var files []int
	for i := range entries {
		if entries[i].typ == 'f' || entries[i].typ == 'x' {
			files = append(files, i)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), maxHashWorkers, len(files))
	if workers <= 1 {
		for _, i := range files {
			if err := hashFileEntry(&entries[i], durable); err != nil {
				return err
			}
		}
		return nil
	}
	next := make(chan int)
	errs := make([]error, len(entries))
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = hashFileEntry(&entries[i], durable)
			}
		}()
	}
	for _, i := range files {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

func hashFileEntry(e *treeEntry, durable bool) error {
	sum, n, err := hashFile(e.abs, durable)
	if err != nil {
		return err
	}
	if n != e.size {
		return fmt.Errorf("%s: file changed while hashing (size %d, then %d)", e.rel, e.size, n)
	}
	e.sum = sum
	return nil
}

// hashFile returns the hex SHA-256 of a file's content and its length.
func hashFile(p string, durable bool) (string, int64, error) {
	if testHookReadFile != nil {
		testHookReadFile(p)
	}
	f, err := os.Open(p)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	h := sha256.New()
	// Hide f's WriterTo so that io.CopyBuffer uses our buffer.
	n, err := io.CopyBuffer(h, struct{ io.Reader }{f}, *bp)
	if err != nil {
		return "", 0, fmt.Errorf("read %s: %w", p, err)
	}
	if durable {
		if err := f.Sync(); err != nil {
			return "", 0, fmt.Errorf("fsync %s: %w", p, err)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// fileDigest is the digest of a single regular file as a one-entry tree
// whose entry path is ".".
func fileDigest(typ byte, sum string, size int64) string {
	e := treeEntry{typ: typ, sum: sum, size: size, rel: "."}
	d := sha256.Sum256([]byte(e.line()))
	return "sha256:" + hex.EncodeToString(d[:])
}

// parseManifest splits a manifest into its entries, keyed by path.
func parseManifest(data []byte) (map[string]treeEntry, error) {
	out := map[string]treeEntry{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, " ", 4)
		if len(parts) != 4 || len(parts[0]) != 1 {
			return nil, fmt.Errorf("bad manifest line %q", line)
		}
		size, err := strconv.ParseInt(parts[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("bad manifest line %q", line)
		}
		out[parts[3]] = treeEntry{typ: parts[0][0], sum: parts[1], size: size, rel: parts[3]}
	}
	return out, nil
}
