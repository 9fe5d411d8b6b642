package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lathe-ml/lathe/internal/bytesize"
)

// RecordInfo summarizes one record for listings.
type RecordInfo struct {
	Key       string              `json:"key"`
	Kind      string              `json:"kind"`
	Address   string              `json:"address"`
	Artifacts map[string]Artifact `json:"artifacts"`
	Size      int64               `json:"size"` // sum of the record's artifact sizes
	Created   time.Time           `json:"created"`
	LastUsed  time.Time           `json:"last_used"`
}

// List returns every readable record, most recently used first. Corrupt
// records are skipped (Verify reports them).
func (s *Store) List() ([]RecordInfo, error) {
	keys, err := s.recordKeys()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	var out []RecordInfo
	for _, k := range keys {
		info, err := s.recordInfo(k)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed meanwhile
			}
			var perr *os.PathError
			if errors.As(err, &perr) {
				return nil, fmt.Errorf("list: %w", err)
			}
			continue
		}
		out = append(out, info)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].LastUsed.After(out[j].LastUsed) })
	return out, nil
}

func (s *Store) recordInfo(key string) (RecordInfo, error) {
	st, err := os.Stat(s.recordPath(key))
	if err != nil {
		return RecordInfo{}, err
	}
	rec, err := s.readRecordFile(key)
	if err != nil {
		return RecordInfo{}, err
	}
	info := RecordInfo{Key: key, Kind: rec.Kind, Address: rec.Address, Artifacts: rec.Artifacts, Created: rec.Created, LastUsed: st.ModTime()}
	for _, a := range rec.Artifacts {
		info.Size += a.Size
	}
	return info, nil
}

// GCOptions selects what GC removes. A record is removed when it is not in
// Keep and either it was last used more than OlderThan ago (when OlderThan
// > 0) or the store is above MaxSize bytes of artifacts (when MaxSize > 0;
// least recently used first, until the store fits). Records whose key is
// locked at the time (a stage using it is in flight) are kept too.
type GCOptions struct {
	OlderThan time.Duration
	MaxSize   int64
	Keep      map[string]bool // record keys never removed
	DryRun    bool            // report only
}

// GCReport says what GC removed (or, in a dry run, would remove).
type GCReport struct {
	DryRun           bool     `json:"dry_run"`
	RemovedRecords   []string `json:"removed_records"`
	RemovedArtifacts []string `json:"removed_artifacts"` // digests, including orphans
	FreedBytes       int64    `json:"freed_bytes"`       // artifact content bytes
	Staging          int      `json:"staging"`           // stale staging directories
	Checkpoints      int      `json:"checkpoints"`
	KeptRecords      int      `json:"kept_records"`
	KeptBytes        int64    `json:"kept_bytes"`
}

func (r GCReport) String() string {
	verb := "Removed"
	if r.DryRun {
		verb = "Would remove"
	}
	return fmt.Sprintf("%s %d results, %d artifacts (%s), %d stale staging dirs, %d checkpoints; kept %d results (%s).",
		verb, len(r.RemovedRecords), len(r.RemovedArtifacts), bytesize.Format(r.FreedBytes), r.Staging, r.Checkpoints, r.KeptRecords, bytesize.Format(r.KeptBytes))
}

