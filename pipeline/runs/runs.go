// Package runs records pipeline runs: one directory per run under
// <root>/runs/<id>/ holding meta.json (who started what, when), plan.json
// (the resolved plan, written once) and events.jsonl (an append-only log of
// stage and progress events, one JSON object per line). A finished run also
// gets summary.json so that listing many runs does not reread their logs.
//
// The CLI lists and shows runs from it, the board follows a live run by
// tailing events.jsonl, and gc asks which cache keys recent runs used.
// While a run is being written its directory's lock file is flocked, so a
// reader can tell a live run from one whose process died. Stages the run
// hands to a cluster write their own events files under jobs/ (EventFile,
// one writer each), which the run's writer reads back (ReadEventsFrom).
//
// It does not interpret events beyond counting stage outcomes, and knows
// nothing about pipelines, stages or the cache.
package runs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Run statuses as reported by Summary.Status.
const (
	StatusSucceeded   = "succeeded"
	StatusFailed      = "failed"
	StatusCanceled    = "canceled"
	StatusRunning     = "running"     // no run-finished yet, writer alive
	StatusInterrupted = "interrupted" // no run-finished and the writer is gone
)

// Meta is what meta.json holds.
type Meta struct {
	Pipeline string    `json:"pipeline"`
	Args     []string  `json:"args"`
	Started  time.Time `json:"started"`
}

// Event is one line of events.jsonl.
type Event struct {
	Time     time.Time          `json:"time"`
	Type     string             `json:"type"` // run-started, run-finished, stage-started, stage-cached, stage-finished, stage-failed, stage-canceled, log, progress, metrics
	Stage    string             `json:"stage,omitempty"`
	Key      string             `json:"key,omitempty"`
	Message  string             `json:"message,omitempty"`
	Step     int64              `json:"step,omitempty"`
	Done     int64              `json:"done,omitempty"`
	Total    int64              `json:"total,omitempty"`
	Unit     string             `json:"unit,omitempty"`
	Metrics  map[string]float64 `json:"metrics,omitempty"`
	Status   string             `json:"status,omitempty"` // run-finished: succeeded|failed|canceled
	Duration time.Duration      `json:"duration,omitempty"`
	// Job is the cluster job that runs the stage (a Slurm job id), on the
	// events of a stage run by a cluster executor.
	Job string `json:"job,omitempty"`
}

// Run is one run directory, open for writing (Create) or reading (Open).
type Run struct {
	id   string
	dir  string
	meta Meta

	mu       sync.Mutex
	events   *os.File // append handle, opened lazily for Open'ed runs
	lock     *os.File // held while writing
	counts   StageCounts
	finished *Event
	keys     map[string]bool
}

// ID is the run's identifier, sortable by start time.
func (r *Run) ID() string { return r.id }

// Dir is the run's directory.
func (r *Run) Dir() string { return r.dir }

// Meta is the run's meta.json content.
func (r *Run) Meta() Meta { return r.meta }

func runsDir(root string) string { return filepath.Join(root, "runs") }

// Create starts a new run record under root/runs/.
func Create(root string, meta Meta) (*Run, error) {
	if meta.Started.IsZero() {
		meta.Started = time.Now()
	}
	meta.Started = meta.Started.UTC()
	if err := os.MkdirAll(runsDir(root), 0o755); err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	var id, dir string
	for attempt := 0; ; attempt++ {
		b := make([]byte, 2)
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("create run: %w", err)
		}
		id = meta.Started.Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
		dir = filepath.Join(runsDir(root), id)
		err := os.Mkdir(dir, 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || attempt > 100 {
			return nil, fmt.Errorf("create run: %w", err)
		}
	}
	r := &Run{id: id, dir: dir, meta: meta, keys: map[string]bool{}}
	lf, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create run: %w", err)
	}
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		lf.Close()
		return nil, fmt.Errorf("create run: lock: %w", err)
	}
	r.lock = lf
	data, _ := json.MarshalIndent(meta, "", "  ")
	if err := writeAtomic(filepath.Join(dir, "meta.json"), append(data, '\n')); err != nil {
		r.Close()
		return nil, fmt.Errorf("create run: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "events.jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("create run: %w", err)
	}
	r.events = f
	return r, nil
}

// Open opens an existing run for reading. id may be a unique prefix.
func Open(root, id string) (*Run, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || id == "." || id == ".." {
		return nil, fmt.Errorf("open run: bad id %q", id)
	}
	ents, err := os.ReadDir(runsDir(root))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("open run %s: no runs recorded under %s", id, root)
		}
		return nil, fmt.Errorf("open run: %w", err)
	}
	var matches []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if e.Name() == id {
			matches = []string{id}
			break
		}
		if strings.HasPrefix(e.Name(), id) {
			matches = append(matches, e.Name())
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("open run: no run %q", id)
	case 1:
	default:
		return nil, fmt.Errorf("open run: %q is ambiguous (%s)", id, strings.Join(matches, ", "))
	}
	dir := filepath.Join(runsDir(root), matches[0])
	r := &Run{id: matches[0], dir: dir, keys: map[string]bool{}}
	data, err := os.ReadFile(filepath.Join(dir, "meta.json"))
	if err != nil {
		return nil, fmt.Errorf("open run %s: %w", r.id, err)
	}
	if err := json.Unmarshal(data, &r.meta); err != nil {
		return nil, fmt.Errorf("open run %s: meta.json: %w", r.id, err)
	}
	return r, nil
}

