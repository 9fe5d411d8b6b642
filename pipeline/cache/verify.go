package cache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Problem kinds reported by Verify.
const (
	ProblemCorruptRecord   = "corrupt-record"   // a record file that does not parse or names another key
	ProblemMissingArtifact = "missing-artifact" // a record refers to an artifact that is not in the store
	ProblemCorruptArtifact = "corrupt-artifact" // an artifact's content no longer matches its digest
)

// Problem is one defect found by Verify.
type Problem struct {
	Kind     string   `json:"kind"`
	Key      string   `json:"key,omitempty"`       // record key, for record problems
	Output   string   `json:"output,omitempty"`    // artifact output name in the record
	Digest   string   `json:"digest,omitempty"`    // expected artifact digest
	Actual   string   `json:"actual,omitempty"`    // digest found, for corrupt artifacts
	Path     string   `json:"path,omitempty"`      // the file concerned
	Detail   string   `json:"detail,omitempty"`    // what exactly is wrong
	Referrer []string `json:"referrers,omitempty"` // keys of records using a corrupt artifact
}

func (p Problem) String() string {
	switch p.Kind {
	case ProblemCorruptRecord:
		return fmt.Sprintf("corrupt record %s: %s", p.Path, p.Detail)
	case ProblemMissingArtifact:
		return fmt.Sprintf("missing artifact: record %.12s output %q refers to %s, which is not in the store (%s)", p.Key, p.Output, p.Digest, p.Path)
	case ProblemCorruptArtifact:
		s := fmt.Sprintf("corrupt artifact %s: expected %s, actual %s", p.Path, p.Digest, p.Actual)
		if p.Detail != "" {
			s += ": " + p.Detail
		}
		if len(p.Referrer) > 0 {
			short := make([]string, len(p.Referrer))
			for i, k := range p.Referrer {
				short[i] = k[:min(12, len(k))]
			}
			s += " (used by " + strings.Join(short, ", ") + ")"
		}
		return s
	}
	return p.Kind + ": " + p.Detail
}

// Verify rehashes every artifact and checks that every record parses and
// refers to artifacts that exist. It reports each defect precisely and
// changes nothing; see Remove.
func (s *Store) Verify(ctx context.Context) ([]Problem, error) {
	// Shared with commits, exclusive with gc and Remove, so that nothing
	// disappears while it is being checked.
	storeLock, err := lockWait(ctx, s.dir("locks", "store.lock"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	defer storeLock.release()
	var problems []Problem
	keys, err := s.recordKeys()
	if err != nil {
		return nil, err
	}
	users := map[string][]string{} // artifact hex -> record keys
	for _, key := range keys {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rec, err := s.readRecordFile(key)
		if err != nil {
			problems = append(problems, Problem{Kind: ProblemCorruptRecord, Key: key, Path: s.recordPath(key), Detail: err.Error()})
			continue
		}
		for _, name := range sortedNames(rec.Artifacts) {
			a := rec.Artifacts[name]
			h, _ := digestHex(a.Digest)
			users[h] = append(users[h], key)
			p := s.ArtifactPath(a.Digest)
			if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
				problems = append(problems, Problem{Kind: ProblemMissingArtifact, Key: key, Output: name, Digest: a.Digest, Path: p})
			}
		}
	}
	arts, err := os.ReadDir(s.dir("artifacts"))
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	for _, e := range arts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		h := e.Name()
		dir := s.dir("artifacts", h)
		a, lines, err := hashTree(dir, false)
		if err != nil {
			problems = append(problems, Problem{Kind: ProblemCorruptArtifact, Digest: "sha256:" + h, Path: dir, Detail: err.Error(), Referrer: users[h]})
			continue
		}
		if a.Digest == "sha256:"+h {
			continue
		}
		problems = append(problems, Problem{Kind: ProblemCorruptArtifact, Digest: "sha256:" + h, Actual: a.Digest, Path: dir,
			Detail: s.explainMismatch(h, lines), Referrer: users[h]})
	}
	return problems, nil
}

// explainMismatch compares a tree's current digest lines with the manifest
// written at commit time and names the entries that differ.
func (s *Store) explainMismatch(h string, lines []byte) string {
	data, err := os.ReadFile(s.manifestPath(h))
	if err != nil {
		return "no manifest to compare with"
	}
	want, err := parseManifest(data)
	if err != nil {
		return "manifest unreadable: " + err.Error()
	}
	got, err := parseManifest(lines)
	if err != nil {
		return err.Error()
	}
	var diffs []string
	for _, rel := range sortedNames(want) {
		w := want[rel]
		g, ok := got[rel]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("%s: missing", rel))
		case g.typ != w.typ:
			diffs = append(diffs, fmt.Sprintf("%s: type %c, expected %c", rel, g.typ, w.typ))
		case g.sum != w.sum || g.size != w.size:
			diffs = append(diffs, fmt.Sprintf("%s: content sha256 %s (%d bytes), expected %s (%d bytes)", rel, g.sum, g.size, w.sum, w.size))
		}
	}
	for _, rel := range sortedNames(got) {
		if _, ok := want[rel]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: unexpected extra entry", rel))
		}
	}
	if len(diffs) == 0 {
		return "manifest matches the content; the manifest itself may be damaged"
	}
	return strings.Join(diffs, "; ")
}

// Remove deletes the entries that the given problems describe: corrupt
// records, records with missing artifacts, and corrupt artifacts together
// with every record that uses them. The stages that produced them will
// rerun.
func (s *Store) Remove(problems []Problem) error {
	storeLock, err := lockWait(context.Background(), s.dir("locks", "store.lock"), unix.LOCK_EX)
	if err != nil {
		return fmt.Errorf("remove: %w", err)
	}
	defer storeLock.release()
	var errs []error
	for _, p := range problems {
		switch p.Kind {
		case ProblemCorruptRecord, ProblemMissingArtifact:
			errs = append(errs, s.removeRecord(p.Key))
		case ProblemCorruptArtifact:
			for _, k := range p.Referrer {
				errs = append(errs, s.removeRecord(k))
			}
			h, err := digestHex(p.Digest)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			errs = append(errs, s.removeArtifact(h))
		}
	}
	return errors.Join(errs...)
}

func (s *Store) removeRecord(key string) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := os.Remove(s.recordPath(key)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove record: %w", err)
	}
	return nil
}

// removeArtifact moves an artifact to trash/ (so that no half-deleted tree
// is ever visible under artifacts/) and deletes it with its manifest.
func (s *Store) removeArtifact(h string) error {
	src := s.dir("artifacts", h)
	dst := s.dir("trash", h+"-"+randomID(4))
	// Moving a directory to another parent needs write permission on it.
	_ = os.Chmod(src, 0o755)
	if err := os.Rename(src, dst); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			os.Remove(s.manifestPath(h))
			return nil
		}
		return fmt.Errorf("remove artifact %s: %w", h, err)
	}
	if err := removeTree(dst); err != nil {
		return err
	}
	if err := os.Remove(s.manifestPath(h)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// recordKeys lists the keys of all record files, sorted.
func (s *Store) recordKeys() ([]string, error) {
	matches, err := filepath.Glob(s.dir("records", "*", "*.json"))
	if err != nil {
		return nil, err
	}
	var keys []string
	for _, m := range matches {
		k := strings.TrimSuffix(filepath.Base(m), ".json")
		if validKey(k) && filepath.Base(filepath.Dir(m)) == k[:2] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return keys, nil
}

func sortedNames[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
