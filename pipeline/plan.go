package pipeline

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/lockfile"
)

// Action is what a plan says will happen to a stage instance.
type Action string

const (
	// ActionCached: the result for this key is in the store; nothing runs.
	ActionCached Action = "cached"
	// ActionPull: the result is not local but the remote cache has it; it
	// is fetched and verified instead of run.
	ActionPull Action = "pull"
	// ActionRun: the stage will run (new, changed or forced).
	ActionRun Action = "run"
	// ActionPending: an upstream stage will run first; whether this one runs
	// depends on the bytes that stage produces (an identical result is a hit).
	ActionPending Action = "pending"
	// ActionSkip: not selected by --target.
	ActionSkip Action = "skip"
)

// Selection narrows a plan or run.
type Selection struct {
	// Targets limits the work to these stages and what they depend on.
	Targets []string
	// From forces these stages and everything downstream of them to rerun.
	From []string
	// Force reruns every selected stage, ignoring cached results.
	Force bool
}

// Step is the plan for one stage instance.
type Step struct {
	Addr   string   `json:"address"`
	Kind   string   `json:"kind"`
	Action Action   `json:"action"`
	Reason string   `json:"reason"`
	Deps   []string `json:"deps,omitempty"`
	// Key is the cache key, known unless the step is pending or skipped.
	Key cache.Key `json:"-"`
	// KeySum duplicates Key.Sum for JSON.
	KeySum string `json:"key,omitempty"`
	// PrevKeyText is the key text of the last result of this address, when
	// it differs from Key and is still in the store.
	PrevKeyText string `json:"-"`
	// Pin says how a run would change this stage's entry in the lock file
	// ("new pin commit 3f2a0c9e1b7d", "pin moves: revision main -> v2"); ""
	// when the lock is used as is or the stage has nothing to pin.
	Pin string `json:"pin,omitempty"`
	// Resolved says which machine-dependent arguments were resolved and to
	// what, e.g. "batch_size: auto → 8" (see stage.Kind.Resolve); also
	// appended to Reason.
	Resolved string `json:"resolved,omitempty"`
	// Estimate is the kind's resource estimate for a step that would run
	// (see stage.Kind.Estimate); "" when it has none.
	Estimate string `json:"estimate,omitempty"`
	// Problem says why a step that would run cannot run on this machine
	// (it asks for more GPUs than there are); also appended to Reason.
	Problem string `json:"problem,omitempty"`
}

// Plan is the ordered list of steps.
type Plan struct {
	Steps []*Step `json:"steps"`
}

// Counts returns how many steps have each action.
func (p *Plan) Counts() map[Action]int {
	c := map[Action]int{}
	for _, s := range p.Steps {
		c[s.Action]++
	}
	return c
}

// Step returns the step for addr, or nil.
func (p *Plan) Step(addr string) *Step {
	for _, s := range p.Steps {
		if s.Addr == addr {
			return s
		}
	}
	return nil
}

// selection is a Selection resolved to instances.
type selection struct {
	selected map[*config.Instance]bool // to plan or run at all
	forced   map[*config.Instance]bool // rerun even if cached
}

func (ws *Workspace) resolveSelection(sel Selection) (*selection, error) {
	insts := ws.Resolved.Instances
	s := &selection{selected: map[*config.Instance]bool{}, forced: map[*config.Instance]bool{}}
	if len(sel.Targets) == 0 {
		for _, inst := range insts {
			s.selected[inst] = true
		}
	} else {
		targets, err := ws.lookupAddrs(sel.Targets)
		if err != nil {
			return nil, err
		}
		// Walk backwards: an instance is needed if a needed instance depends on it.
		for i := len(insts) - 1; i >= 0; i-- {
			inst := insts[i]
			if targets[inst] {
				s.selected[inst] = true
			}
			if s.selected[inst] {
				for _, d := range inst.Deps {
					s.selected[d] = true
				}
			}
		}
	}
	if len(sel.From) > 0 {
		from, err := ws.lookupAddrs(sel.From)
		if err != nil {
			return nil, err
		}
		for _, inst := range insts { // topological: deps first
			if from[inst] {
				s.forced[inst] = true
			}
			for _, d := range inst.Deps {
				if s.forced[d] {
					s.forced[inst] = true
				}
			}
		}
	}
	if sel.Force {
		for inst := range s.selected {
			s.forced[inst] = true
		}
	}
	for inst := range s.forced {
		if !s.selected[inst] {
			delete(s.forced, inst)
		}
	}
	return s, nil
}

