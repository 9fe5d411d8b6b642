package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"

	"github.com/lathe-ml/lathe/pipeline/cache"
	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// NotCachedError says a stage has no result in the store for its current
// key, so reading it would need a run.
type NotCachedError struct {
	Addr   string // the stage without a result
	Target string // the stage that was asked for
}

func (e *NotCachedError) Error() string {
	if e.Addr == e.Target {
		return fmt.Sprintf("%s is not cached for the current pipeline: it would need to run (lathe run -target %s)", e.Addr, e.Target)
	}
	return fmt.Sprintf("%s needs %s, which is not cached for the current pipeline: it would need to run (lathe run -target %s)", e.Target, e.Addr, e.Target)
}

// cachedInstance is a stage instance whose current key has a result.
type cachedInstance struct {
	inst     *config.Instance
	args     cty.Value
	key      cache.Key
	pins     map[string]string
	rec      *cache.Record
	upstream map[string]map[string]cty.Value // outputs of every ancestor
}

// instanceByAddr returns the one instance an address names.
func (ws *Workspace) instanceByAddr(addr string) (*config.Instance, error) {
	if inst := ws.Resolved.Instance(addr); inst != nil {
		return inst, nil
	}
	set, err := ws.lookupAddrs([]string{addr})
	if err != nil {
		return nil, err
	}
	var names []string
	for inst := range set {
		names = append(names, inst.Addr)
	}
	sort.Strings(names)
	return nil, fmt.Errorf("%s has several instances; name one of them: %s", addr, strings.Join(names, ", "))
}

// cached finds the result of inst for the current pipeline, reading every
// ancestor's result from the store; it fails with a NotCachedError when any
// of them would need to run.
func (ws *Workspace) cached(ctx context.Context, inst *config.Instance) (*cachedInstance, error) {
	var c *cachedInstance
	_, err := ws.walkStored(ctx, inst, true, func(in *config.Instance, st storedStage, outputs map[string]map[string]cty.Value) error {
		if st.rec == nil {
			return &NotCachedError{Addr: in.Addr, Target: inst.Addr}
		}
		if in == inst {
			c = &cachedInstance{inst: in, args: st.args, key: st.key, rec: st.rec, upstream: outputs}
			if st.pin != nil {
				c.pins = st.pin.values
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, fmt.Errorf("%s: not reached while planning", inst.Addr)
	}
	return c, nil
}

// storedStage is one instance as walkStored computes it: its arguments,
// key and pin, and its result in the store (nil when there is none).
type storedStage struct {
	args cty.Value
	key  cache.Key
	pin  *pinState
	rec  *cache.Record
}

// walkStored computes the key of every ancestor of inst (and of inst
// itself with self) in order, as a run would, and looks each result up in
// the store. visit sees each with the outputs of those before it; its
// error stops the walk. A result found is read into the outputs returned.
func (ws *Workspace) walkStored(ctx context.Context, inst *config.Instance, self bool,
	visit func(in *config.Instance, st storedStage, outputs map[string]map[string]cty.Value) error) (map[string]map[string]cty.Value, error) {
	sel, err := ws.resolveSelection(Selection{Targets: []string{inst.Addr}})
	if err != nil {
		return nil, err
	}
	outputs := map[string]map[string]cty.Value{}
	for _, in := range ws.Resolved.Instances {
		if !sel.selected[in] || (in == inst && !self) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var st storedStage
		if st.args, st.key, st.pin, _, err = ws.instanceKey(ctx, in, outputs); err != nil {
			return nil, err
		}
		if st.rec, err = ws.Store.Lookup(st.key.Sum); err != nil {
			return nil, fmt.Errorf("%s: %w", in.Addr, err)
		}
		if err := visit(in, st, outputs); err != nil {
			return nil, err
		}
		if st.rec == nil || in == inst {
			continue
		}
		outs, err := ws.outputsFromRecord(in, st.rec)
		if err != nil {
			return nil, err
		}
		outputs[in.Addr] = outs
	}
	return outputs, nil
}

// ParseOutputAddr splits `<kind>.<name>[\"key\"].<output>` into the
// instance address and the output name.
func ParseOutputAddr(s string) (addr, output string, err error) {
	from := strings.LastIndex(s, "]")
	i := strings.LastIndex(s, ".")
	if i <= from || i <= 0 || i == len(s)-1 {
		return "", "", fmt.Errorf("%q is not an output address: expected <kind>.<name>.<output> or <kind>.<name>[\"key\"].<output>", s)
	}
	return s[:i], s[i+1:], nil
}

// CachedArtifact returns the artifact an output of the current plan
// resolves to, from the store; it fails with a NotCachedError when the
// stage (or one it needs) would have to run.
func (ws *Workspace) CachedArtifact(ctx context.Context, addr, output string) (stage.Artifact, error) {
	inst, err := ws.instanceByAddr(addr)
	if err != nil {
		return stage.Artifact{}, err
	}
	o, ok := inst.Outputs[output]
	if !ok {
		names := make([]string, 0, len(inst.Outputs))
		for n := range inst.Outputs {
			names = append(names, n)
		}
		sort.Strings(names)
		return stage.Artifact{}, fmt.Errorf("%s has no output %q; its outputs are %s", addr, output, strings.Join(names, ", "))
	}
	kind, isArtifact := stage.ArtifactKindOf(o.Type)
	if !isArtifact {
		return stage.Artifact{}, fmt.Errorf("%s.%s is a value (%s), not an artifact", addr, output, o.Type.FriendlyName())
	}
	c, err := ws.cached(ctx, inst)
	if err != nil {
		return stage.Artifact{}, err
	}
	a, ok := c.rec.Artifacts[output]
	if !ok {
		return stage.Artifact{}, &recordError{addr: inst.Addr, msg: "record lacks artifact output " + output}
	}
	return stage.Artifact{Kind: kind, Digest: a.Digest, Path: ws.Store.ArtifactPath(a.Digest)}, nil
}

// ValidationFailed reports whether diags hold errors and every one of them
// is a failed variable validation rule (so a CI job can tell bad inputs from
// a broken pipeline). It recognises the diagnostics pipeline/config emits
// for a rule whose condition is false.
func ValidationFailed(diags hcl.Diagnostics) bool {
	n := 0
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		if _, ok := d.Extra.(config.ValidationRuleFailed); !ok {
			return false
		}
		n++
	}
	return n > 0
}

// fileDigests maps every regular file and link below dir (slash paths) to
// "sha256:<hex>" of its content or link target.
func fileDigests(dir string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		h := sha256.New()
		if d.Type()&fs.ModeSymlink != 0 {
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			h.Write([]byte("link:" + link))
		} else {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
		}
		out[filepath.ToSlash(rel)] = "sha256:" + hex.EncodeToString(h.Sum(nil))
		return nil
	})
	return out, err
}
