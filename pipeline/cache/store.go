package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// touchInterval is how stale a record's last-used time may get before a
// Lookup hit refreshes it. Refreshing on every hit would turn every plan
// into a burst of metadata writes; an hour is fine-grained enough for gc.
const touchInterval = time.Hour

// Store is an open content-addressed store. It is safe for concurrent use
// by goroutines and by processes sharing the same root.
type Store struct {
	root string
}

// Key identifies a cache entry: Sum is the hex SHA-256 of Text.
type Key struct {
	Sum  string
	Text string
}

// NewKey builds a key from labelled lines ("label value"). Text is the lines
// joined with "\n" plus a trailing "\n".
func NewKey(lines []string) Key {
	text := strings.Join(lines, "\n") + "\n"
	sum := sha256.Sum256([]byte(text))
	return Key{Sum: hex.EncodeToString(sum[:]), Text: text}
}

// Artifact describes one committed directory tree.
type Artifact struct {
	Digest string `json:"digest"` // "sha256:<hex>"
	Size   int64  `json:"size"`   // bytes of file content
	Files  int    `json:"files"`  // regular files and symbolic links
}

// Record is the cache entry of one key.
type Record struct {
	Key       string                     `json:"key"`      // Sum
	KeyText   string                     `json:"key_text"` // the exact key text
	Kind      string                     `json:"kind"`     // informational
	Address   string                     `json:"address"`  // informational, e.g. exec.prep
	Artifacts map[string]Artifact        `json:"artifacts"`
	Values    map[string]json.RawMessage `json:"values"`
	Created   time.Time                  `json:"created"`
	Duration  time.Duration              `json:"duration"`
}

var layoutDirs = []string{"records", "artifacts", "manifests", "staging", "checkpoints", "locks", "statcache", "tmp", "trash"}

// Open opens the store at root, creating its layout if needed.
func Open(root string) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	for _, d := range layoutDirs {
		if err := os.MkdirAll(filepath.Join(abs, d), 0o755); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	return &Store{root: abs}, nil
}

// Root is the absolute directory of the store.
func (s *Store) Root() string { return s.root }

func (s *Store) dir(parts ...string) string {
	return filepath.Join(append([]string{s.root}, parts...)...)
}

// validKey reports whether key is 64 lowercase hex digits.
func validKey(key string) bool {
	if len(key) != 64 {
		return false
	}
	for _, c := range key {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkKey(key string) error {
	if !validKey(key) {
		return fmt.Errorf("invalid cache key %q: want 64 lowercase hex digits", key)
	}
	return nil
}

// digestHex returns the hex part of "sha256:<hex>".
func digestHex(digest string) (string, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || !validKey(h) {
		return "", fmt.Errorf("invalid digest %q", digest)
	}
	return h, nil
}

func (s *Store) recordPath(key string) string {
	return s.dir("records", key[:2], key+".json")
}

// ArtifactPath is the read-only directory holding the committed artifact
// with the given digest ("sha256:<hex>"). It does not check existence.
func (s *Store) ArtifactPath(digest string) string {
	h, _ := strings.CutPrefix(digest, "sha256:")
	return s.dir("artifacts", h)
}

func (s *Store) manifestPath(hexDigest string) string {
	return s.dir("manifests", hexDigest)
}

// Lookup returns the record of key, or (nil, nil) when there is none or
// when one of its artifacts has gone missing (Verify reports that case).
// A hit costs one small file read and one stat per artifact; it refreshes
// the record's last-used time at most once per touchInterval.
func (s *Store) Lookup(key string) (*Record, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	p := s.recordPath(key)
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cache lookup: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cache lookup: %w", err)
	}
	rec, err := decodeRecord(f, key)
	if err != nil {
		return nil, fmt.Errorf("cache lookup: record %s: %w", p, err)
	}
	for _, a := range rec.Artifacts {
		if _, err := os.Stat(s.ArtifactPath(a.Digest)); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, nil
			}
			return nil, fmt.Errorf("cache lookup: %w", err)
		}
	}
	if now := time.Now(); now.Sub(info.ModTime()) > touchInterval {
		_ = os.Chtimes(p, now, now) // best effort; a read-only store still works
	}
	return rec, nil
}

func decodeRecord(f *os.File, key string) (*Record, error) {
	var rec Record
	dec := json.NewDecoder(f)
	if err := dec.Decode(&rec); err != nil {
		return nil, fmt.Errorf("corrupt record: %w", err)
	}
	if rec.Key != key {
		return nil, fmt.Errorf("corrupt record: holds key %q", rec.Key)
	}
	if rec.KeyText != "" {
		if sum := sha256.Sum256([]byte(rec.KeyText)); hex.EncodeToString(sum[:]) != key {
			return nil, errors.New("corrupt record: key text does not hash to the key")
		}
	}
	for name, a := range rec.Artifacts {
		if _, err := digestHex(a.Digest); err != nil {
			return nil, fmt.Errorf("corrupt record: artifact %s: %w", name, err)
		}
	}
	return &rec, nil
}

// readRecordFile reads and checks the record file of key.
func (s *Store) readRecordFile(key string) (*Record, error) {
	f, err := os.Open(s.recordPath(key))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return decodeRecord(f, key)
}

// Lock takes the per-key lock, waiting until it is free or ctx is done.
// Two processes sharing the store that lock the same key run one after the
// other; the lock is released by unlock or when the process dies.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	l, err := lockWait(ctx, s.dir("locks", key+".lock"), unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("lock cache key %.12s: %w", key, err)
	}
	return l.release, nil
}

