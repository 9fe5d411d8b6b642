package runs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestEventFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jobs", "01-exec.a.events.jsonl")
	var got []Event
	collect := func(ev Event) error { got = append(got, ev); return nil }

	// Nothing yet: no events, offset unchanged.
	off, err := ReadEventsFrom(path, 0, collect)
	if err != nil || off != 0 || len(got) != 0 {
		t.Fatalf("missing file: off %d, %d events, err %v", off, len(got), err)
	}

	f, err := CreateEventFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []Event{
		{Type: "stage-started", Stage: "exec.a", Key: "k1"},
		{Type: "log", Stage: "exec.a", Message: "hello"},
	} {
		if err := f.Append(ev); err != nil {
			t.Fatal(err)
		}
	}
	off, err = ReadEventsFrom(path, 0, collect)
	if err != nil || len(got) != 2 || got[0].Key != "k1" || got[1].Message != "hello" || got[0].Time.IsZero() {
		t.Fatalf("first read: %d events %+v, err %v", len(got), got, err)
	}
	if err := f.Append(Event{Type: "stage-finished", Stage: "exec.a", Job: "42"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Append(Event{Type: "log"}); err == nil {
		t.Error("Append after Close succeeded")
	}
	off2, err := ReadEventsFrom(path, off, collect)
	if err != nil || len(got) != 3 || got[2].Type != "stage-finished" || got[2].Job != "42" || off2 <= off {
		t.Fatalf("second read from %d: %d events, off %d, err %v", off, len(got), off2, err)
	}

	// A torn line (a writer that crashed mid-write) is not delivered, and
	// the next writer drops it before continuing the file.
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteString(`{"type":"lo`)
	fh.Close()
	off3, err := ReadEventsFrom(path, off2, collect)
	if err != nil || off3 != off2 || len(got) != 3 {
		t.Fatalf("torn tail: off %d (want %d), %d events, err %v", off3, off2, len(got), err)
	}
	f, err = CreateEventFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Append(Event{Type: "stage-started", Stage: "exec.a", Message: "requeued"})
	f.Close()
	if _, err := ReadEventsFrom(path, off3, collect); err != nil || len(got) != 4 || got[3].Message != "requeued" {
		t.Fatalf("after a continued file: %d events, err %v", len(got), err)
	}

	// A malformed complete line is an error naming its offset.
	os.WriteFile(path, []byte("{\"type\":\"log\"}\nnot json\n"), 0o644)
	if _, err := ReadEventsFrom(path, 0, func(Event) error { return nil }); err == nil || !strings.Contains(err.Error(), "byte 15") {
		t.Errorf("malformed line: err %v, want one naming byte 15", err)
	}
}