// WritePlan writes v as plan.json, atomically.
func (r *Run) WritePlan(v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	if err := writeAtomic(filepath.Join(r.dir, "plan.json"), append(data, '\n')); err != nil {
		return fmt.Errorf("write plan: %w", err)
	}
	return nil
}

// ReadPlan decodes plan.json into v.
func (r *Run) ReadPlan(v any) error {
	data, err := os.ReadFile(filepath.Join(r.dir, "plan.json"))
	if err != nil {
		return fmt.Errorf("read plan: %w", err)
	}
	return json.Unmarshal(data, v)
}

// Append writes ev as one line of events.jsonl with a single O_APPEND
// write. A zero Time is set to now. It is safe for concurrent use. On a run
// opened with Open, the first Append reopens the log for appending and
// drops a torn last line left by a crash, so that the log stays parseable.
func (r *Run) Append(ev Event) error {
	line, err := eventLine(ev)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.events == nil {
		if err := r.reopenForAppend(); err != nil {
			return fmt.Errorf("append event: %w", err)
		}
	}
	if _, err := r.events.Write(line); err != nil {
		return fmt.Errorf("append event: %w", err)
	}
	r.note(ev)
	return nil
}

// note updates the running summary with ev.
func (r *Run) note(ev Event) {
	if ev.Key != "" {
		r.keys[ev.Key] = true
	}
	r.counts.add(ev)
	if ev.Type == "run-finished" {
		e := ev
		r.finished = &e
	}
}

func (r *Run) reopenForAppend() error {
	p := filepath.Join(r.dir, "events.jsonl")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return err
	}
	if n := len(data); n > 0 && data[n-1] != '\n' {
		if err := f.Truncate(int64(bytes.LastIndexByte(data, '\n') + 1)); err != nil {
			f.Close()
			return err
		}
	}
	f.Close()
	events, err := r.Events()
	if err != nil {
		return err
	}
	for _, ev := range events {
		r.note(ev)
	}
	f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	r.events = f
	return nil
}

// Close flushes the log and, when the run has finished, writes
// summary.json; then it releases the run's lock.
func (r *Run) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	if r.events != nil {
		errs = append(errs, r.events.Sync(), r.events.Close())
		r.events = nil
		if r.finished != nil {
			s := r.summaryLocked()
			data, _ := json.MarshalIndent(s, "", "  ")
			errs = append(errs, writeAtomic(filepath.Join(r.dir, "summary.json"), append(data, '\n')))
		}
	}
	if r.lock != nil {
		errs = append(errs, r.lock.Close()) // closing releases the flock
		r.lock = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close run %s: %w", r.id, err)
	}
	return nil
}

