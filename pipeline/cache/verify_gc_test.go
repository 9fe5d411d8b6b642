package cache

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestVerify(t *testing.T) {
	s := openStore(t)
	good := commit(t, s, testKey("good"), map[string]map[string]string{"out": {"keep.txt": "fine"}})
	flip := commit(t, s, testKey("flip"), map[string]map[string]string{"model": {"weights.bin": "ABCDEFGH", "config.json": "{}"}})
	gone := commit(t, s, testKey("gone"), map[string]map[string]string{"data": {"rows.txt": "1\n2\n"}})
	ctx := context.Background()
	if probs, err := s.Verify(ctx); err != nil || len(probs) != 0 {
		t.Fatalf("fresh store: %v %v", probs, err)
	}

	// Flip one byte of one artifact file.
	wpath := filepath.Join(s.ArtifactPath(flip.Artifacts["model"].Digest), "weights.bin")
	os.Chmod(wpath, 0o644)
	data, _ := os.ReadFile(wpath)
	data[3] ^= 0x01
	if err := os.WriteFile(wpath, data, 0o444); err != nil {
		t.Fatal(err)
	}
	// Remove another artifact entirely.
	if err := removeTree(s.ArtifactPath(gone.Artifacts["data"].Digest)); err != nil {
		t.Fatal(err)
	}

	probs, err := s.Verify(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 2 {
		t.Fatalf("want 2 problems, got %d: %v", len(probs), probs)
	}
	var corrupt, missing *Problem
	for i := range probs {
		switch probs[i].Kind {
		case ProblemCorruptArtifact:
			corrupt = &probs[i]
		case ProblemMissingArtifact:
			missing = &probs[i]
		}
	}
	if corrupt == nil || missing == nil {
		t.Fatalf("problems %v", probs)
	}
	if corrupt.Digest != flip.Artifacts["model"].Digest || corrupt.Actual == "" || corrupt.Actual == corrupt.Digest {
		t.Fatalf("corrupt problem digests: %+v", corrupt)
	}
	msg := corrupt.String()
	for _, want := range []string{"weights.bin", flip.Artifacts["model"].Digest, corrupt.Actual, flip.Key[:12]} {
		if !strings.Contains(msg, want) {
			t.Errorf("corrupt report %q does not name %q", msg, want)
		}
	}
	if strings.Contains(msg, "config.json") {
		t.Errorf("corrupt report blames an intact file: %q", msg)
	}
	if missing.Key != gone.Key || missing.Output != "data" || !strings.Contains(missing.String(), gone.Artifacts["data"].Digest) {
		t.Fatalf("missing problem: %+v", missing)
	}
	// Lookup of a record with a missing artifact is a miss, not a
	// dangling hit.
	if rec, err := s.Lookup(gone.Key); rec != nil || err != nil {
		t.Fatalf("lookup with missing artifact: %v %v", rec, err)
	}

	// Verify changed nothing; Remove deletes exactly the broken entries.
	if rec, _ := s.readRecordFile(flip.Key); rec == nil {
		t.Fatal("verify removed a record by itself")
	}
	if err := s.Remove(probs); err != nil {
		t.Fatal(err)
	}
	if probs, err := s.Verify(ctx); err != nil || len(probs) != 0 {
		t.Fatalf("after remove: %v %v", probs, err)
	}
	for _, k := range []string{flip.Key, gone.Key} {
		if rec, _ := s.Lookup(k); rec != nil {
			t.Errorf("broken record %s still there", k[:12])
		}
	}
	if rec, _ := s.Lookup(good.Key); rec == nil {
		t.Error("intact record removed")
	}
}

func TestVerifyCorruptRecord(t *testing.T) {
	s := openStore(t)
	r := commit(t, s, testKey("rec"), map[string]map[string]string{"out": {"f": "x"}})
	os.WriteFile(s.recordPath(r.Key), []byte("{not json"), 0o644)
	probs, err := s.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(probs) != 1 || probs[0].Kind != ProblemCorruptRecord || !strings.Contains(probs[0].String(), r.Key) {
		t.Fatalf("problems %v", probs)
	}
	// A record whose key text was edited no longer matches its key.
	rec2 := commit(t, s, testKey("edited"), map[string]map[string]string{"out": {"f": "y"}})
	data, _ := os.ReadFile(s.recordPath(rec2.Key))
	os.WriteFile(s.recordPath(rec2.Key), []byte(strings.Replace(string(data), "test edited", "test edit3d", 1)), 0o644)
	if _, err := s.Lookup(rec2.Key); err == nil || !strings.Contains(err.Error(), "key text") {
		t.Fatalf("lookup of edited record: %v", err)
	}
	if probs, _ := s.Verify(context.Background()); len(probs) != 2 {
		t.Fatalf("problems %v", probs)
	}
}

// age sets the last-used time of a record.
func age(t *testing.T, s *Store, key string, d time.Duration) {
	t.Helper()
	when := time.Now().Add(-d)
	if err := os.Chtimes(s.recordPath(key), when, when); err != nil {
		t.Fatal(err)
	}
}

func keysOf(s *Store) map[string]bool {
	out := map[string]bool{}
	list, _ := s.List()
	for _, r := range list {
		out[r.Key] = true
	}
	return out
}

func TestGC(t *testing.T) {
	// Four records of 1000 bytes each, last used 4, 3, 2 and 1 days ago;
	// "shared" shares its artifact with "new".
	type setup struct {
		s                        *Store
		old, mid, shared, newRec *Record
	}
	mk := func(t *testing.T) setup {
		s := openStore(t)
		blob := func(c byte) string { return strings.Repeat(string(c), 1000) }
		st := setup{s: s}
		st.old = commit(t, s, testKey("old"), map[string]map[string]string{"out": {"f": blob('o')}})
		st.mid = commit(t, s, testKey("mid"), map[string]map[string]string{"out": {"f": blob('m')}})
		st.shared = commit(t, s, testKey("shared"), map[string]map[string]string{"out": {"f": blob('n')}})
		st.newRec = commit(t, s, testKey("new"), map[string]map[string]string{"out": {"f": blob('n')}})
		age(t, s, st.old.Key, 96*time.Hour)
		age(t, s, st.mid.Key, 72*time.Hour)
		age(t, s, st.shared.Key, 48*time.Hour)
		age(t, s, st.newRec.Key, 24*time.Hour)
		return st
	}
	tests := []struct {
		name      string
		opt       func(setup) GCOptions
		gone      func(setup) []*Record
		artifacts int // removed
		freed     int64
	}{
		{"older than", func(setup) GCOptions { return GCOptions{OlderThan: 60 * time.Hour} },
			func(st setup) []*Record { return []*Record{st.old, st.mid} }, 2, 2000},
		{"older than with keep", func(st setup) GCOptions {
			return GCOptions{OlderThan: 60 * time.Hour, Keep: map[string]bool{st.old.Key: true}}
		}, func(st setup) []*Record { return []*Record{st.mid} }, 1, 1000},
		// 3000 bytes stored; evicting old and mid gets to 1000.
		{"max size", func(setup) GCOptions { return GCOptions{MaxSize: 1500} },
			func(st setup) []*Record { return []*Record{st.old, st.mid} }, 2, 2000},
		// Evicting "shared" frees nothing while "new" uses the same bytes,
		// so LRU continues to "new".
		{"max size shared artifact", func(setup) GCOptions { return GCOptions{MaxSize: 500} },
			func(st setup) []*Record { return []*Record{st.old, st.mid, st.shared, st.newRec} }, 3, 3000},
		{"max size with keep", func(st setup) GCOptions {
			return GCOptions{MaxSize: 1500, Keep: map[string]bool{st.old.Key: true}}
		}, func(st setup) []*Record { return []*Record{st.mid, st.shared, st.newRec} }, 2, 2000},
		{"nothing to do", func(setup) GCOptions { return GCOptions{OlderThan: 1000 * time.Hour, MaxSize: 1 << 30} },
			func(setup) []*Record { return nil }, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, dry := range []bool{true, false} {
				st := mk(t)
				opt := tc.opt(st)
				opt.DryRun = dry
				before := keysOf(st.s)
				rep, err := st.s.GC(context.Background(), opt)
				if err != nil {
					t.Fatal(err)
				}
				gone := tc.gone(st)
				if len(rep.RemovedRecords) != len(gone) || len(rep.RemovedArtifacts) != tc.artifacts || rep.FreedBytes != tc.freed {
					t.Fatalf("dry=%v: report %+v", dry, rep)
				}
				after := keysOf(st.s)
				if dry {
					if len(after) != len(before) {
						t.Fatalf("dry run removed records")
					}
					continue
				}
				for _, r := range gone {
					if after[r.Key] {
						t.Errorf("record %s kept", r.Key[:12])
					}
					if rec, _ := st.s.Lookup(r.Key); rec != nil {
						t.Errorf("removed record %s still found", r.Key[:12])
					}
				}
				if len(after) != 4-len(gone) {
					t.Errorf("%d records left, want %d", len(after), 4-len(gone))
				}
				// Every record left is intact.
				if probs, err := st.s.Verify(context.Background()); err != nil || len(probs) != 0 {
					t.Errorf("after gc: %v %v", probs, err)
				}
			}
		})
	}
}

