package ppo

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func TestHandChecked(t *testing.T) {
	r, kl, err := Rewards(Rollout{LogProbs: []float64{-1, -2}, RefLogProbs: []float64{-1.5, -2}, Score: 3}, 0.2, "kl")
	if err != nil || kl[0] != 0.5 || r[0] != -0.1 || r[1] != 3 {
		t.Fatalf("rewards %v kl %v %v", r, kl, err)
	}
	// One token: A = r − V.
	adv, ret := GAE([]float64{1}, []float64{0.25}, 0.9, 0.95)
	if adv[0] != 0.75 || ret[0] != 1 {
		t.Fatalf("gae %v %v", adv, ret)
	}
	// Two tokens, gamma = lambda = 1: A1 = r1 − V1, A0 = r0 + V1 − V0 + A1.
	adv, _ = GAE([]float64{0, 1}, []float64{0.5, 0.25}, 1, 1)
	if adv[1] != 0.75 || adv[0] != 0.5 {
		t.Fatalf("gae %v", adv)
	}
	// Unclipped ratio 1: loss −mean(A), gradient −A/n.
	loss, d, cf, _ := PolicyLoss([]float64{-1, -2}, []float64{-1, -2}, []float64{1, -3}, 0.2)
	if loss != 1 || d[0] != -0.5 || d[1] != 1.5 || cf != 0 {
		t.Fatalf("policy loss %v %v %v", loss, d, cf)
	}
	c := AdaptiveKL{Value: 0.2, Target: 6, Horizon: 10000}
	c.Update(12, 100) // error clipped to 0.2
	if math.Abs(c.Value-0.2*(1+0.2*100/10000.0)) > 1e-15 {
		t.Fatalf("adaptive kl %v", c.Value)
	}
	if _, _, err := Rewards(Rollout{LogProbs: []float64{1}, RefLogProbs: []float64{1}}, 0.1, "full"); err == nil {
		t.Error("kl_penalty full accepted")
	}
}

func TestGradientsByFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 9
	logp, old, adv, v, oldV, ret := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range n {
		old[i] = -rng.Float64() * 3
		logp[i] = old[i] + (rng.Float64()-0.5)*0.6
		adv[i] = rng.NormFloat64()
		oldV[i] = rng.NormFloat64()
		v[i] = oldV[i] + (rng.Float64()-0.5)*0.6
		ret[i] = rng.NormFloat64()
	}
	_, dl, _, _ := PolicyLoss(logp, old, adv, 0.2)
	_, dv, _ := ValueLoss(v, oldV, ret, 0.2)
	const h = 1e-6
	for i := range n {
		lp := append([]float64(nil), logp...)
		lp[i] += h
		a, _, _, _ := PolicyLoss(lp, old, adv, 0.2)
		lp[i] -= 2 * h
		b, _, _, _ := PolicyLoss(lp, old, adv, 0.2)
		if fd := (a - b) / (2 * h); math.Abs(fd-dl[i]) > 1e-6 {
			t.Errorf("policy grad %d: %v, finite difference %v", i, dl[i], fd)
		}
		vv := append([]float64(nil), v...)
		vv[i] += h
		a, _, _ = ValueLoss(vv, oldV, ret, 0.2)
		vv[i] -= 2 * h
		b, _, _ = ValueLoss(vv, oldV, ret, 0.2)
		if fd := (a - b) / (2 * h); math.Abs(fd-dv[i]) > 1e-6 {
			t.Errorf("value grad %d: %v, finite difference %v", i, dv[i], fd)
		}
	}
}