// GC removes old or excess records, the artifacts no remaining record
// refers to, stale staging directories, temporary files, unused lock files
// and, with OlderThan, old checkpoints and stat cache entries. It holds the
// store lock exclusively, so commits in other processes wait for it.
func (s *Store) GC(ctx context.Context, opt GCOptions) (GCReport, error) {
	rep := GCReport{DryRun: opt.DryRun}
	storeLock, err := lockWait(ctx, s.dir("locks", "store.lock"), unix.LOCK_EX)
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	defer storeLock.release()
	now := time.Now()

	// 1. Records.
	keys, err := s.recordKeys()
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	type rinfo struct {
		key  string
		used time.Time
		arts []string // artifact hex digests
	}
	var recs []rinfo
	recSize := map[string]int64{} // artifact sizes as recorded at commit
	for _, k := range keys {
		st, err := os.Stat(s.recordPath(k))
		if err != nil {
			continue
		}
		rec, err := s.readRecordFile(k)
		if err != nil {
			continue // corrupt: left for verify to report
		}
		r := rinfo{key: k, used: st.ModTime()}
		for _, a := range rec.Artifacts {
			h, _ := digestHex(a.Digest)
			r.arts = append(r.arts, h)
			recSize[h] = a.Size
		}
		recs = append(recs, r)
	}
	// Oldest first, for LRU eviction.
	sort.SliceStable(recs, func(i, j int) bool { return recs[i].used.Before(recs[j].used) })

	sizeOf := func(h string) int64 {
		if n, ok := recSize[h]; ok {
			return n
		}
		n, _ := treeSize(s.dir("artifacts", h)) // orphan: measure it
		recSize[h] = n
		return n
	}
	refs := map[string]int{}
	for _, r := range recs {
		for _, h := range r.arts {
			refs[h]++
		}
	}
	var total int64
	for h := range refs {
		total += sizeOf(h)
	}
	removed := map[string]bool{}
	drop := func(r rinfo) {
		removed[r.key] = true
		rep.RemovedRecords = append(rep.RemovedRecords, r.key)
		for _, h := range r.arts {
			refs[h]--
			if refs[h] == 0 {
				total -= sizeOf(h)
			}
		}
	}
	// A record whose key is locked right now is being used or replaced by
	// a stage in flight: keep it like the Keep set.
	keep := func(key string) bool { return opt.Keep[key] || isLocked(s.dir("locks", key+".lock")) }
	if opt.OlderThan > 0 {
		for _, r := range recs {
			if !keep(r.key) && now.Sub(r.used) > opt.OlderThan {
				drop(r)
			}
		}
	}
	if opt.MaxSize > 0 {
		for _, r := range recs {
			if total <= opt.MaxSize {
				break
			}
			if !removed[r.key] && !keep(r.key) {
				drop(r)
			}
		}
	}
	for _, r := range recs {
		if !removed[r.key] {
			rep.KeptRecords++
		}
	}
	rep.KeptBytes = total
	if !opt.DryRun {
		for _, k := range rep.RemovedRecords {
			if err := s.removeRecord(k); err != nil {
				return rep, fmt.Errorf("gc: %w", err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return rep, err
	}

	// 2. Artifacts no remaining record refers to (including orphans left
	// by a crash between artifact move and record write), and manifests
	// without an artifact. Corrupt records keep nothing alive: their
	// artifacts cannot be known.
	arts, err := os.ReadDir(s.dir("artifacts"))
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}
	for _, e := range arts {
		h := e.Name()
		if refs[h] > 0 {
			continue
		}
		rep.RemovedArtifacts = append(rep.RemovedArtifacts, "sha256:"+h)
		rep.FreedBytes += sizeOf(h)
		if !opt.DryRun {
			if err := s.removeArtifact(h); err != nil {
				return rep, fmt.Errorf("gc: %w", err)
			}
		}
	}
	if !opt.DryRun {
		if mans, err := os.ReadDir(s.dir("manifests")); err == nil {
			for _, e := range mans {
				if _, err := os.Lstat(s.dir("artifacts", e.Name())); errors.Is(err, os.ErrNotExist) {
					os.Remove(s.dir("manifests", e.Name()))
				}
			}
		}
	}

	// 3. Staging directories not locked by a live process.
	n, err := s.cleanStaging(opt.DryRun)
	rep.Staging = n
	if err != nil {
		return rep, fmt.Errorf("gc: %w", err)
	}

	// 4. Checkpoints of keys not kept, not locked and not touched for
	// OlderThan.
	if opt.OlderThan > 0 {
		cps, _ := os.ReadDir(s.dir("checkpoints"))
		for _, e := range cps {
			k := e.Name()
			if !validKey(k) || opt.Keep[k] || isLocked(s.dir("locks", k+".lock")) {
				continue
			}
			info, err := e.Info()
			if err != nil || now.Sub(latestMTime(s.dir("checkpoints", k), info.ModTime())) <= opt.OlderThan {
				continue
			}
			rep.Checkpoints++
			if !opt.DryRun {
				if err := removeTree(s.dir("checkpoints", k)); err != nil {
					return rep, fmt.Errorf("gc: %w", err)
				}
			}
		}
	}
	if opt.DryRun {
		return rep, nil
	}

	// 5. Housekeeping: trash, old temporary files, unused lock files, old
	// stat cache entries.
	if ents, err := os.ReadDir(s.dir("trash")); err == nil {
		for _, e := range ents {
			_ = removeTree(s.dir("trash", e.Name()))
		}
	}
	if ents, err := os.ReadDir(s.dir("tmp")); err == nil {
		for _, e := range ents {
			if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) > time.Hour {
				_ = removeTree(s.dir("tmp", e.Name()))
			}
		}
	}
	// Lock files of keys that still have a record or a checkpoint stay:
	// recreating them would cost the next no-op run a file creation per
	// stage.
	if ents, err := os.ReadDir(s.dir("locks")); err == nil {
		for _, e := range ents {
			key, ok := strings.CutSuffix(e.Name(), ".lock")
			if !ok || !validKey(key) {
				continue
			}
			if _, err := os.Lstat(s.recordPath(key)); err == nil {
				continue
			}
			if _, err := os.Lstat(s.dir("checkpoints", key)); err == nil {
				continue
			}
			_, _ = removeIfUnlocked(s.dir("locks", e.Name()))
		}
	}
	if opt.OlderThan > 0 {
		matches, _ := filepath.Glob(s.dir("statcache", "*", "*"))
		for _, m := range matches {
			if info, err := os.Stat(m); err == nil && now.Sub(info.ModTime()) > opt.OlderThan {
				os.Remove(m)
			}
		}
	}
	return rep, nil
}

// cleanStaging removes staging directories whose lock is not held.
func (s *Store) cleanStaging(dryRun bool) (int, error) {
	ents, err := os.ReadDir(s.dir("staging"))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() {
			if strings.HasSuffix(name, ".lock") {
				if _, err := os.Lstat(s.dir("staging", strings.TrimSuffix(name, ".lock"))); errors.Is(err, os.ErrNotExist) && !dryRun {
					_, _ = removeIfUnlocked(s.dir("staging", name))
				}
			}
			continue
		}
		lockPath := s.dir("staging", name+".lock")
		if _, err := os.Lstat(lockPath); errors.Is(err, os.ErrNotExist) {
			// NewStaging creates the lock before the directory, so a
			// directory without one is left over.
			n++
			if !dryRun {
				if err := removeTree(s.dir("staging", name)); err != nil {
					return n, err
				}
			}
			continue
		}
		l, err := tryLock(lockPath, unix.LOCK_EX)
		if err != nil {
			return n, err
		}
		if l == nil {
			continue // live
		}
		n++
		if !dryRun {
			err = removeTree(s.dir("staging", name))
			if err == nil {
				os.Remove(lockPath)
			}
		}
		l.release()
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// latestMTime is the newest mtime in a tree, at least floor.
func latestMTime(root string, floor time.Time) time.Time {
	latest := floor
	_ = filepath.Walk(root, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.ModTime().After(latest) {
			latest = info.ModTime()
		}
		return nil
	})
	return latest
}