func TestGCStagingAndLocks(t *testing.T) {
	s := openStore(t)
	live, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, live.Dir, map[string]string{"out/f": "in progress"})
	dead, err := s.NewStaging()
	if err != nil {
		t.Fatal(err)
	}
	writeTree(t, dead.Dir, map[string]string{"out/f": "abandoned"})
	dead.lock.release() // as if its process had died
	// An unheld key lock file, a held one, and an unheld one whose key
	// has a record.
	key1, key2 := testKey("l1").Sum, testKey("l2").Sum
	u1, _ := s.Lock(context.Background(), key1)
	u1()
	withRec := testKey("l3")
	u3, _ := s.Lock(context.Background(), withRec.Sum)
	commit(t, s, withRec, map[string]map[string]string{"out": {"f": "r"}})
	u3()
	u2, _ := s.Lock(context.Background(), key2)
	defer u2()

	dry, err := s.GC(context.Background(), GCOptions{OlderThan: time.Hour, DryRun: true})
	if err != nil || dry.Staging != 1 {
		t.Fatalf("dry run: %+v %v", dry, err)
	}
	if _, err := os.Stat(dead.Dir); err != nil {
		t.Fatal("dry run removed a staging dir")
	}
	rep, err := s.GC(context.Background(), GCOptions{OlderThan: time.Hour})
	if err != nil || rep.Staging != 1 {
		t.Fatalf("gc: %+v %v", rep, err)
	}
	if _, err := os.Stat(dead.Dir); !os.IsNotExist(err) {
		t.Error("stale staging dir kept")
	}
	if _, err := os.Stat(filepath.Join(live.Dir, "out", "f")); err != nil {
		t.Error("live staging dir removed")
	}
	if _, err := os.Stat(s.dir("locks", key1+".lock")); !os.IsNotExist(err) {
		t.Error("unused lock file kept")
	}
	if _, err := os.Stat(s.dir("locks", key2+".lock")); err != nil {
		t.Error("held lock file removed")
	}
	if _, err := os.Stat(s.dir("locks", withRec.Sum+".lock")); err != nil {
		t.Error("lock file of a stored key removed")
	}
	// The live staging dir still commits.
	if _, err := s.Commit(live, []string{"out"}, Record{Key: testKey("live").Sum}); err != nil {
		t.Fatal(err)
	}
}

