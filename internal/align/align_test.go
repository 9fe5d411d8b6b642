package align

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ---------------------------------------------------------------------------
// helpers

func near(a, b, rel, abs float64) bool {
	if a == b {
		return true
	}
	return math.Abs(a-b) <= rel*math.Max(math.Abs(a), math.Abs(b))+abs
}

func lp(sum float64, count int) LogProb { return LogProb{Sum: sum, Count: count} }

// randomPairs draws n pairs with 1..64 response tokens, average policy
// log-probs in [-3, -0.02] and reference sums near the policy's.
func randomPairs(r *rand.Rand, n int) []Pair {
	pairs := make([]Pair, n)
	for i := range pairs {
		cc, rc := 1+r.IntN(64), 1+r.IntN(64)
		cAvg := -0.02 - 2.98*r.Float64()
		rAvg := -0.02 - 2.98*r.Float64()
		pairs[i] = Pair{
			Chosen:      lp(cAvg*float64(cc), cc),
			Rejected:    lp(rAvg*float64(rc), rc),
			RefChosen:   lp(cAvg*float64(cc)+r.NormFloat64()*math.Sqrt(float64(cc)), cc),
			RefRejected: lp(rAvg*float64(rc)+r.NormFloat64()*math.Sqrt(float64(rc)), rc),
		}
		// keep reference log-probs <= 0, as real ones are
		pairs[i].RefChosen.Sum = math.Min(pairs[i].RefChosen.Sum, -0.01)
		pairs[i].RefRejected.Sum = math.Min(pairs[i].RefRejected.Sum, -0.01)
	}
	return pairs
}

// hingeActive reports whether the hinge term of p is above zero.
func hingeActive(c DPOConfig, p Pair) bool {
	h := (p.Chosen.Sum - p.Rejected.Sum) - (p.RefChosen.Sum - p.RefRejected.Sum)
	return 1-c.beta()*h > 0
}

// variants are the configurations every loss-wide test runs over.
var variants = []struct {
	name string
	cfg  DPOConfig
}{
	{"sigmoid-default", DPOConfig{}},
	{"sigmoid-beta0.5", DPOConfig{Loss: LossSigmoid, Beta: 0.5}},
	{"sigmoid-ls0.1", DPOConfig{Loss: LossSigmoid, LabelSmoothing: 0.1}},
	{"sigmoid-ls0.3-ftx0.3", DPOConfig{Loss: LossSigmoid, Beta: 0.2, LabelSmoothing: 0.3, FTX: 0.3}},
	{"hinge", DPOConfig{Loss: LossHinge}},
	{"hinge-beta0.3-ftx1", DPOConfig{Loss: LossHinge, Beta: 0.3, FTX: 1}},
	{"ipo", DPOConfig{Loss: LossIPO}},
	{"ipo-beta0.5-ftx0.5", DPOConfig{Loss: LossIPO, Beta: 0.5, FTX: 0.5}},
	{"orpo", DPOConfig{Loss: LossORPO}},
	{"orpo-beta1", DPOConfig{Loss: LossORPO, Beta: 1}},
	{"simpo", DPOConfig{Loss: LossSimPO}},
	{"simpo-beta2-gamma1", DPOConfig{Loss: LossSimPO, Beta: 2, SimPOGamma: 1}},
	{"simpo-ftx0.2", DPOConfig{Loss: LossSimPO, Beta: 2.5, FTX: 0.2}},
}

// ---------------------------------------------------------------------------
// hand-checked values

