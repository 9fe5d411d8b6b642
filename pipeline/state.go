package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// stateIndex remembers, per pipeline directory and stage address, the key of
// the last committed (or reused) result. It exists only to explain plans:
// "changed" versus "new", and which key lines differ. Losing it loses
// explanations, never results.
type stateIndex struct {
	path string

	mu     sync.Mutex
	loaded map[string]stateEntry // as last read or written by this process
}

type stateEntry struct {
	Key  string    `json:"key"`
	Time time.Time `json:"time"`
}

func newStateIndex(storeRoot, pipelineDir string) *stateIndex {
	sum := sha256.Sum256([]byte(pipelineDir))
	return &stateIndex{path: filepath.Join(storeRoot, "state", hex.EncodeToString(sum[:8])+".json")}
}

func (s *stateIndex) load() (map[string]stateEntry, error) {
	m := map[string]stateEntry{}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		// A damaged index only costs explanations; start afresh.
		return map[string]stateEntry{}, nil
	}
	return m, nil
}

// last returns the key last recorded for addr, or "". The index is read
// from disk once per process; later changes by other processes are seen at
// the next record.
func (s *stateIndex) last(addr string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.loaded == nil {
		m, err := s.load()
		if err != nil {
			return ""
		}
		s.loaded = m
	}
	return s.loaded[addr].Key
}

// record stores key as the latest for addr. Concurrent writers (two runs of
// the same pipeline) serialise on a lock file; the file is replaced by rename.
func (s *stateIndex) record(addr, key string) error {
	if s.last(addr) == key {
		return nil // nothing new: no need to touch the file
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := os.MkdirAll(filepath.Dir(s.path), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("lock state index: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	m, err := s.load()
	if err != nil {
		return err
	}
	s.loaded = m
	if m[addr].Key == key {
		return nil
	}
	m[addr] = stateEntry{Key: key, Time: time.Now().UTC()}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", s.path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, s.path)
}
