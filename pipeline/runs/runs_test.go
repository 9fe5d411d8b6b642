package runs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func mustCreate(t *testing.T, root string, started time.Time) *Run {
	t.Helper()
	r, err := Create(root, Meta{Pipeline: "/p/pipeline.hcl", Args: []string{"lathe", "run"}, Started: started})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestCreateAppendEvents(t *testing.T) {
	root := t.TempDir()
	started := time.Date(2026, 11, 28, 11, 22, 33, 0, time.UTC)
	r := mustCreate(t, root, started)
	if !regexp.MustCompile(`^20261128T112233Z-[0-9a-f]{4}$`).MatchString(r.ID()) {
		t.Fatalf("id %q", r.ID())
	}
	if err := r.WritePlan(map[string]any{"stages": []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	want := []Event{
		{Type: "run-started"},
		{Type: "stage-started", Stage: "exec.a", Key: "k1"},
		{Type: "progress", Stage: "exec.a", Done: 5, Total: 10, Unit: "rows"},
		{Type: "metrics", Stage: "exec.a", Step: 3, Metrics: map[string]float64{"loss": 1.5}},
		{Type: "stage-finished", Stage: "exec.a", Key: "k1", Duration: time.Second},
		{Type: "stage-cached", Stage: "exec.b", Key: "k2"},
		{Type: "run-finished", Status: StatusSucceeded},
	}
	for _, ev := range want {
		if err := r.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	o, err := Open(root, r.ID()[:18]) // unique prefix
	if err != nil {
		t.Fatal(err)
	}
	if o.Meta().Pipeline != "/p/pipeline.hcl" || !o.Meta().Started.Equal(started) {
		t.Fatalf("meta %+v", o.Meta())
	}
	got, err := o.Events()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d events, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Time.IsZero() {
			t.Errorf("event %d has no time", i)
		}
		got[i].Time = time.Time{}
		if got[i].Type != want[i].Type || got[i].Stage != want[i].Stage || got[i].Key != want[i].Key ||
			got[i].Done != want[i].Done || got[i].Duration != want[i].Duration || got[i].Metrics["loss"] != want[i].Metrics["loss"] {
			t.Errorf("event %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	var plan struct{ Stages []string }
	if err := o.ReadPlan(&plan); err != nil || len(plan.Stages) != 2 {
		t.Fatalf("plan %+v %v", plan, err)
	}
}

func TestTruncatedLastLine(t *testing.T) {
	root := t.TempDir()
	r := mustCreate(t, root, time.Now())
	r.Append(Event{Type: "run-started"})
	r.Append(Event{Type: "stage-started", Stage: "a"})
	r.Close()
	// A crash mid-write leaves half a line.
	f, _ := os.OpenFile(filepath.Join(r.Dir(), "events.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"time":"2026-11-28T11:00:00Z","type":"stage-fin`)
	f.Close()
	o, err := Open(root, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	evs, err := o.Events()
	if err != nil || len(evs) != 2 {
		t.Fatalf("events %v %v", evs, err)
	}
	s, err := o.Summary()
	if err != nil || s.Status != StatusInterrupted || s.Stages.Interrupted != 1 {
		t.Fatalf("summary %+v %v", s, err)
	}
	// Appending later (resume) drops the torn line and keeps the log valid.
	if err := o.Append(Event{Type: "stage-failed", Stage: "a"}); err != nil {
		t.Fatal(err)
	}
	evs, err = o.Events()
	if err != nil || len(evs) != 3 || evs[2].Type != "stage-failed" {
		t.Fatalf("after append: %v %v", evs, err)
	}
	o.Close()
	// A malformed line in the middle is an error, not silently skipped.
	os.WriteFile(filepath.Join(r.Dir(), "events.jsonl"), []byte("{\"type\":\"a\"}\nnot json\n{\"type\":\"b\"}\n"), 0o644)
	if _, err := o.Events(); err == nil || !strings.Contains(err.Error(), "byte 13") {
		t.Fatalf("malformed middle line: %v", err)
	}
}

func TestAppendConcurrent(t *testing.T) {
	r := mustCreate(t, t.TempDir(), time.Now())
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				if err := r.Append(Event{Type: "log", Message: strings.Repeat("x", 500)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	r.Close()
	evs, err := r.Events()
	if err != nil || len(evs) != 400 {
		t.Fatalf("%d events, %v", len(evs), err)
	}
}

func TestListAndSummary(t *testing.T) {
	root := t.TempDir()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	// Finished, closed.
	a := mustCreate(t, root, t0)
	a.Append(Event{Type: "stage-started", Stage: "x", Key: "ka"})
	a.Append(Event{Type: "stage-finished", Stage: "x", Key: "ka"})
	a.Append(Event{Type: "stage-cached", Stage: "y", Key: "kb"})
	a.Append(Event{Type: "stage-started", Stage: "z", Key: "kc"})
	a.Append(Event{Type: "stage-failed", Stage: "z", Key: "kc"})
	a.Append(Event{Type: "run-finished", Status: StatusFailed, Time: t0.Add(time.Minute)})
	a.Close()
	// Still running (open, lock held).
	b := mustCreate(t, root, t0.Add(time.Hour))
	b.Append(Event{Type: "stage-started", Stage: "x", Key: "kd"})
	defer b.Close()
	// Process died: closed without run-finished.
	c := mustCreate(t, root, t0.Add(2*time.Hour))
	c.Append(Event{Type: "stage-cached", Stage: "x", Key: "ke"})
	c.Close()

	list, err := List(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 || list[0].ID != c.ID() || list[1].ID != b.ID() || list[2].ID != a.ID() {
		t.Fatalf("order: %+v", list)
	}
	if s := list[2]; s.Status != StatusFailed || !s.Finished.Equal(t0.Add(time.Minute)) ||
		s.Stages != (StageCounts{Ran: 1, Cached: 1, Failed: 1}) || s.StagesText() != "1 ran, 1 cached, 1 failed" {
		t.Fatalf("finished run: %+v %q", s, s.StagesText())
	}
	if _, err := os.Stat(filepath.Join(a.Dir(), "summary.json")); err != nil {
		t.Fatal("no summary.json after close")
	}
	if s := list[1]; s.Status != StatusRunning || s.Stages.Running != 1 {
		t.Fatalf("running run: %+v", s)
	}
	if s := list[0]; s.Status != StatusInterrupted || !s.Finished.IsZero() {
		t.Fatalf("dead run: %+v", s)
	}

	keys, err := ReferencedKeys(root, t0.Add(30*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || !keys["kd"] || !keys["ke"] {
		t.Fatalf("referenced keys %v", keys)
	}
	all, _ := ReferencedKeys(root, time.Time{})
	if len(all) != 5 {
		t.Fatalf("all keys %v", all)
	}
}

func TestOpenErrors(t *testing.T) {
	root := t.TempDir()
	t0 := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	a, b := mustCreate(t, root, t0), mustCreate(t, root, t0)
	a.Close()
	b.Close()
	for _, id := range []string{"2026", "1999", "../x", ""} {
		if _, err := Open(root, id); err == nil {
			t.Errorf("Open(%q) succeeded", id)
		}
	}
	if r, err := Open(root, b.ID()); err != nil || r.ID() != b.ID() {
		t.Fatalf("exact id: %v", err)
	}
	if l, err := List(filepath.Join(root, "nothing")); err != nil || len(l) != 0 {
		t.Fatalf("list of empty root: %v %v", l, err)
	}
}

func TestFollow(t *testing.T) {
	root := t.TempDir()
	r := mustCreate(t, root, time.Now())
	r.Append(Event{Type: "run-started"})
	r.Append(Event{Type: "log", Message: "before"})

	reader, err := Open(root, r.ID())
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan Event, 100)
	done := make(chan error, 1)
	go func() {
		done <- reader.Follow(context.Background(), func(ev Event) error {
			seen <- ev
			return nil
		})
	}()
	// The replay arrives first; only then append more.
	for i := 0; i < 2; i++ {
		<-seen
	}
	r.Append(Event{Type: "log", Message: "after"})
	if ev := <-seen; ev.Message != "after" {
		t.Fatalf("followed %+v", ev)
	}
	// A line written in two pieces is delivered once, whole.
	f, _ := os.OpenFile(filepath.Join(r.Dir(), "events.jsonl"), os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"type":"log","mess`)
	time.Sleep(120 * time.Millisecond) // let Follow poll the torn tail at least once
	f.WriteString(`age":"split"}` + "\n")
	f.Close()
	if ev := <-seen; ev.Message != "split" {
		t.Fatalf("followed %+v", ev)
	}
	r.Append(Event{Type: "run-finished", Status: StatusSucceeded})
	if ev := <-seen; ev.Type != "run-finished" {
		t.Fatalf("followed %+v", ev)
	}
	if err := <-done; err != nil {
		t.Fatalf("Follow returned %v", err)
	}
	r.Close()

	// A run whose writer went away without run-finished ends Follow after
	// the replay instead of hanging.
	dead := mustCreate(t, root, time.Now())
	dead.Append(Event{Type: "stage-started", Stage: "a"})
	dead.Close()
	var n int
	if err := dead.Follow(context.Background(), func(Event) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("Follow of an interrupted run: %d events, %v", n, err)
	}

	// Cancellation, and an error from fn, end Follow.
	live := mustCreate(t, root, time.Now())
	defer live.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := live.Follow(ctx, func(Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled Follow: %v", err)
	}
	live.Append(Event{Type: "log"})
	boom := errors.New("boom")
	if err := live.Follow(context.Background(), func(Event) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Follow with failing fn: %v", err)
	}
}

func TestCrashedLogFixture(t *testing.T) {
	// testdata/crashed-events.jsonl ends in half a line, as left by a
	// process killed mid-write.
	root := t.TempDir()
	dir := filepath.Join(root, "runs", "20261128T112233Z-dead")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "meta.json"), []byte(`{"pipeline":"p","started":"2026-11-28T11:22:33Z"}`), 0o644)
	data, err := os.ReadFile(filepath.Join("testdata", "crashed-events.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "events.jsonl"), data, 0o644)
	r, err := Open(root, "20261128")
	if err != nil {
		t.Fatal(err)
	}
	evs, err := r.Events()
	if err != nil || len(evs) != 2 || evs[1].Stage != "exec.prep" {
		t.Fatalf("events %+v %v", evs, err)
	}
	list, err := List(root)
	if err != nil || len(list) != 1 || list[0].Status != StatusInterrupted || list[0].StagesText() != "1 interrupted" {
		t.Fatalf("list %+v %v", list, err)
	}
}