// Staging is a private directory a stage writes its outputs into.
type Staging struct {
	// Dir is an empty directory to write outputs into: output "x" goes to
	// Dir/x.
	Dir  string
	lock *fileLock
	done bool
}

// NewStaging creates a fresh staging directory, marked live by a flock so
// that gc in another process leaves it alone.
func (s *Store) NewStaging() (*Staging, error) {
	id := time.Now().UTC().Format("20060102T150405") + "-" + randomID(6)
	lockPath := s.dir("staging", id+".lock")
	l, err := tryLock(lockPath, unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("new staging dir: %w", err)
	}
	if l == nil {
		return nil, fmt.Errorf("new staging dir: %s is locked", lockPath)
	}
	dir := s.dir("staging", id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		l.release()
		os.Remove(lockPath)
		return nil, fmt.Errorf("new staging dir: %w", err)
	}
	return &Staging{Dir: dir, lock: l}, nil
}

// Discard deletes the staging directory. It may be called more than once
// and after Commit.
func (st *Staging) Discard() error {
	if st.done {
		return nil
	}
	st.done = true
	err := removeTree(st.Dir)
	lockPath := st.Dir + ".lock"
	os.Remove(lockPath)
	st.lock.release()
	return err
}

// Commit moves the artifact outputs st.Dir/<name> into the store and
// writes rec, with Artifacts filled in, as the record of rec.Key, last and
// atomically. The staging directory is consumed whatever the outcome.
func (s *Store) Commit(st *Staging, artifactNames []string, rec Record) (*Record, error) {
	defer st.Discard()
	if st.done {
		return nil, errors.New("commit: staging directory already discarded")
	}
	if err := checkKey(rec.Key); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	if rec.KeyText != "" {
		if sum := sha256.Sum256([]byte(rec.KeyText)); hex.EncodeToString(sum[:]) != rec.Key {
			return nil, fmt.Errorf("commit: key %.12s is not the SHA-256 of the key text", rec.Key)
		}
	}
	if rec.Created.IsZero() {
		rec.Created = time.Now().UTC()
	}
	type pending struct {
		name     string
		dir      string
		art      Artifact
		manifest []byte
	}
	var outs []pending
	seen := map[string]bool{}
	for _, name := range artifactNames {
		if name == "" || name == "." || name == ".." || strings.ContainsAny(name, `/\`) || seen[name] {
			return nil, fmt.Errorf("commit: bad or repeated artifact name %q", name)
		}
		seen[name] = true
		dir := filepath.Join(st.Dir, name)
		info, err := os.Lstat(dir)
		if err != nil {
			return nil, fmt.Errorf("commit: artifact %s: %w", name, err)
		}
		if !info.IsDir() {
			return nil, fmt.Errorf("commit: artifact %s: %s is not a directory", name, dir)
		}
		art, manifest, err := hashTree(dir, true)
		if err != nil {
			return nil, fmt.Errorf("commit: artifact %s: %w", name, err)
		}
		outs = append(outs, pending{name, dir, art, manifest})
	}

	// From here to the record rename gc must not run.
	storeLock, err := lockWait(context.Background(), s.dir("locks", "store.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	defer storeLock.release()

	rec.Artifacts = map[string]Artifact{}
	for _, o := range outs {
		if err := s.moveIn(o.dir, o.art, o.manifest); err != nil {
			return nil, fmt.Errorf("commit: artifact %s: %w", o.name, err)
		}
		rec.Artifacts[o.name] = o.art
	}
	if testHookBeforeRecord != nil {
		if err := testHookBeforeRecord(); err != nil {
			return nil, err
		}
	}
	if err := s.writeRecord(&rec); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return &rec, nil
}

// testHookBeforeRecord, when set, runs after the artifacts have been moved
// and before the record is written; an error aborts the commit there, as a
// crash would.
var testHookBeforeRecord func() error

// moveIn makes the tree at dir read-only and renames it into the store
// under its digest, or discards it when that digest is already stored.
func (s *Store) moveIn(dir string, art Artifact, manifest []byte) error {
	h, err := digestHex(art.Digest)
	if err != nil {
		return err
	}
	dst := s.dir("artifacts", h)
	if _, err := os.Lstat(dst); err == nil {
		return removeTree(dir) // dedup
	}
	if err := writeFileAtomic(s.dir("tmp"), s.manifestPath(h), manifest, true); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := makeReadOnly(dir); err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	if err := os.Rename(dir, dst); err != nil {
		if _, serr := os.Lstat(dst); serr == nil {
			return removeTree(dir) // committed concurrently by someone else
		}
		return err
	}
	if err := os.Chmod(dst, 0o555); err != nil {
		return err
	}
	return syncDir(s.dir("artifacts"))
}

// writeRecord writes rec durably and atomically as the record of rec.Key.
func (s *Store) writeRecord(rec *Record) error {
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record: %w", err)
	}
	data = append(data, '\n')
	p := s.recordPath(rec.Key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := writeFileAtomic(s.dir("tmp"), p, data, true); err != nil {
		return fmt.Errorf("write record: %w", err)
	}
	return nil
}

// CheckpointDir returns the checkpoint directory tied to key, creating it
// on demand. It survives failed runs and is removed by RemoveCheckpoint
// (normally after a successful commit) or by gc.
func (s *Store) CheckpointDir(key string) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	d := s.dir("checkpoints", key)
	if err := os.MkdirAll(d, 0o755); err != nil {
		return "", fmt.Errorf("checkpoint dir: %w", err)
	}
	return d, nil
}

// RemoveCheckpoint deletes the checkpoint directory of key, if any.
func (s *Store) RemoveCheckpoint(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	return removeTree(s.dir("checkpoints", key))
}
