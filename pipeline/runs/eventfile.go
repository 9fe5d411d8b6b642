package runs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// JobsDir is the directory, inside a run's directory, where the stages the
// run hands to a cluster keep their files: each one's events file, and
// whatever the cluster executor keeps beside it (batch script, output log).
func (r *Run) JobsDir() string { return filepath.Join(r.dir, "jobs") }

// EventFile is an append-only events file (one JSON event per line, like
// events.jsonl) written by a process other than the run's writer: a stage
// that runs elsewhere (`lathe stage exec` on a cluster node) records its
// events there, and the run's writer reads them back with ReadEventsFrom
// and records them in the run. Each file has a single writer, so it works
// on network filesystems, where appends from several hosts to one file are
// not atomic.
type EventFile struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// CreateEventFile opens path for appending, creating it and its directory
// if needed. An existing file is continued (a job that the cluster
// requeued appends to what its first attempt wrote); a torn last line left
// by a writer that crashed mid-write is dropped first, so the file stays
// parseable.
func CreateEventFile(path string) (*EventFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	data, err := io.ReadAll(f)
	if err == nil {
		if n := len(data); n > 0 && data[n-1] != '\n' {
			err = f.Truncate(int64(bytes.LastIndexByte(data, '\n') + 1))
		}
	}
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("events file %s: %w", path, err)
	}
	f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("events file: %w", err)
	}
	return &EventFile{f: f, path: path}, nil
}

// Path is the file's path.
func (e *EventFile) Path() string { return e.path }

// Append writes ev as one line with a single write. A zero Time is set to
// now. It is safe for concurrent use.
func (e *EventFile) Append(ev Event) error {
	line, err := eventLine(ev)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return fmt.Errorf("append event: %s is closed", e.path)
	}
	if _, err := e.f.Write(line); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	return nil
}

// Close syncs and closes the file.
func (e *EventFile) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.f == nil {
		return nil
	}
	err := errors.Join(e.f.Sync(), e.f.Close())
	e.f = nil
	if err != nil {
		return fmt.Errorf("close events file %s: %w", e.path, err)
	}
	return nil
}

// ReadEventsFrom calls fn for each complete event line of the events file
// at path from byte offset off on, and returns the offset just past the
// last complete line, to continue from on the next call. A file that does
// not exist yet holds no events; an unterminated last line (being written)
// is left for the next call; a malformed complete line is an error that
// names its offset.
func ReadEventsFrom(path string, off int64, fn func(Event) error) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return off, nil
		}
		return off, fmt.Errorf("read events: %w", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return off, fmt.Errorf("read events %s: %w", path, err)
	}
	n, err := readEvents(f, off, fn)
	if err != nil {
		return n, fmt.Errorf("read events %s: %w", path, err)
	}
	return n, nil
}

// eventLine is ev as one line of an events file (a zero Time set to now).
func eventLine(ev Event) ([]byte, error) {
	if ev.Time.IsZero() {
		ev.Time = time.Now().UTC()
	}
	line, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("append event: %w", err)
	}
	return append(line, '\n'), nil
}