func TestDPOHandChecked(t *testing.T) {
	ln2 := math.Ln2
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	// h = 0: policy and reference log-ratios equal.
	h0 := Pair{Chosen: lp(-10, 5), Rejected: lp(-12, 4), RefChosen: lp(-11, 5), RefRejected: lp(-13, 4)}
	tests := []struct {
		name string
		cfg  DPOConfig
		pair Pair
		want PairResult
	}{
		{"sigmoid h=0", DPOConfig{}, h0,
			PairResult{Loss: ln2, DChosen: -0.05, DRejected: 0.05, ChosenReward: 0.1, RejectedReward: 0.1}},
		{"sigmoid h=0 label smoothing", DPOConfig{LabelSmoothing: 0.1}, h0,
			// -(0.9)·σ(0)·β + 0.1·σ(0)·β = -0.04
			PairResult{Loss: ln2, DChosen: -0.04, DRejected: 0.04, ChosenReward: 0.1, RejectedReward: 0.1}},
		{"sigmoid h=0 ftx", DPOConfig{FTX: 1}, Pair{Chosen: lp(-6, 3), Rejected: lp(-6, 3), RefChosen: lp(-6, 3), RefRejected: lp(-6, 3)},
			// + 1·(-avg chosen) = 2; d/dSum = -1/3
			PairResult{Loss: ln2 + 2, DChosen: -0.05 - 1.0/3, DRejected: 0.05}},
		{"sigmoid h=10 beta=1", DPOConfig{Beta: 1}, Pair{Chosen: lp(-5, 2), Rejected: lp(-15, 2), RefChosen: lp(-5, 2), RefRejected: lp(-5, 2)},
			PairResult{Loss: math.Log1p(math.Exp(-10)), DChosen: -sig(-10), DRejected: sig(-10), ChosenReward: 0, RejectedReward: -10}},
		{"hinge h=0", DPOConfig{Loss: LossHinge}, h0,
			PairResult{Loss: 1, DChosen: -0.1, DRejected: 0.1, ChosenReward: 0.1, RejectedReward: 0.1}},
		{"hinge margin met", DPOConfig{Loss: LossHinge}, Pair{Chosen: lp(-1, 1), Rejected: lp(-21, 1), RefChosen: lp(-1, 1), RefRejected: lp(-1, 1)},
			// 1 - 0.1·20 < 0
			PairResult{Loss: 0, DChosen: 0, DRejected: 0, ChosenReward: 0, RejectedReward: -2}},
		{"ipo averages", DPOConfig{Loss: LossIPO}, Pair{Chosen: lp(-4, 4), Rejected: lp(-6, 3), RefChosen: lp(-8, 4), RefRejected: lp(-6, 3)},
			// h = (-1 - -2) - (-2 - -2) = 1; loss = (1 - 5)^2; d/davg = 2·(-4)
			PairResult{Loss: 16, DChosen: -8.0 / 4, DRejected: 8.0 / 3, ChosenReward: 0.1, RejectedReward: 0}},
		{"simpo equal averages", DPOConfig{Loss: LossSimPO}, Pair{Chosen: lp(-3, 3), Rejected: lp(-5, 5)},
			// x = β·(0 - γ/β) = -0.5
			PairResult{Loss: math.Log1p(math.Exp(0.5)), DChosen: -0.1 * sig(0.5) / 3, DRejected: 0.1 * sig(0.5) / 5, ChosenReward: -0.1, RejectedReward: -0.1}},
		{"orpo p=0.5", DPOConfig{Loss: LossORPO}, Pair{Chosen: lp(-2*ln2, 2), Rejected: lp(-3*ln2, 3)},
			// log_odds = 0; loss = ln2 + β·ln2; d log_odds/dπ = 1/(1-0.5) = 2
			PairResult{Loss: ln2 * 1.1, DChosen: (-1 - 0.1) / 2, DRejected: 0.1 / 3, ChosenReward: -0.1 * ln2, RejectedReward: -0.1 * ln2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, m, err := DPO(tt.cfg, []Pair{tt.pair})
			if err != nil {
				t.Fatal(err)
			}
			got := res[0]
			for _, f := range []struct {
				name      string
				got, want float64
			}{
				{"Loss", got.Loss, tt.want.Loss},
				{"DChosen", got.DChosen, tt.want.DChosen},
				{"DRejected", got.DRejected, tt.want.DRejected},
				{"ChosenReward", got.ChosenReward, tt.want.ChosenReward},
				{"RejectedReward", got.RejectedReward, tt.want.RejectedReward},
				{"Metrics.Loss", m.Loss, tt.want.Loss},
			} {
				if !near(f.got, f.want, 1e-12, 1e-15) {
					t.Errorf("%s = %.17g, want %.17g", f.name, f.got, f.want)
				}
			}
		})
	}
}