// TestAgainstPyTorch compares every piece with testdata/ppo_ref.py, the
// TRL computation in PyTorch, on random fixed tensors.
func TestAgainstPyTorch(t *testing.T) {
	const python = "/usr/bin/python3"
	if out, err := exec.Command(python, "-c", "import torch").CombinedOutput(); err != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PyTorch is required (LATHE_REQUIRE_PEERS=1): %v\n%s", err, out)
		}
		t.Skipf("no PyTorch: %v", err)
	}
	for seed := range uint64(6) {
		rng := rand.New(rand.NewPCG(seed, 9))
		n := 3 + int(seed)*2
		vec := func(k int, f func() float64) []float64 {
			v := make([]float64, k)
			for i := range v {
				v[i] = f()
			}
			return v
		}
		logp := vec(n, func() float64 { return -rng.Float64() * 4 })
		c := map[string]any{
			"logp": logp, "ref": vec(n, func() float64 { return -rng.Float64() * 4 }),
			"values": vec(n, rng.NormFloat64), "score": rng.NormFloat64() * 2,
			"kl_coef": 0.05 + rng.Float64()*0.2, "kl_penalty": []string{"kl", "abs", "mse"}[seed%3],
			"gamma": 1.0 - rng.Float64()*0.1, "lam": 0.9 + rng.Float64()*0.1,
			"batch_adv": vec(n+5, rng.NormFloat64), "cliprange": 0.2, "cliprange_value": 0.2,
			"kl_target": 6.0, "kl_horizon": 10000.0, "kl_updates": [][2]float64{{3, 16}, {9, 16}, {6.5, 32}},
			"score_batches": [][]float64{vec(4, rng.NormFloat64), vec(4, func() float64 { return 3 + rng.NormFloat64() })},
			"score_clip":    []float64{0, 1.5}[seed%2],
		}
		newLogp := make([]float64, n)
		newV := make([]float64, n)
		for i := range n {
			newLogp[i] = logp[i] + (rng.Float64()-0.5)*0.8
			newV[i] = c["values"].([]float64)[i] + (rng.Float64()-0.5)*0.8
		}
		c["new_logp"], c["new_values"] = newLogp, newV
		in, _ := json.Marshal(c)
		cmd := exec.Command(python, filepath.Join("testdata", "ppo_ref.py"))
		cmd.Stdin = bytes.NewReader(in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("ppo_ref.py: %v", err)
		}
		var ref struct {
			Rewards, KL, Advantages, Returns, Whitened []float64
			PG                                         [4]json.RawMessage
			VF                                         [3]json.RawMessage
			KLValue                                    float64     `json:"kl_value"`
			ScoreNorm                                  [][]float64 `json:"score_norm"`
		}
		if err := json.Unmarshal(out, &ref); err != nil {
			t.Fatal(err)
		}
		near := func(what string, got, want []float64) {
			for i := range want {
				if math.Abs(got[i]-want[i]) > 1e-10*math.Max(1, math.Abs(want[i])) {
					t.Fatalf("seed %d %s[%d]: %v, PyTorch %v", seed, what, i, got[i], want[i])
				}
			}
		}
		r := Rollout{LogProbs: logp, RefLogProbs: c["ref"].([]float64), Values: c["values"].([]float64), Score: c["score"].(float64)}
		rw, kl, err := Rewards(r, c["kl_coef"].(float64), c["kl_penalty"].(string))
		if err != nil {
			t.Fatal(err)
		}
		near("rewards", rw, ref.Rewards)
		near("kl", kl, ref.KL)
		adv, ret := GAE(rw, r.Values, c["gamma"].(float64), c["lam"].(float64))
		near("advantages", adv, ref.Advantages)
		near("returns", ret, ref.Returns)
		near("whitened", Whiten(c["batch_adv"].([]float64)), ref.Whitened)
		num := func(m json.RawMessage) float64 { var f float64; json.Unmarshal(m, &f); return f }
		arr := func(m json.RawMessage) []float64 { var f []float64; json.Unmarshal(m, &f); return f }
		loss, dl, cf, akl := PolicyLoss(newLogp, logp, c["batch_adv"].([]float64)[:n], 0.2)
		near("policy loss", []float64{loss, cf, akl}, []float64{num(ref.PG[0]), num(ref.PG[2]), num(ref.PG[3])})
		near("policy grad", dl, arr(ref.PG[1]))
		vl, dv, vcf := ValueLoss(newV, r.Values, ret, 0.2)
		near("value loss", []float64{vl, vcf}, []float64{num(ref.VF[0]), num(ref.VF[2])})
		near("value grad", dv, arr(ref.VF[1]))
		ctl := AdaptiveKL{Value: c["kl_coef"].(float64), Target: 6, Horizon: 10000}
		for _, u := range c["kl_updates"].([][2]float64) {
			ctl.Update(u[0], int(u[1]))
		}
		near("kl controller", []float64{ctl.Value}, []float64{ref.KLValue})
		var rm RunningMoments
		for i, b := range c["score_batches"].([][]float64) {
			near("score norm", NormalizeScores(&rm, b, c["score_clip"].(float64)), ref.ScoreNorm[i])
		}
	}
}