// Plan computes, without running anything, what a run with this selection
// would do and why.
func (ws *Workspace) Plan(ctx context.Context, sel Selection) (*Plan, error) {
	s, err := ws.resolveSelection(sel)
	if err != nil {
		return nil, err
	}
	plan := &Plan{}
	outputs := map[string]map[string]cty.Value{}
	action := map[*config.Instance]Action{}
	for _, inst := range ws.Resolved.Instances {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		step := &Step{Addr: inst.Addr, Kind: inst.Kind.Name}
		for _, d := range inst.Deps {
			step.Deps = append(step.Deps, d.Addr)
		}
		plan.Steps = append(plan.Steps, step)
		if !s.selected[inst] {
			step.Action, step.Reason = ActionSkip, "not targeted"
			action[inst] = ActionSkip
			continue
		}
		var waiting []string
		for _, d := range inst.Deps {
			if a := action[d]; a == ActionRun || a == ActionPending {
				waiting = append(waiting, d.Addr)
			}
		}
		if len(waiting) > 0 {
			step.Action = ActionPending
			step.Reason = "after " + strings.Join(waiting, ", ") + "; reruns unless their results come out identical"
			if s.forced[inst] {
				step.Action, step.Reason = ActionRun, "forced, after "+strings.Join(waiting, ", ")
			}
			action[inst] = step.Action
			continue
		}
		args, key, pin, resolved, err := ws.instanceKey(ctx, inst, outputs)
		if err != nil {
			return nil, err
		}
		if pin != nil {
			step.Pin = pin.note
		}
		step.Resolved = resolved
		step.Key, step.KeySum = key, key.Sum
		rec, err := ws.Store.Lookup(key.Sum)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", inst.Addr, err)
		}
		if rec == nil && !s.forced[inst] && ws.Remote != nil {
			rrec, err := ws.Remote.Lookup(ctx, key.Sum)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", inst.Addr, err)
			}
			if rrec != nil {
				outs, err := ws.outputsFromRecord(inst, rrec)
				if err != nil {
					return nil, err
				}
				outputs[inst.Addr] = outs
				step.Action, step.Reason = ActionPull, "in the remote cache"
				action[inst] = step.Action
				continue
			}
		}
		switch {
		case s.forced[inst]:
			step.Action, step.Reason = ActionRun, "forced"
		case rec != nil:
			step.Action, step.Reason = ActionCached, "unchanged"
			outs, err := ws.outputsFromRecord(inst, rec)
			if err != nil {
				return nil, err
			}
			outputs[inst.Addr] = outs
		default:
			step.Action = ActionRun
			step.Reason, step.PrevKeyText = ws.whyRun(inst.Addr, key)
		}
		if step.Pin != "" {
			step.Reason += "; " + step.Pin + " (not yet in " + lockfile.FileName + ")"
		}
		if step.Resolved != "" {
			step.Reason += "; " + step.Resolved
		}
		if step.Action == ActionRun && inst.Kind.Estimate != nil {
			if e, err := inst.Kind.Estimate(args); err == nil {
				step.Estimate = e
			} else {
				step.Estimate = "no estimate: " + err.Error()
			}
			if n := inst.Resources.GPUs; n > 0 && step.Estimate != "" {
				step.Estimate += fmt.Sprintf(" — figures for the CPU backend: on its %s the stage holds about the same buffers in device memory (checked against the free memory when it starts); the time is the CPU's", plural(n, "GPU"))
			}
		}
		action[inst] = step.Action
	}
	ws.checkGPUs(plan)
	return plan, nil
}