func TestDPOBatchMeanAndMetrics(t *testing.T) {
	pairs := []Pair{
		{Chosen: lp(-10, 5), Rejected: lp(-12, 4), RefChosen: lp(-11, 5), RefRejected: lp(-13, 4)}, // h = 0, rewards 0.1 / 0.1
		{Chosen: lp(-5, 2), Rejected: lp(-15, 2), RefChosen: lp(-5, 2), RefRejected: lp(-5, 2)},    // h = 10, rewards 0 / -1
		{Chosen: lp(-9, 3), Rejected: lp(-4, 3), RefChosen: lp(-4, 3), RefRejected: lp(-4, 3)},     // h = -5, rewards -0.5 / 0
	}
	cfg := DPOConfig{}
	res, m, err := DPO(cfg, pairs)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pairs {
		single, _, err := DPO(cfg, []Pair{p})
		if err != nil {
			t.Fatal(err)
		}
		if !near(res[i].Loss, single[0].Loss, 1e-15, 0) || !near(res[i].DChosen*3, single[0].DChosen, 1e-14, 0) ||
			!near(res[i].DRejected*3, single[0].DRejected, 1e-14, 0) {
			t.Errorf("pair %d: batch %+v vs alone %+v: gradient must be of the mean loss", i, res[i], single[0])
		}
	}
	wantLoss := (math.Ln2 + math.Log1p(math.Exp(-1)) + math.Log1p(math.Exp(0.5))) / 3
	want := Metrics{
		Loss:            wantLoss,
		RewardsChosen:   (0.1 + 0 - 0.5) / 3,
		RewardsRejected: (0.1 - 1 + 0) / 3,
		Accuracy:        1.0 / 3, // ties do not count
		Margin:          (0 + 1 - 0.5) / 3,
		LogpsChosen:     -24.0 / 3,
		LogpsRejected:   -31.0 / 3,
	}
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"Loss", m.Loss, want.Loss}, {"RewardsChosen", m.RewardsChosen, want.RewardsChosen},
		{"RewardsRejected", m.RewardsRejected, want.RewardsRejected}, {"Accuracy", m.Accuracy, want.Accuracy},
		{"Margin", m.Margin, want.Margin}, {"LogpsChosen", m.LogpsChosen, want.LogpsChosen},
		{"LogpsRejected", m.LogpsRejected, want.LogpsRejected},
	} {
		if !near(f.got, f.want, 1e-12, 1e-15) {
			t.Errorf("Metrics.%s = %.17g, want %.17g", f.name, f.got, f.want)
		}
	}
}

func TestDPOExtremeLogitsStayFinite(t *testing.T) {
	for _, v := range variants {
		for _, h := range []float64{-1e4, 1e4} {
			p := Pair{Chosen: lp(h/2-1e4, 1000), Rejected: lp(-h/2-1e4, 1000), RefChosen: lp(-1e4, 1000), RefRejected: lp(-1e4, 1000)}
			res, m, err := DPO(v.cfg, []Pair{p})
			if err != nil {
				t.Fatalf("%s: %v", v.name, err)
			}
			for _, x := range []float64{res[0].Loss, res[0].DChosen, res[0].DRejected, m.Loss} {
				if !isFinite(x) {
					t.Errorf("%s h=%g: non-finite result %+v", v.name, h, res[0])
				}
			}
		}
	}
}

