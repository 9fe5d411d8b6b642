package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/lathe-ml/lathe/pipeline/config"
	"github.com/lathe-ml/lathe/pipeline/stage"
)

// resolveArgs applies the kind's Resolve hook (stage.Kind.Resolve) to an
// instance's fully known arguments: machine-dependent values such as
// batch_size = "auto" become what they resolve to here, before the cache
// key is computed, so that the key and Run see the resolved values. It
// returns the arguments unchanged and no note for a kind without the hook.
//
// When the workspace runs stages handed out by a run (ws.resolutions set:
// stage exec on a cluster node), a machine may resolve differently from
// the one that ran an upstream stage, and the upstream's key would not be
// found. So what a stage's own job resolved is recorded in that directory,
// and every other job computing that stage's key uses the record instead
// of resolving again.
func (ws *Workspace) resolveArgs(inst *config.Instance, args cty.Value) (cty.Value, string, error) {
	if inst.Kind.Resolve == nil {
		return args, "", nil
	}
	if ws.resolutions != "" {
		if out, ok, err := readResolution(ws.resolutions, inst.Addr, args); err != nil {
			return cty.NilVal, "", fmt.Errorf("%s: %w", inst.Addr, err)
		} else if ok {
			return out, "", nil
		}
	}
	out, note, err := inst.Kind.Resolve(args, ws.machineFor(inst))
	if err != nil {
		return cty.NilVal, "", fmt.Errorf("%s: %w", inst.Addr, err)
	}
	if out == cty.NilVal || !out.IsWhollyKnown() {
		return cty.NilVal, "", fmt.Errorf("%s: the %s kind resolved its arguments to an incomplete value", inst.Addr, inst.Kind.Name)
	}
	if ws.resolutions != "" && ws.execAddr == inst.Addr {
		if err := writeResolution(ws.resolutions, inst.Addr, args, out); err != nil {
			return cty.NilVal, "", fmt.Errorf("%s: record the resolved arguments: %w", inst.Addr, err)
		}
	}
	return out, note, nil
}

// resolutionFile is where the resolved arguments of addr are recorded.
func resolutionFile(dir, addr string) string {
	h := sha256.Sum256([]byte(addr))
	return filepath.Join(dir, hex.EncodeToString(h[:8])+".json")
}

// resolutionRecord is a resolution file: the top-level arguments the hook
// changed, each as cty's JSON with its type.
type resolutionRecord struct {
	Addr string                     `json:"address"`
	Args map[string]json.RawMessage `json:"args"`
}

// writeResolution records the top-level arguments of out that differ from
// args (written beside, then renamed into place).
func writeResolution(dir, addr string, args, out cty.Value) error {
	rec := resolutionRecord{Addr: addr, Args: map[string]json.RawMessage{}}
	for name, v := range out.AsValueMap() {
		if args.Type().HasAttribute(name) && args.GetAttr(name).RawEquals(v) {
			continue
		}
		b, err := json.Marshal(ctyjson.SimpleJSONValue{Value: v})
		if err != nil {
			return fmt.Errorf("argument %s: %w", name, err)
		}
		rec.Args[name] = b
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := resolutionFile(dir, addr)
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// readResolution applies the recorded resolution of addr to args; ok is
// false when none is recorded.
func readResolution(dir, addr string, args cty.Value) (cty.Value, bool, error) {
	data, err := os.ReadFile(resolutionFile(dir, addr))
	if errors.Is(err, os.ErrNotExist) {
		return cty.NilVal, false, nil
	}
	if err != nil {
		return cty.NilVal, false, err
	}
	var rec resolutionRecord
	if err := json.Unmarshal(data, &rec); err != nil || rec.Addr != addr {
		return cty.NilVal, false, fmt.Errorf("resolution record %s is not %s's (%v)", resolutionFile(dir, addr), addr, err)
	}
	attrs := args.AsValueMap()
	names := make([]string, 0, len(rec.Args))
	for n := range rec.Args {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		var v ctyjson.SimpleJSONValue
		if err := json.Unmarshal(rec.Args[n], &v); err != nil {
			return cty.NilVal, false, fmt.Errorf("resolution record %s: argument %s: %w", resolutionFile(dir, addr), n, err)
		}
		attrs[n] = v.Value
	}
	return cty.ObjectVal(attrs), true, nil
}

// GPUMemory is a GPUs that knows its devices' free memory (lathe's NVML
// inventory): Kind.Resolve of a GPU stage is told it (stage.Machine).
type GPUMemory interface {
	// DeviceMemory returns the free memory of the smallest usable device.
	DeviceMemory() (int64, error)
}

// machineFor returns what Resolve knows of the devices inst would run on.
func (ws *Workspace) machineFor(inst *config.Instance) stage.Machine {
	var m stage.Machine
	if inst.Resources.GPUs == 0 {
		return m
	}
	if g, ok := ws.GPUs.(GPUMemory); ok {
		if free, err := g.DeviceMemory(); err == nil && free > 0 {
			m.DeviceMemory = free
		}
	}
	return m
}