// instanceKey evaluates an instance's arguments with its upstream outputs,
// resolves its machine-dependent values (see resolveArgs; note says what
// was resolved), finds its pin (from the lock, or resolved when the lock
// has none) and builds its cache key.
func (ws *Workspace) instanceKey(ctx context.Context, inst *config.Instance, outputs map[string]map[string]cty.Value) (args cty.Value, key cache.Key, pin *pinState, note string, err error) {
	args, diags := ws.Resolved.Args(inst, outputs)
	if diags.HasErrors() {
		return cty.NilVal, cache.Key{}, nil, "", &DiagnosticsError{Diags: diags}
	}
	if args, note, err = ws.resolveArgs(inst, args); err != nil {
		return cty.NilVal, cache.Key{}, nil, "", err
	}
	pin, err = ws.pinFor(ctx, inst, args, false)
	if err != nil {
		return cty.NilVal, cache.Key{}, nil, "", err
	}
	kc := keyContext{ws: ws}
	if pin != nil {
		kc.pins = pin.values
	}
	key, err = stageKey(inst, args, kc)
	if err != nil {
		return cty.NilVal, cache.Key{}, nil, "", fmt.Errorf("%s: cache key: %w", inst.Addr, err)
	}
	return args, key, pin, note, nil
}

// whyRun explains a cache miss by comparing with the key last recorded for
// the address.
func (ws *Workspace) whyRun(addr string, key cache.Key) (reason, prevText string) {
	prev := ws.state.last(addr)
	switch {
	case prev == "":
		return "new: no earlier result for this stage", ""
	case prev == key.Sum:
		return "its result is no longer in the cache", ""
	}
	rec, err := ws.Store.Lookup(prev)
	if err != nil || rec == nil {
		return "changed (the earlier key is no longer in the cache to compare)", ""
	}
	return "changed: " + strings.Join(changedLabels(rec.KeyText, key.Text), ", "), rec.KeyText
}

// changedLabels names the key lines that differ between two key texts:
// "learning_rate" for "arg learning_rate = ...", "input data" for kind lines.
func changedLabels(oldText, newText string) []string {
	label := func(line string) string {
		l, _, _ := strings.Cut(line, " = ")
		l = strings.TrimPrefix(l, "arg ")
		if strings.HasPrefix(line, "backend ") {
			l = "backend"
		}
		if strings.HasPrefix(line, "kind-version ") || strings.HasPrefix(line, "engine ") || strings.HasPrefix(line, "lathe-key ") {
			l, _, _ = strings.Cut(line, " ")
			l += " (lathe upgraded)"
		}
		if strings.Contains(line, " = artifact(") {
			l += " (upstream result)"
		}
		return l
	}
	count := func(text string) map[string]int {
		m := map[string]int{}
		for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
			m[line]++
		}
		return m
	}
	oldLines, newLines := count(oldText), count(newText)
	set := map[string]bool{}
	for line := range oldLines {
		if newLines[line] == 0 {
			set[label(line)] = true
		}
	}
	for line := range newLines {
		if oldLines[line] == 0 {
			set[label(line)] = true
		}
	}
	var out []string
	for l := range set {
		out = append(out, l)
	}
	sort.Strings(out)
	return out
}

// Explain returns the key texts behind a step's decision: the current key
// and, when the stage reruns because it changed, a diff against the last one.
func (ws *Workspace) Explain(plan *Plan, addr string) (string, error) {
	step := plan.Step(addr)
	if step == nil {
		return "", &UnknownAddressError{Addr: addr, Known: ws.Addresses()}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s (%s)\n", step.Addr, step.Action, step.Reason)
	if step.Key.Sum == "" {
		fmt.Fprintf(&b, "\nThe key is not known yet: it depends on the results of %s.\n", strings.Join(step.Deps, ", "))
		return b.String(), nil
	}
	if step.PrevKeyText != "" {
		fmt.Fprintf(&b, "\nKey text, previous result -> now:\n%s", cache.DiffKeyText(step.PrevKeyText, step.Key.Text))
		return b.String(), nil
	}
	fmt.Fprintf(&b, "\nKey %s:\n%s", step.Key.Sum, step.Key.Text)
	return b.String(), nil
}