// Events reads the whole log. A last line without its newline (a crash
// mid-write) is ignored; any other malformed line is an error.
func (r *Run) Events() ([]Event, error) {
	f, err := os.Open(filepath.Join(r.dir, "events.jsonl"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("run %s events: %w", r.id, err)
	}
	defer f.Close()
	var out []Event
	_, err = readEvents(f, 0, func(ev Event) error {
		out = append(out, ev)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("run %s events: %w", r.id, err)
	}
	return out, nil
}

// readEvents decodes the complete lines of rd, starting at byte offset
// off, and returns the offset just past the last complete line.
func readEvents(rd io.Reader, off int64, fn func(Event) error) (int64, error) {
	br := bufio.NewReaderSize(rd, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			var ev Event
			if jerr := json.Unmarshal(line, &ev); jerr != nil {
				return off, fmt.Errorf("bad event at byte %d: %w", off, jerr)
			}
			off += int64(len(line))
			if ferr := fn(ev); ferr != nil {
				return off, ferr
			}
		}
		if err == io.EOF {
			return off, nil // an unterminated tail is left for later
		}
		if err != nil {
			return off, err
		}
	}
}

// errStop ends Follow once run-finished has been delivered.
var errStop = errors.New("stop")

// Follow calls fn for every event already in the log and then for each
// new one as it is appended, until a run-finished event has been delivered
// (returns nil), the writing process is gone without finishing the run
// (returns nil once everything it wrote was delivered; Summary then says
// "interrupted"), fn fails (returns its error) or ctx is done (returns
// ctx.Err()). It polls the log every 50ms.
func (r *Run) Follow(ctx context.Context, fn func(Event) error) error {
	p := filepath.Join(r.dir, "events.jsonl")
	var off int64
	for {
		// Decided before reading, so that events written just before the
		// writer exited are still delivered.
		writerGone := !r.live()
		f, err := os.Open(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("follow run %s: %w", r.id, err)
		}
		if err == nil {
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				f.Close()
				return fmt.Errorf("follow run %s: %w", r.id, err)
			}
			off, err = readEvents(f, off, func(ev Event) error {
				if ferr := fn(ev); ferr != nil {
					return ferr
				}
				if ev.Type == "run-finished" {
					return errStop
				}
				return nil
			})
			f.Close()
			if errors.Is(err, errStop) {
				return nil
			}
			if err != nil {
				return err
			}
		}
		if writerGone {
			return nil
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// StageCounts counts stage outcomes in a run.
type StageCounts struct {
	Ran      int `json:"ran"`
	Cached   int `json:"cached"`
	Failed   int `json:"failed"`
	Canceled int `json:"canceled"`
	Running  int `json:"running"` // started, no outcome yet, writer alive
	// Interrupted counts stages started without an outcome in a run whose
	// writer is gone.
	Interrupted int `json:"interrupted,omitempty"`
}

func (c *StageCounts) add(ev Event) {
	switch ev.Type {
	case "stage-started":
		c.Running++
	case "stage-finished":
		c.Ran++
		c.Running--
	case "stage-cached":
		c.Cached++
	case "stage-failed":
		c.Failed++
		c.Running--
	case "stage-canceled":
		c.Canceled++
		c.Running--
	}
	// A failure before stage-started (e.g. while locking) must not make
	// Running negative.
	c.Running = max(c.Running, 0)
}

// Summary describes one run for listings.
type Summary struct {
	ID       string      `json:"id"`
	Pipeline string      `json:"pipeline"`
	Args     []string    `json:"args,omitempty"`
	Started  time.Time   `json:"started"`
	Finished time.Time   `json:"finished,omitzero"`
	Status   string      `json:"status"`
	Stages   StageCounts `json:"stages"`
	Keys     []string    `json:"keys,omitempty"` // cache keys the run's stage events named
}

// StagesText renders the stage counts, e.g. "3 ran, 2 cached, 1 failed".
func (s Summary) StagesText() string {
	var parts []string
	add := func(n int, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(s.Stages.Ran, "ran")
	add(s.Stages.Cached, "cached")
	add(s.Stages.Failed, "failed")
	add(s.Stages.Canceled, "canceled")
	add(s.Stages.Running, "running")
	add(s.Stages.Interrupted, "interrupted")
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func (r *Run) summaryLocked() Summary {
	s := Summary{ID: r.id, Pipeline: r.meta.Pipeline, Args: r.meta.Args, Started: r.meta.Started, Stages: r.counts}
	if r.finished != nil {
		s.Finished = r.finished.Time
		s.Status = r.finished.Status
	}
	for k := range r.keys {
		s.Keys = append(s.Keys, k)
	}
	sort.Strings(s.Keys)
	return s
}

// Summary derives the run's summary, from summary.json when the run
// finished and was closed, else from its events.
func (r *Run) Summary() (Summary, error) {
	if data, err := os.ReadFile(filepath.Join(r.dir, "summary.json")); err == nil {
		var s Summary
		if err := json.Unmarshal(data, &s); err == nil && s.ID == r.id {
			return s, nil
		}
	}
	events, err := r.Events()
	if err != nil {
		return Summary{}, err
	}
	rr := &Run{id: r.id, dir: r.dir, meta: r.meta, keys: map[string]bool{}}
	for _, ev := range events {
		rr.note(ev)
	}
	s := rr.summaryLocked()
	if s.Status == "" {
		s.Status = StatusRunning
		if !r.live() {
			s.Status = StatusInterrupted
			s.Stages.Interrupted, s.Stages.Running = s.Stages.Running, 0
		}
	}
	return s, nil
}

// live reports whether a process holds the run's lock.
func (r *Run) live() bool {
	f, err := os.Open(filepath.Join(r.dir, "lock"))
	if err != nil {
		return false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
		return errors.Is(err, unix.EWOULDBLOCK)
	}
	_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
	return false
}

// List summarizes every run under root, newest first. A run directory
// that cannot be read is skipped.
func List(root string) ([]Summary, error) {
	ents, err := os.ReadDir(runsDir(root))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var out []Summary
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		r, err := Open(root, e.Name())
		if err != nil {
			continue
		}
		s, err := r.Summary()
		if err != nil {
			continue
		}
		out = append(out, s)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].Started.Equal(out[j].Started) {
			return out[i].Started.After(out[j].Started)
		}
		return out[i].ID > out[j].ID
	})
	return out, nil
}

// ReferencedKeys returns the cache keys named by the events of runs that
// started after since, for gc to keep.
func ReferencedKeys(root string, since time.Time) (map[string]bool, error) {
	list, err := List(root)
	if err != nil {
		return nil, err
	}
	keys := map[string]bool{}
	for _, s := range list {
		if !s.Started.After(since) {
			continue
		}
		for _, k := range s.Keys {
			keys[k] = true
		}
	}
	return keys, nil
}

// writeAtomic writes a small file through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return err
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