func TestORPOClampNearZero(t *testing.T) {
	cfg := DPOConfig{Loss: LossORPO}
	// Average log-probs of exactly 0 and slightly above (rounding) would make
	// log1p(-exp(π)) -Inf or NaN without the clamp.
	for _, sum := range []float64{0, 1e-12, -1e-9, ORPOLogProbCeiling} {
		p := Pair{Chosen: lp(sum, 1), Rejected: lp(-2, 1)}
		res, _, err := DPO(cfg, []Pair{p})
		if err != nil {
			t.Fatal(err)
		}
		r := res[0]
		if !isFinite(r.Loss) || !isFinite(r.DChosen) || !isFinite(r.DRejected) {
			t.Fatalf("chosen avg %g: non-finite %+v", sum, r)
		}
		lr := math.Log(-math.Expm1(-2.0))
		logOdds := (sum + 2) - (math.Log(-math.Expm1(math.Min(sum, ORPOLogProbCeiling))) - lr)
		wantLoss := -sum + 0.1*math.Log1p(math.Exp(-logOdds))
		if !near(r.Loss, wantLoss, 1e-12, 0) {
			t.Errorf("chosen avg %g: loss %.17g, want %.17g", sum, r.Loss, wantLoss)
		}
		if sum > ORPOLogProbCeiling {
			// clamped: the log(1-exp) term is constant, so d log_odds/dπc = 1
			want := -1 - 0.1/(1+math.Exp(logOdds))
			if !near(r.DChosen, want, 1e-12, 0) {
				t.Errorf("chosen avg %g (clamped): DChosen %.17g, want %.17g", sum, r.DChosen, want)
			}
		}
	}
}

func TestNeedsReference(t *testing.T) {
	for _, tt := range []struct {
		loss string
		want bool
	}{{"", true}, {LossSigmoid, true}, {LossIPO, true}, {LossHinge, true}, {LossORPO, false}, {LossSimPO, false}} {
		if got := (DPOConfig{Loss: tt.loss}).NeedsReference(); got != tt.want {
			t.Errorf("NeedsReference(%q) = %v, want %v", tt.loss, got, tt.want)
		}
	}
	// Reference-free losses ignore the Ref* fields, even garbage.
	p := Pair{Chosen: lp(-3, 3), Rejected: lp(-5, 5), RefChosen: lp(math.NaN(), 0), RefRejected: lp(math.Inf(1), -1)}
	for _, loss := range []string{LossORPO, LossSimPO} {
		if _, _, err := DPO(DPOConfig{Loss: loss}, []Pair{p}); err != nil {
			t.Errorf("%s with unused bad reference: %v", loss, err)
		}
	}
}

// ---------------------------------------------------------------------------
// finite differences

func TestDPOGradientsFiniteDifference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			pairs := randomPairs(r, 8)
			res, _, err := DPO(v.cfg, pairs)
			if err != nil {
				t.Fatal(err)
			}
			meanLoss := func(ps []Pair) float64 {
				_, m, err := DPO(v.cfg, ps)
				if err != nil {
					t.Fatal(err)
				}
				return m.Loss
			}
			checked := 0
			for i := range pairs {
				for side, get := range map[string]func(*Pair) *float64{
					"chosen":   func(p *Pair) *float64 { return &p.Chosen.Sum },
					"rejected": func(p *Pair) *float64 { return &p.Rejected.Sum },
				} {
					const step = 1e-5
					ps := append([]Pair(nil), pairs...)
					x := get(&ps[i])
					x0 := *x
					*x = x0 + step
					lPlus, activePlus := meanLoss(ps), hingeActive(v.cfg, ps[i])
					*x = x0 - step
					lMinus, activeMinus := meanLoss(ps), hingeActive(v.cfg, ps[i])
					*x = x0
					if v.cfg.Loss == LossHinge && activePlus != activeMinus {
						continue // straddles the hinge's kink
					}
					fd := (lPlus - lMinus) / (2 * step)
					an := res[i].DChosen
					if side == "rejected" {
						an = res[i].DRejected
					}
					if !near(an, fd, 1e-6, 1e-10) {
						t.Errorf("pair %d %s: analytic %.12g, finite difference %.12g", i, side, an, fd)
					}
					checked++
				}
			}
			if checked < len(pairs) {
				t.Fatalf("only %d gradients checked", checked)
			}
		})
	}
}

// ---------------------------------------------------------------------------
// errors

