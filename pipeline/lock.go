package pipeline

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
)

// Pins and the lock file.
//
// A kind with a Pinner (download) names some inputs by moving references. The
// lock file beside the pipeline (pipeline.lock.hcl) records, per instance,
// what those inputs resolved to. Planning and running use a lock entry as
// long as its inputs equal what the current arguments would resolve; then no
// network is needed. An instance without a valid entry is resolved: plan
// reports it ("new pin", "pin moves") and leaves the lock alone; run and
// `lathe lock` write it. `lathe lock -update` re-resolves entries that exist.

// pinState is an instance's pin as planning or running uses it.
type pinState struct {
	values map[string]string
	// note says why the lock changes for this instance ("" when the lock
	// entry was used as is).
	note string
	// entry is the lock entry to write, nil when the lock already has it.
	entry *lockfile.Entry
}

// readLock loads the lock beside the pipeline into the workspace.
func (ws *Workspace) readLock() hcl.Diagnostics {
	ws.LockPath = filepath.Join(ws.Pipeline.Dir, lockfile.FileName)
	f, diags := lockfile.Read(ws.LockPath)
	if diags.HasErrors() {
		if src, err := os.ReadFile(ws.LockPath); err == nil && ws.Pipeline.Files != nil {
			ws.Pipeline.Files[ws.LockPath] = &hcl.File{Bytes: src}
		}
		return diags
	}
	ws.Lock = f
	return diags
}

func inputsKey(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%q=%q;", k, m[k])
	}
	return b.String()
}

