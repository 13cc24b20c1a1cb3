package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/bindings"
)

// ORPO's and SimPO's composite gradient — forward → per-token log-probs →
// Go loss of the length-normalised log-probs → one cotangent per scored
// token → backward — against central differences of the same loss on an
// F32 base, for two elements of every row of the policy's parameter table
// (LoRA A and B of each adapted projection). DPO runs the same check as
// the control. The pairs have chosen and rejected responses of different
// lengths, so a wrong length normalisation shows.
func TestNoReferenceGradCheck(t *testing.T) {
	path := f32Fixture(t)
	ps, _, err := pairs.Load(trainData, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{ORPO, SimPO, DPO} {
		t.Run(method, func(t *testing.T) {
			tr, err := bindings.NewTrainerFromFile(path, bindings.TrainerOptions{Threads: 2, Rank: 2, Alpha: 4, Seed: 3,
				Targets: bindings.TargetQ | bindings.TargetV | bindings.TargetDown, ExactBackward: true})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			enc, err := NewEncoder(tr.Model(), 64, false)
			if err != nil {
				t.Fatal(err)
			}
			exs, _, _, err := enc.Encode(ps[:3], BetaTable{Override: 0.5}, false)
			if err != nil {
				t.Fatal(err)
			}
			differ := false
			for i := range exs { // DPO's reference: read, not differentiated
				differ = differ || len(exs[i].Chosen) != len(exs[i].Rejected)
				exs[i].RefW, exs[i].RefL = -7*float64(len(exs[i].Chosen)), -7*float64(len(exs[i].Rejected))
			}
			if !differ {
				t.Fatal("every pair has responses of one length: the check would not see the normalisation")
			}
			cfg := Defaults(method)
			cfg.LabelSmoothing, cfg.SimPOGamma = 0.1, 0.3
			if method == SimPO {
				cfg.RPOAlpha = 0.5 // CPO-SimPO's NLL term too
			}
			if method == ORPO {
				cfg.ORPOLambda = 0.5 // the odds-ratio term weighs as much as the NLL
			}
			obj := newObjective(cfg)
			mb := MicroBatch{Examples: []int{0, 1, 2}}
			b := batchOf(obj, exs, mb)
			const norm = 3.0

			rng := rand.New(rand.NewPCG(13, 14))
			pol := tr.Set(0)
			si, _ := pol.Info()
			params := make([]float32, si.NParams)
			for i := range params {
				params[i] = float32(rng.NormFloat64() * 0.05)
			}
			if err := pol.SetState(params, nil, nil, 0); err != nil {
				t.Fatal(err)
			}
			loss := func() float64 {
				out, err := pol.Forward(b, 1)
				if err != nil {
					t.Fatal(err)
				}
				var m Metrics
				if _, _, err := lossOf(obj, exs, mb, out, norm, &m); err != nil {
					t.Fatal(err)
				}
				return m.Loss / norm
			}
			out, err := pol.ForwardGrad(b)
			if err != nil {
				t.Fatal(err)
			}
			var m Metrics
			cot, hc, err := lossOf(obj, exs, mb, out, norm, &m)
			if err != nil {
				t.Fatal(err)
			}
			if hc != nil || len(cot) != b.NScored() {
				t.Fatalf("cotangents: %d token (%d scored), %d head", len(cot), b.NScored(), len(hc))
			}
			if err := pol.Backward(cot, nil); err != nil {
				t.Fatal(err)
			}
			st, err := pol.GetState()
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("loss %.5f, sums %v", m.Loss/norm, out.Sums)
			table, err := pol.Params()
			if err != nil {
				t.Fatal(err)
			}
			fdCheck(t, pol, table, params, st.Grads, loss, rng)
		})
	}
}

// fdCheck compares the analytic gradient grads of set's parameters with
// central differences (step 1e-2) of loss at two random elements of every
// row of its parameter table, and returns how many elements of each
// parameter kind it checked; it leaves params in place.
func fdCheck(t *testing.T, set bindings.Set, table []bindings.ParamInfo, params, grads []float32, loss func() float64, rng *rand.Rand) map[int]int {
	t.Helper()
	const h = 1e-2
	var num, den, worst float64
	kinds := map[int]int{}
	for _, row := range table {
		n := int(row.Ne0 * row.Ne1)
		for k := 0; k < 2; k++ {
			i := int(row.Offset) + rng.IntN(n)
			orig := params[i]
			params[i] = orig + h
			set.SetState(params, nil, nil, 0)
			lp := loss()
			params[i] = orig - h
			set.SetState(params, nil, nil, 0)
			lm := loss()
			params[i] = orig
			fd := (lp - lm) / (2 * h)
			an := float64(grads[i])
			rel := math.Abs(fd-an) / math.Max(math.Max(math.Abs(fd), math.Abs(an)), 1e-2)
			worst = math.Max(worst, rel)
			num += (fd - an) * (fd - an)
			den += fd * fd
			kinds[row.Kind]++
			if rel > 5e-2 {
				t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g (rel %.2g)", row.Name, i-int(row.Offset), an, fd, rel)
			}
		}
	}
	set.SetState(params, nil, nil, 0)
	t.Logf("gradient NMSE over %d elements of %d tensors %.2e, worst element %.2e", 2*len(table), len(table), num/den, worst)
	if !(num/den < 1e-3) || den == 0 {
		t.Errorf("gradient NMSE %.3g against finite differences (Σfd² %.3g)", num/den, den)
	}
	return kinds
}

// ORPO and SimPO log TRL's metric names in train and held-out rows, and a
// reference adapter, which they have no use for, is refused by name.
func TestNoReferenceMetricsAndRefusals(t *testing.T) {
	want := map[string][]string{
		ORPO:  {"loss", "nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"},
		SimPO: {"loss", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"},
	}
	for _, method := range []string{ORPO, SimPO} {
		cfg := fakeRun(t, method)
		cfg.RPOAlpha, cfg.Epochs = 0, 1
		if _, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams))); err != nil {
			t.Fatal(err)
		}
		splits := map[string]int{}
		for _, row := range metricRows(t, cfg.Out) {
			split, _ := row["split"].(string)
			if split != "train" && split != "eval" {
				continue
			}
			splits[split]++
			for _, k := range want[method] {
				if _, ok := row[k]; !ok {
					t.Errorf("%s: %s row without %s: %v", method, split, k, row)
				}
			}
			// the logged log-probs are per-token means (as TRL's), the rewards β or λ times them
			if lp, ok := row["logps/chosen"].(float64); ok && !(lp < 0 && lp > -20) {
				t.Errorf("%s: logps/chosen %g is not a mean token log-prob", method, lp)
			}
		}
		if splits["train"] == 0 || splits["eval"] == 0 {
			t.Errorf("%s: rows %v", method, splits)
		}

		cfg = fakeRun(t, method)
		cfg.RefAdapter = filepath.Join(t.TempDir(), "sft.gguf")
		_, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams)))
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Flag != "ref-adapter" || !strings.Contains(err.Error(), method) {
			t.Errorf("%s with a reference adapter: %v", method, err)
		}
	}
	for _, c := range []struct {
		method, flag string
		set          func(*Config)
	}{
		{ORPO, "orpo-lambda", func(c *Config) { c.ORPOLambda = 0 }},
		{SimPO, "beta", func(c *Config) { c.Beta = 0 }},
		{SimPO, "simpo-gamma", func(c *Config) { c.SimPOGamma = -1 }},
		{DPO, "orpo-lambda", func(c *Config) { c.ORPOLambda = 0.1 }},
		{SFT, "simpo-gamma", func(c *Config) { c.SimPOGamma = 0.5 }},
	} {
		cfg := fakeRun(t, c.method)
		c.set(&cfg)
		var ce *ConfigError
		if err := cfg.Validate(); !errors.As(err, &ce) || ce.Flag != c.flag {
			t.Errorf("%s: %v, want a refusal of --%s", c.method, err, c.flag)
		}
	}
}