func TestValidate(t *testing.T) {
	good := []DPOConfig{{}, {Loss: LossSigmoid, LabelSmoothing: 0.49}, {Loss: LossIPO, Beta: 1, FTX: 2},
		{Loss: LossHinge}, {Loss: LossORPO, Beta: 0.2}, {Loss: LossSimPO, SimPOGamma: 1.5}}
	for _, c := range good {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		}
	}
	bad := []struct {
		cfg  DPOConfig
		want string
	}{
		{DPOConfig{Loss: "kto_pair"}, "unknown preference loss"},
		{DPOConfig{Loss: "Sigmoid"}, "unknown preference loss"},
		{DPOConfig{Beta: -0.1}, "beta"},
		{DPOConfig{Beta: math.NaN()}, "beta"},
		{DPOConfig{Beta: math.Inf(1)}, "beta"},
		{DPOConfig{LabelSmoothing: 0.5}, "label smoothing"},
		{DPOConfig{LabelSmoothing: -0.01}, "label smoothing"},
		{DPOConfig{Loss: LossIPO, LabelSmoothing: 0.1}, "only valid for the sigmoid"},
		{DPOConfig{Loss: LossSimPO, SimPOGamma: -1}, "simpo gamma"},
		{DPOConfig{FTX: -1}, "ftx"},
		{DPOConfig{FTX: math.NaN()}, "ftx"},
		{DPOConfig{Loss: LossORPO, FTX: 0.5}, "orpo"},
	}
	for _, tt := range bad {
		err := tt.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Validate(%+v) = %v, want error containing %q", tt.cfg, err, tt.want)
			continue
		}
		if _, _, err := DPO(tt.cfg, randomPairs(rand.New(rand.NewPCG(3, 4)), 2)); err == nil {
			t.Errorf("DPO(%+v) accepted an invalid config", tt.cfg)
		}
	}
}