func TestGCCheckpoints(t *testing.T) {
	s := openStore(t)
	oldKey, keptKey, freshKey := testKey("c-old").Sum, testKey("c-kept").Sum, testKey("c-fresh").Sum
	for _, k := range []string{oldKey, keptKey, freshKey} {
		d, _ := s.CheckpointDir(k)
		writeTree(t, d, map[string]string{"state": "s"})
		if k != freshKey {
			when := time.Now().Add(-100 * time.Hour)
			os.Chtimes(filepath.Join(d, "state"), when, when)
			os.Chtimes(d, when, when)
		}
	}
	rep, err := s.GC(context.Background(), GCOptions{OlderThan: time.Hour, Keep: map[string]bool{keptKey: true}})
	if err != nil || rep.Checkpoints != 1 {
		t.Fatalf("gc: %+v %v", rep, err)
	}
	if _, err := os.Stat(s.dir("checkpoints", oldKey)); !os.IsNotExist(err) {
		t.Error("old checkpoint kept")
	}
	for _, k := range []string{keptKey, freshKey} {
		if _, err := os.Stat(s.dir("checkpoints", k)); err != nil {
			t.Errorf("checkpoint %s removed", k[:12])
		}
	}
}

func TestList(t *testing.T) {
	s := openStore(t)
	a := commit(t, s, testKey("a"), map[string]map[string]string{"out": {"f": "12345"}})
	b := commit(t, s, testKey("b"), map[string]map[string]string{"out": {"f": "1"}, "more": {"g": "22"}})
	age(t, s, a.Key, 2*time.Hour)
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Key != b.Key || list[1].Key != a.Key {
		t.Fatalf("list order %+v", list)
	}
	if list[0].Size != 3 || list[1].Size != 5 || list[0].Address != "test.x" || list[0].Kind != "test" {
		t.Fatalf("list %+v", list)
	}
}

func TestGCKeepsLockedKeys(t *testing.T) {
	s := openStore(t)
	busy := commit(t, s, testKey("busy"), map[string]map[string]string{"out": {"f": "in use"}})
	idle := commit(t, s, testKey("idle"), map[string]map[string]string{"out": {"f": "unused"}})
	age(t, s, busy.Key, 100*time.Hour)
	age(t, s, idle.Key, 100*time.Hour)
	unlock, err := s.Lock(context.Background(), busy.Key)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	rep, err := s.GC(context.Background(), GCOptions{OlderThan: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.RemovedRecords) != 1 || rep.RemovedRecords[0] != idle.Key {
		t.Fatalf("removed %v, want only the idle record", rep.RemovedRecords)
	}
	if rec, _ := s.Lookup(busy.Key); rec == nil {
		t.Fatal("record of a locked key removed")
	}
}