// describeMove says how an entry's inputs differ from the wanted ones:
// "revision main -> v2".
func describeMove(old, now map[string]string) string {
	set := map[string]bool{}
	for k := range old {
		set[k] = true
	}
	for k := range now {
		set[k] = true
	}
	var parts []string
	for k := range set {
		if old[k] != now[k] {
			o, n := old[k], now[k]
			if o == "" {
				o = `""`
			}
			if n == "" {
				n = `""`
			}
			parts = append(parts, k+" "+o+" -> "+n)
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func shortValues(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		v := m[k]
		if len(v) == 40 { // a commit sha
			v = v[:12]
		}
		parts = append(parts, k+" "+v)
	}
	return strings.Join(parts, ", ")
}

// pinFor returns the pin of an instance with the given fully known
// arguments: the lock entry when it is valid (and update is false), else a
// fresh resolution (memoised for the workspace's lifetime, so plan and run in
// one process agree). It returns nil for kinds or arguments that need no pin.
func (ws *Workspace) pinFor(ctx context.Context, inst *config.Instance, args cty.Value, update bool) (*pinState, error) {
	p := inst.Kind.Pin
	if p == nil {
		return nil, nil
	}
	inputs, err := p.Inputs(args)
	if err != nil {
		return nil, fmt.Errorf("%s: pin: %w", inst.Addr, err)
	}
	if inputs == nil {
		return nil, nil
	}
	ws.pinMu.Lock()
	defer ws.pinMu.Unlock()
	var old *lockfile.Entry
	if ws.Lock != nil {
		if e, ok := ws.Lock.Get(inst.Addr); ok {
			old = e
		}
	}
	if old != nil && !update && old.Kind == inst.Kind.Name && inputsKey(old.Inputs) == inputsKey(inputs) {
		return &pinState{values: old.Values}, nil
	}
	memo := inst.Addr + "\x00" + inputsKey(inputs)
	if st, ok := ws.pinMemo[memo]; ok {
		return st, nil
	}
	values, err := p.Resolve(ctx, args)
	if err != nil {
		return nil, fmt.Errorf("%s: pin: %w", inst.Addr, err)
	}
	st := &pinState{values: values}
	e := &lockfile.Entry{Addr: inst.Addr, Kind: inst.Kind.Name, Inputs: inputs, Values: values}
	switch {
	case old == nil:
		st.note = "new pin " + shortValues(values)
	case old.Kind != inst.Kind.Name:
		st.note = "pin moves: kind " + old.Kind + " -> " + inst.Kind.Name
	case inputsKey(old.Inputs) != inputsKey(inputs):
		st.note = "pin moves: " + describeMove(old.Inputs, inputs)
	case inputsKey(old.Values) != inputsKey(values):
		st.note = "pin moves: " + describeMove(old.Values, values)
	}
	if old == nil || !old.Equal(e) {
		st.entry = e
	}
	if ws.pinMemo == nil {
		ws.pinMemo = map[string]*pinState{}
	}
	ws.pinMemo[memo] = st
	return st, nil
}

// savePin records a pin in the lock and writes the lock file.
func (ws *Workspace) savePin(st *pinState) error {
	if st == nil || st.entry == nil {
		return nil
	}
	ws.pinMu.Lock()
	defer ws.pinMu.Unlock()
	if ws.Lock == nil {
		ws.Lock = lockfile.New()
	}
	if cur, ok := ws.Lock.Get(st.entry.Addr); ok && cur.Equal(st.entry) {
		return nil
	}
	ws.Lock.Set(*st.entry)
	return ws.Lock.Write(ws.LockPath)
}

// LockOptions configures UpdateLock.
type LockOptions struct {
	// Update re-resolves existing pins (of Stages, or all when empty)
	// instead of keeping them.
	Update bool
	// Stages limits the work to these addresses (a block address selects
	// its instances). Empty: every stage, and pins of stages no longer in the
	// pipeline are removed.
	Stages []string
}

// LockChange is what UpdateLock did to one instance's pin.
type LockChange struct {
	Addr string
	// Action is "pinned" (new), "moved", "kept", "removed" or "skipped".
	Action string
	// Detail says what changed or why it was skipped.
	Detail string
}

// UpdateLock resolves the pins of the pipeline's stages and writes the lock file.
// Stages whose arguments depend on upstream results are skipped (they are
// pinned when they run).
func (ws *Workspace) UpdateLock(ctx context.Context, opt LockOptions) ([]LockChange, error) {
	insts := ws.Resolved.Instances
	selected := map[*config.Instance]bool{}
	if len(opt.Stages) == 0 {
		for _, inst := range insts {
			selected[inst] = true
		}
	} else {
		set, err := ws.lookupAddrs(opt.Stages)
		if err != nil {
			return nil, err
		}
		selected = set
	}
	if ws.Lock == nil {
		ws.Lock = lockfile.New()
	}
	var changes []LockChange
	present := map[string]bool{}
	for _, inst := range insts {
		present[inst.Addr] = true
		if !selected[inst] || inst.Kind.Pin == nil {
			continue
		}
		if len(inst.Deps) > 0 {
			changes = append(changes, LockChange{Addr: inst.Addr, Action: "skipped", Detail: "its arguments depend on upstream results; pinned when it runs"})
			continue
		}
		args, diags := ws.Resolved.Args(inst, nil)
		if diags.HasErrors() {
			return nil, &DiagnosticsError{Diags: diags}
		}
		st, err := ws.pinFor(ctx, inst, args, opt.Update)
		if err != nil {
			return nil, err
		}
		switch {
		case st == nil:
			if ws.Lock.Delete(inst.Addr) {
				changes = append(changes, LockChange{Addr: inst.Addr, Action: "removed", Detail: "its arguments need no pin"})
			}
		case st.entry == nil:
			changes = append(changes, LockChange{Addr: inst.Addr, Action: "kept", Detail: shortValues(st.values)})
		default:
			action := "moved"
			if strings.HasPrefix(st.note, "new pin") {
				action = "pinned"
			}
			detail := strings.TrimPrefix(strings.TrimPrefix(st.note, "new pin "), "pin moves: ")
			if st.note == "" {
				detail = shortValues(st.values)
			}
			ws.Lock.Set(*st.entry)
			changes = append(changes, LockChange{Addr: inst.Addr, Action: action, Detail: detail})
		}
	}
	if len(opt.Stages) == 0 {
		for _, addr := range ws.Lock.Addrs() {
			if !present[addr] {
				ws.Lock.Delete(addr)
				changes = append(changes, LockChange{Addr: addr, Action: "removed", Detail: "no such stage in the pipeline"})
			}
		}
	}
	ws.pinMu.Lock()
	defer ws.pinMu.Unlock()
	if ws.Lock.Len() == 0 {
		if err := os.Remove(ws.LockPath); err != nil && !os.IsNotExist(err) {
			return changes, fmt.Errorf("remove empty lock file: %w", err)
		}
		return changes, nil
	}
	return changes, ws.Lock.Write(ws.LockPath)
}