func TestDPOBadPairs(t *testing.T) {
	ok := Pair{Chosen: lp(-3, 3), Rejected: lp(-5, 5), RefChosen: lp(-4, 3), RefRejected: lp(-4, 5)}
	with := func(f func(*Pair)) []Pair {
		p := ok
		f(&p)
		return []Pair{ok, p}
	}
	tests := []struct {
		name  string
		cfg   DPOConfig
		pairs []Pair
		want  string
	}{
		{"empty", DPOConfig{}, nil, "no pairs"},
		{"ipo zero count", DPOConfig{Loss: LossIPO}, with(func(p *Pair) { p.Chosen.Count = 0 }), "pair 1: chosen has 0 tokens"},
		{"ipo zero ref count", DPOConfig{Loss: LossIPO}, with(func(p *Pair) { p.RefRejected.Count = 0 }), "pair 1: reference rejected has 0 tokens"},
		{"orpo zero count", DPOConfig{Loss: LossORPO}, with(func(p *Pair) { p.Rejected.Count = 0 }), "pair 1: rejected has 0 tokens"},
		{"simpo zero count", DPOConfig{Loss: LossSimPO}, with(func(p *Pair) { p.Chosen.Count = 0 }), "pair 1: chosen has 0 tokens"},
		{"sigmoid ftx zero count", DPOConfig{FTX: 0.1}, with(func(p *Pair) { p.Chosen.Count = 0 }), "pair 1: chosen (for ftx) has 0 tokens"},
		{"negative count", DPOConfig{}, with(func(p *Pair) { p.Rejected.Count = -1 }), "pair 1: rejected token count is -1"},
		{"nan sum", DPOConfig{}, with(func(p *Pair) { p.Chosen.Sum = math.NaN() }), "pair 1: chosen log-prob sum is NaN"},
		{"inf ref", DPOConfig{Loss: LossHinge}, with(func(p *Pair) { p.RefChosen.Sum = math.Inf(-1) }), "pair 1: reference chosen log-prob sum is -Inf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := DPO(tt.cfg, tt.pairs)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
	// Sums need no count: sigmoid and hinge accept zero-token sequences.
	z := Pair{Chosen: lp(0, 0), Rejected: lp(-1, 1), RefChosen: lp(0, 0), RefRejected: lp(-1, 1)}
	for _, loss := range []string{LossSigmoid, LossHinge} {
		if _, _, err := DPO(DPOConfig{Loss: loss}, []Pair{z}); err != nil {
			t.Errorf("%s with a zero-token chosen: %v", loss, err)
		}
	}
}

// ---------------------------------------------------------------------------
// pairwise reward

func TestPairwiseReward(t *testing.T) {
	r, err := PairwiseReward([]float64{1, 0, 2}, []float64{1, 3, -1})
	if err != nil {
		t.Fatal(err)
	}
	sig := func(x float64) float64 { return 1 / (1 + math.Exp(-x)) }
	wantLoss := (math.Ln2 + math.Log1p(math.Exp(3)) + math.Log1p(math.Exp(-3))) / 3
	if !near(r.Loss, wantLoss, 1e-14, 0) {
		t.Errorf("loss %.17g, want %.17g", r.Loss, wantLoss)
	}
	if r.Accuracy != 1.0/3 {
		t.Errorf("accuracy %g, want 1/3 (ties do not count)", r.Accuracy)
	}
	wantD := []float64{-0.5 / 3, -sig(3) / 3, -sig(-3) / 3}
	for i := range wantD {
		if !near(r.DChosen[i], wantD[i], 1e-14, 0) || !near(r.DRejected[i], -wantD[i], 1e-14, 0) {
			t.Errorf("pair %d: D = %g, %g, want %g, %g", i, r.DChosen[i], r.DRejected[i], wantD[i], -wantD[i])
		}
	}

	// finite differences
	rng := rand.New(rand.NewPCG(5, 6))
	ch, rj := make([]float64, 10), make([]float64, 10)
	for i := range ch {
		ch[i], rj[i] = 4*rng.NormFloat64(), 4*rng.NormFloat64()
	}
	r, err = PairwiseReward(ch, rj)
	if err != nil {
		t.Fatal(err)
	}
	const step = 1e-5
	for i := range ch {
		for _, s := range []struct {
			xs []float64
			an float64
		}{{ch, r.DChosen[i]}, {rj, r.DRejected[i]}} {
			x0 := s.xs[i]
			s.xs[i] = x0 + step
			p, _ := PairwiseReward(ch, rj)
			s.xs[i] = x0 - step
			m, _ := PairwiseReward(ch, rj)
			s.xs[i] = x0
			if fd := (p.Loss - m.Loss) / (2 * step); !near(s.an, fd, 1e-6, 1e-11) {
				t.Errorf("pair %d: analytic %.12g, finite difference %.12g", i, s.an, fd)
			}
		}
	}
	if r, err := PairwiseReward([]float64{1e4}, []float64{-1e4}); err != nil || !isFinite(r.Loss) || r.Loss != 0 {
		t.Errorf("large margin: %+v, %v", r, err)
	}
}

func TestPairwiseRewardErrors(t *testing.T) {
	for _, tt := range []struct {
		c, r []float64
		want string
	}{
		{[]float64{1, 2}, []float64{1}, "2 chosen scores but 1 rejected"},
		{nil, nil, "no pairs"},
		{[]float64{1, math.NaN()}, []float64{0, 0}, "pair 1"},
		{[]float64{1}, []float64{math.Inf(1)}, "pair 0"},
	} {
		if _, err := PairwiseReward(tt.c, tt.r); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("PairwiseReward(%v, %v) = %v, want error containing %q", tt.c, tt.r, err, tt.want)
		}
	}
}

// ---------------------------------------------------------------------------
// PyTorch peer

const systemPython = "/usr/bin/python3"

var (
	torchOnce   sync.Once
	torchPython string
	torchErr    error
)

// needTorch returns a python3 that imports torch, skipping the test when
// there is none unless LATHE_REQUIRE_PEERS=1.
func needTorch(t *testing.T) string {
	t.Helper()
	torchOnce.Do(func() {
		candidates := []string{systemPython}
		if p, err := exec.LookPath("python3"); err == nil && p != systemPython {
			candidates = append(candidates, p)
		}
		var msgs []string
		for _, py := range candidates {
			out, err := exec.Command(py, "-c", "import torch").CombinedOutput()
			if err == nil {
				torchPython = py
				return
			}
			msgs = append(msgs, fmt.Sprintf("%s -c 'import torch': %v: %s", py, err, strings.TrimSpace(string(out))))
		}
		torchErr = fmt.Errorf("no python3 with torch: %s", strings.Join(msgs, "; "))
	})
	if torchErr != nil {
		if os.Getenv("LATHE_REQUIRE_PEERS") == "1" {
			t.Fatalf("PyTorch reference required (LATHE_REQUIRE_PEERS=1): %v", torchErr)
		}
		t.Skipf("PyTorch reference unavailable: %v", torchErr)
	}
	return torchPython
}

type refConfig struct {
	Loss           string  `json:"loss"`
	Beta           float64 `json:"beta"`
	LabelSmoothing float64 `json:"label_smoothing"`
	SimPOGamma     float64 `json:"simpo_gamma"`
	FTX            float64 `json:"ftx"`
}

type refPair struct {
	Chosen      [2]float64 `json:"chosen"`
	Rejected    [2]float64 `json:"rejected"`
	RefChosen   [2]float64 `json:"ref_chosen"`
	RefRejected [2]float64 `json:"ref_rejected"`
}

type refReward struct {
	Chosen   []float64 `json:"chosen"`
	Rejected []float64 `json:"rejected"`
}

type refCase struct {
	Name   string     `json:"name"`
	Config *refConfig `json:"config,omitempty"`
	Pairs  []refPair  `json:"pairs,omitempty"`
	Reward *refReward `json:"reward,omitempty"`
}

type refResult struct {
	// DPO cases
	Losses          []float64          `json:"losses"`
	ChosenRewards   []float64          `json:"chosen_rewards"`
	RejectedRewards []float64          `json:"rejected_rewards"`
	Metrics         map[string]float64 `json:"metrics"`
	// both
	DChosen   []float64 `json:"d_chosen"`
	DRejected []float64 `json:"d_rejected"`
	// reward cases
	Loss     float64 `json:"loss"`
	Accuracy float64 `json:"accuracy"`
}

func toRef(p Pair) refPair {
	f := func(l LogProb) [2]float64 { return [2]float64{l.Sum, float64(l.Count)} }
	return refPair{f(p.Chosen), f(p.Rejected), f(p.RefChosen), f(p.RefRejected)}
}

func TestAgainstPyTorch(t *testing.T) {
	py := needTorch(t)
	rng := rand.New(rand.NewPCG(7, 8))

	type dpoCase struct {
		name  string
		cfg   DPOConfig
		pairs []Pair
	}
	var cases []dpoCase
	for _, v := range variants {
		cases = append(cases, dpoCase{v.name, v.cfg, randomPairs(rng, 20)})
	}
	// Edge pairs: h = 0 exactly, a tie in rewards, averages close to zero,
	// at ORPO's clamp ceiling (-4e-7/4) and above it (0, -1e-9/3), where the
	// reference clamps with torch.clamp.
	edge := []Pair{
		{Chosen: lp(-10, 5), Rejected: lp(-12, 4), RefChosen: lp(-11, 5), RefRejected: lp(-13, 4)},
		{Chosen: lp(-1e-3, 1), Rejected: lp(-2e-2, 2), RefChosen: lp(-1e-2, 1), RefRejected: lp(-1e-2, 2)},
		{Chosen: lp(-5e-4, 4), Rejected: lp(-60, 3), RefChosen: lp(-1, 4), RefRejected: lp(-50, 3)},
		{Chosen: lp(0, 4), Rejected: lp(-1e-9, 3), RefChosen: lp(-1, 4), RefRejected: lp(-50, 3)},
		{Chosen: lp(-4e-7, 4), Rejected: lp(-3, 3), RefChosen: lp(-1, 4), RefRejected: lp(-5, 3)},
	}
	for _, loss := range []string{LossSigmoid, LossHinge, LossIPO, LossORPO, LossSimPO} {
		cases = append(cases, dpoCase{"edge-" + loss, DPOConfig{Loss: loss}, edge})
	}

	rewardChosen, rewardRejected := make([]float64, 20), make([]float64, 20)
	for i := range rewardChosen {
		rewardChosen[i], rewardRejected[i] = 3*rng.NormFloat64(), 3*rng.NormFloat64()
	}
	rewardChosen[3] = rewardRejected[3] // a tie
	rewardRejected[5] = rewardChosen[5] + 40

	var req struct {
		Cases []refCase `json:"cases"`
	}
	for _, c := range cases {
		rc := refCase{Name: c.name, Config: &refConfig{c.cfg.Loss, c.cfg.Beta, c.cfg.LabelSmoothing, c.cfg.SimPOGamma, c.cfg.FTX}}
		for _, p := range c.pairs {
			rc.Pairs = append(rc.Pairs, toRef(p))
		}
		req.Cases = append(req.Cases, rc)
	}
	req.Cases = append(req.Cases, refCase{Name: "reward", Reward: &refReward{rewardChosen, rewardRejected}})

	in, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(py, filepath.Join("testdata", "align_ref.py"))
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("align_ref.py: %v\n%s", err, stderr.String())
	}
	var resp struct {
		Results []refResult `json:"results"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("align_ref.py output: %v\n%s", err, out)
	}
	if len(resp.Results) != len(req.Cases) {
		t.Fatalf("align_ref.py returned %d results for %d cases", len(resp.Results), len(req.Cases))
	}

	const rel, abs = 1e-9, 1e-13
	check := func(t *testing.T, what string, got, want float64) {
		t.Helper()
		if !near(got, want, rel, abs) {
			t.Errorf("%s: lathe %.17g, torch %.17g", what, got, want)
		}
	}
	for ci, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ref := resp.Results[ci]
			res, m, err := DPO(c.cfg, c.pairs)
			if err != nil {
				t.Fatal(err)
			}
			if len(ref.Losses) != len(res) || len(ref.DChosen) != len(res) || len(ref.DRejected) != len(res) ||
				len(ref.ChosenRewards) != len(res) || len(ref.RejectedRewards) != len(res) {
				t.Fatalf("torch returned %d losses for %d pairs", len(ref.Losses), len(res))
			}
			for i, r := range res {
				check(t, fmt.Sprintf("pair %d loss", i), r.Loss, ref.Losses[i])
				check(t, fmt.Sprintf("pair %d d_chosen", i), r.DChosen, ref.DChosen[i])
				check(t, fmt.Sprintf("pair %d d_rejected", i), r.DRejected, ref.DRejected[i])
				check(t, fmt.Sprintf("pair %d chosen reward", i), r.ChosenReward, ref.ChosenRewards[i])
				check(t, fmt.Sprintf("pair %d rejected reward", i), r.RejectedReward, ref.RejectedRewards[i])
			}
			for _, f := range []struct {
				key string
				got float64
			}{
				{"loss", m.Loss}, {"rewards_chosen", m.RewardsChosen}, {"rewards_rejected", m.RewardsRejected},
				{"accuracy", m.Accuracy}, {"margin", m.Margin}, {"logps_chosen", m.LogpsChosen},
				{"logps_rejected", m.LogpsRejected},
			} {
				want, ok := ref.Metrics[f.key]
				if !ok {
					t.Fatalf("torch metrics lack %q", f.key)
				}
				check(t, "metric "+f.key, f.got, want)
			}
		})
	}
	t.Run("reward", func(t *testing.T) {
		ref := resp.Results[len(cases)]
		r, err := PairwiseReward(rewardChosen, rewardRejected)
		if err != nil {
			t.Fatal(err)
		}
		check(t, "loss", r.Loss, ref.Loss)
		check(t, "accuracy", r.Accuracy, ref.Accuracy)
		if len(ref.DChosen) != len(r.DChosen) || len(ref.DRejected) != len(r.DRejected) {
			t.Fatalf("torch returned %d gradients for %d pairs", len(ref.DChosen), len(r.DChosen))
		}
		for i := range r.DChosen {
			check(t, fmt.Sprintf("pair %d d_chosen", i), r.DChosen[i], ref.DChosen[i])
			check(t, fmt.Sprintf("pair %d d_rejected", i), r.DRejected[i], ref.DRejected[i])
		}
	})
}
