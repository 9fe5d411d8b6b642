package cache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// racyWindow: a file modified this recently may be modified again within
// the file system's timestamp granularity without its stat changing, so
// its digest is not remembered (the "racy git" problem).
const racyWindow = 2 * time.Second

// statEntryFile is what the stat cache keeps per path.
type statEntryFile struct {
	Path        string `json:"path"`
	Fingerprint string `json:"fingerprint"`
	Digest      string `json:"digest"`
}

// HashPath returns the digest of a local file or directory tree: a tree
// digest as HashTree defines it for a directory, and for a regular file the
// one-entry tree described in the package documentation. A symbolic link
// given as path is followed; links inside a tree are hashed as links.
//
// Results are cached in statcache/ by absolute path and a fingerprint of
// (size, mtime ns, inode, device, mode) of the file, or for a tree of every
// entry in it, so an unchanged input costs only stat calls.
func (s *Store) HashPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	info, err := os.Stat(real)
	if err != nil {
		return "", fmt.Errorf("hash %s: %w", path, err)
	}
	var fp string
	var newest time.Time
	switch {
	case info.Mode().IsRegular():
		fp, newest = fingerprint(nil, ".", info)
	case info.IsDir():
		fp, newest, err = treeFingerprint(real)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
	default:
		return "", fmt.Errorf("hash %s: not a regular file or directory", path)
	}
	id := sha256.Sum256([]byte(real))
	idHex := hex.EncodeToString(id[:])
	entryPath := s.dir("statcache", idHex[:2], idHex)
	if data, err := os.ReadFile(entryPath); err == nil {
		var e statEntryFile
		if json.Unmarshal(data, &e) == nil && e.Path == real && e.Fingerprint == fp {
			return e.Digest, nil
		}
	}
	var digest string
	if info.Mode().IsRegular() {
		sum, n, err := hashFile(real, false)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
		if n != info.Size() {
			return "", fmt.Errorf("hash %s: file changed while hashing", path)
		}
		typ := byte('f')
		if info.Mode().Perm()&0o111 != 0 {
			typ = 'x'
		}
		digest = fileDigest(typ, sum, n)
	} else {
		a, err := HashTree(real)
		if err != nil {
			return "", fmt.Errorf("hash %s: %w", path, err)
		}
		digest = a.Digest
	}
	if time.Since(newest) > racyWindow {
		data, _ := json.Marshal(statEntryFile{Path: real, Fingerprint: fp, Digest: digest})
		if err := os.MkdirAll(filepath.Dir(entryPath), 0o755); err == nil {
			_ = writeFileAtomic(s.dir("tmp"), entryPath, data, false) // a lost entry only costs a rehash
		}
	}
	return digest, nil
}

// fingerprint appends the stat identity of one entry to buf and returns it
// as a string together with the entry's mtime.
func fingerprint(buf []byte, rel string, info fs.FileInfo) (string, time.Time) {
	buf = append(buf, rel...)
	buf = append(buf, ' ')
	buf = append(buf, info.Mode().String()...)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, info.Size(), 10)
	buf = append(buf, ' ')
	buf = strconv.AppendInt(buf, info.ModTime().UnixNano(), 10)
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(st.Ino), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendUint(buf, uint64(st.Dev), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, int64(st.Ctim.Sec)*1e9+int64(st.Ctim.Nsec), 10)
	}
	buf = append(buf, '\n')
	return string(buf), info.ModTime()
}

// treeFingerprint hashes the stat identity of every entry of a tree (and
// the targets of its links) and returns the newest mtime among them.
func treeFingerprint(root string) (string, time.Time, error) {
	h := sha256.New()
	var newest time.Time
	var buf []byte
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var s string
		var mt time.Time
		s, mt = fingerprint(buf[:0], rel, info)
		if d.Type()&fs.ModeSymlink != 0 {
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			s += "-> " + t + "\n"
		}
		h.Write([]byte(s))
		if mt.After(newest) {
			newest = mt
		}
		return nil
	})
	if err != nil {
		return "", time.Time{}, err
	}
	return hex.EncodeToString(h.Sum(nil)), newest, nil
}
