package train

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Checkpoint file names inside a checkpoint-<step> directory.
const (
	// WeightsFile holds the trainable parameters (all of them in full
	// training; the adapters under LoRA) in F32 with in-model names.
	WeightsFile   = "trainable.safetensors"
	StateFile     = "trainer_state.json"
	OptimizerFile = "optimizer.bin"
	ckptPrefix    = "checkpoint-"
)

// state is trainer_state.json.
type state struct {
	Step       int     `json:"step"`
	TotalSteps int     `json:"total_steps"`
	NumParams  int     `json:"num_trainable_params"`
	Seed       uint64  `json:"seed"`
	Epoch      int     `json:"epoch"`
	Position   int     `json:"position"`
	RNG        []byte  `json:"rng_state_at_epoch_start"`
	Tokens     int64   `json:"tokens"`
	History    History `json:"history"`
}

// Checkpoints lists the checkpoint directories in dir, oldest first, with
// their steps.
func Checkpoints(dir string) ([]int, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("train: checkpoints: %w", err)
	}
	var steps []int
	for _, e := range ents {
		s, ok := strings.CutPrefix(e.Name(), ckptPrefix)
		if !ok || !e.IsDir() {
			continue
		}
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), StateFile)); err != nil {
			continue
		}
		steps = append(steps, n)
	}
	sort.Ints(steps)
	paths := make([]string, len(steps))
	for i, n := range steps {
		paths[i] = filepath.Join(dir, ckptPrefix+strconv.Itoa(n))
	}
	return steps, paths, nil
}

func (t *Trainer) lastCkptStep() int {
	if t.lastCkpt == "" {
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(filepath.Base(t.lastCkpt), ckptPrefix))
	return n
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// checkpoint writes checkpoint-<step> atomically and prunes old ones.
func (t *Trainer) checkpoint() error {
	dir := t.Cfg.CheckpointDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".tmp-"+ckptPrefix)
	if err != nil {
		return fmt.Errorf("train: checkpoint: %w", err)
	}
	fail := func(err error) error {
		os.RemoveAll(tmp)
		return fmt.Errorf("train: checkpoint step %d: %w", t.step, err)
	}
	if err := t.Model.SaveTrainable(filepath.Join(tmp, WeightsFile)); err != nil {
		return fail(err)
	}
	f, err := os.Create(filepath.Join(tmp, OptimizerFile))
	if err != nil {
		return fail(err)
	}
	w := bufio.NewWriter(f)
	err = t.opt.save(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	st := state{Step: t.step, TotalSteps: t.total, NumParams: t.Model.NumTrainable(), Seed: t.Cfg.Seed,
		Epoch: t.cur.epoch, Position: t.cur.pos, RNG: t.cur.rngAtEp, Tokens: t.tokens, History: t.hist}
	b, err := json.MarshalIndent(&st, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, StateFile), append(b, '\n'), 0o644); err != nil {
		return fail(err)
	}
	for _, n := range []string{WeightsFile, OptimizerFile, StateFile} {
		if err := syncFile(filepath.Join(tmp, n)); err != nil {
			return fail(err)
		}
	}
	final := filepath.Join(dir, ckptPrefix+strconv.Itoa(t.step))
	if err := os.RemoveAll(final); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fail(err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	t.lastCkpt = final
	t.logf("saved %s", final)
	return t.prune()
}

// prune removes the oldest checkpoints beyond SaveTotalLimit.
func (t *Trainer) prune() error {
	if t.Cfg.SaveTotalLimit <= 0 {
		return nil
	}
	_, paths, err := Checkpoints(t.Cfg.CheckpointDir)
	if err != nil {
		return err
	}
	for len(paths) > t.Cfg.SaveTotalLimit {
		if err := os.RemoveAll(paths[0]); err != nil {
			return fmt.Errorf("train: prune checkpoints: %w", err)
		}
		paths = paths[1:]
	}
	return nil
}

// resume loads the newest checkpoint, if any, and returns its step and
// directory. Leftover temporary directories are removed.
func (t *Trainer) resume() (int, string, error) {
	dir := t.Cfg.CheckpointDir
	if ents, err := os.ReadDir(dir); err == nil {
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".tmp-"+ckptPrefix) {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	}
	steps, paths, err := Checkpoints(dir)
	if err != nil || len(steps) == 0 {
		return 0, "", err
	}
	p := paths[len(paths)-1]
	fail := func(err error) (int, string, error) {
		return 0, "", fmt.Errorf("train: resume from %s: %w", p, err)
	}
	b, err := os.ReadFile(filepath.Join(p, StateFile))
	if err != nil {
		return fail(err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return fail(err)
	}
	switch {
	case st.NumParams != t.Model.NumTrainable():
		return fail(fmt.Errorf("checkpoint has %d trainable parameters, the model %d", st.NumParams, t.Model.NumTrainable()))
	case st.TotalSteps != t.total || st.Seed != t.Cfg.Seed:
		return fail(fmt.Errorf("checkpoint was written by a run of %d steps with seed %d, this run has %d steps with seed %d", st.TotalSteps, st.Seed, t.total, t.Cfg.Seed))
	case st.Step > t.total:
		return fail(fmt.Errorf("checkpoint step %d beyond the last step %d", st.Step, t.total))
	}
	if err := t.Model.LoadTensors(filepath.Join(p, WeightsFile), true); err != nil {
		return fail(err)
	}
	f, err := os.Open(filepath.Join(p, OptimizerFile))
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	if err := t.opt.load(bufio.NewReader(f)); err != nil {
		return fail(fmt.Errorf("%s: %w", OptimizerFile, err))
	}
	if err := t.cur.restore(st.Epoch, st.Position, st.RNG); err != nil {
		return fail(err)
	}
	t.step, t.tokens, t.hist = st.Step, st.Tokens, st.History
	return st.Step, p, nil
}
