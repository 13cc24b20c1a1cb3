package train

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/bindings"
)

// thumbsData writes unpaired examples made from a pair file so that no
// prompt has both kinds: the chosen response of the first half of the
// pairs (label true), the rejected one of the second half (label false).
func thumbsData(t testing.TB, path string, n int) string {
	t.Helper()
	ps, _, err := pairs.Load(path, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		ps = ps[:min(n, len(ps))]
	}
	var us []pairs.Unpaired
	for i := range ps {
		d, u := ps[i].Unpaired()
		if i < len(ps)/2 {
			us = append(us, d)
		} else {
			us = append(us, u)
		}
	}
	out := filepath.Join(t.TempDir(), "thumbs.jsonl")
	if err := pairs.SaveUnpaired(out, us); err != nil {
		t.Fatal(err)
	}
	return out
}

// ktoRows are a run's metrics.jsonl rows of one split.
func ktoRows(t *testing.T, out, split string) []map[string]any {
	var rows []map[string]any
	for _, row := range metricRows(t, out) {
		if row["split"] == split {
			rows = append(rows, row)
		}
	}
	return rows
}

// KTO trains on unpaired examples with held-out pairs: train rows carry
// TRL's KTO names, held-out rows rewards/accuracies and rewards/margins
// per pair; the imbalance note fires for 3:1 data and names a weight.
func TestKTORunsOnUnpairedData(t *testing.T) {
	data := thumbsData(t, trainData, 32)
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = KTO, tinyModel, data, subset(t, evalData, 8), t.TempDir()
	cfg.Epochs, cfg.BatchTokens, cfg.Threads = 1, 512, 2
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.TrainPairs != 32 || res.EvalPairs != 8 {
		t.Errorf("%d train examples, %d held-out pairs; want 32 and 8", res.TrainPairs, res.EvalPairs)
	}
	for _, row := range ktoRows(t, cfg.Out, "train") {
		for _, k := range []string{"loss", "kl", "rewards/chosen_sum", "logps/chosen_sum", "count/chosen", "rewards/rejected_sum", "logps/rejected_sum", "count/rejected"} {
			if _, ok := row[k]; !ok {
				t.Fatalf("train row without %s: %v", k, row)
			}
		}
		if kl := row["kl"].(float64); kl < 0 {
			t.Errorf("kl %g < 0: z0 is clamped", kl)
		}
	}
	evals := ktoRows(t, cfg.Out, "eval")
	if len(evals) < 2 {
		t.Fatalf("%d eval rows", len(evals))
	}
	for _, row := range evals {
		for _, k := range []string{"loss", "kl", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "count/chosen"} {
			if _, ok := row[k]; !ok {
				t.Errorf("eval row without %s: %v", k, row)
			}
		}
	}
	// the reference pass packs as the evaluation does: at step 0 the policy
	// scores exactly the reference's log-probs
	if res.Before["rewards/margins"] != 0 || res.Before["rewards/accuracies"] != 0 || res.Before["kl"] != 0 {
		t.Errorf("step-0 held-out margin %g, accuracy %g, kl %g; want 0 (policy == reference)", res.Before["rewards/margins"], res.Before["rewards/accuracies"], res.Before["kl"])
	}

	// 3 desirable to 1 undesirable: the paper's guidance is printed
	ps, _, _ := pairs.Load(trainData, pairs.LoadOptions{})
	var us []pairs.Unpaired
	for i := range ps[:16] {
		d, u := ps[i].Unpaired()
		if i%4 == 3 {
			us = append(us, u)
		} else {
			us = append(us, d)
		}
	}
	imb := filepath.Join(t.TempDir(), "imbalanced.jsonl")
	pairs.SaveUnpaired(imb, us)
	var notes []string
	cfg.Data, cfg.EvalData, cfg.Out, cfg.MaxSteps = imb, "", t.TempDir(), 1
	if _, err := Run(context.Background(), cfg, func(e Event) {
		if e.Note != "" {
			notes = append(notes, e.Note)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(notes, "\n"); !strings.Contains(s, "outside the paper's [1, 4/3]") || !strings.Contains(s, "suggested: --undesirable-weight") {
		t.Errorf("notes %q: want the weight guidance", s)
	}
}

// A bad label names its file and line; DPO refuses unpaired data, naming
// the method that reads it.
func TestKTOBadData(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.jsonl")
	os.WriteFile(bad, []byte(`{"id":"a","prompt":"hi","completion":"hello there","label":true}
{"id":"b","prompt":"hi","completion":"go away","label":"no"}
`), 0o644)
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.Out, cfg.EvalSplit = KTO, tinyModel, bad, t.TempDir(), 0
	if _, err := Run(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2: field \"label\"") {
		t.Errorf("bad label: %v, want an error naming bad.jsonl:2 and the label", err)
	}
	cfg.Method, cfg.Out = DPO, t.TempDir()
	if _, err := Run(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "bad.jsonl:1: an unpaired example") || !strings.Contains(err.Error(), "--method kto") {
		t.Errorf("dpo on unpaired data: %v", err)
	}
	cfg.Method, cfg.Out, cfg.DesirableWeight = KTO, t.TempDir(), -1
	var ce *ConfigError
	if _, err := Run(context.Background(), cfg, nil); !errors.As(err, &ce) || ce.Flag != "desirable-weight" {
		t.Errorf("--desirable-weight -1: %v", err)
	}
}

// Each example's mismatched completion comes from another prompt.
func TestAssignKL(t *testing.T) {
	exs := []Example{
		{Prompt: []int32{1, 5}, Chosen: []int32{7}},
		{Prompt: []int32{1, 5}, Chosen: []int32{8}},
		{Prompt: []int32{1, 6}, Chosen: []int32{9, 9, 9, 9}},
		{Prompt: []int32{1, 6}, Chosen: []int32{10}},
	}
	assignKL(exs, 4)
	want := [][]int32{{10}, {10}, {8}, {8}}
	for k := range exs {
		if !slices.Equal(exs[k].KL, want[k]) {
			t.Errorf("example %d: KL %v, want %v", k, exs[k].KL, want[k])
		}
	}
	exs[1].Chosen = []int32{9, 9, 9, 9}
	assignKL(exs, 4)
	if len(exs[2].KL) != 2 { // cut to the room left by the prompt
		t.Errorf("KL %v not cut to max-length", exs[2].KL)
	}
}

// KTO's composite gradient on an F32 base — forward → z0 from the
// mismatched sequences (prepare, then held: it is detached) → the Go loss
// (both labels, both weights) → per-token cotangents → backward — against
// central differences of the same loss, on two elements of every tensor.
func TestKTOGradCheck(t *testing.T) {
	path := f32Fixture(t)
	tr, err := bindings.NewTrainerFromFile(path, bindings.TrainerOptions{Threads: 2, Rank: 2, Alpha: 4,
		Targets: bindings.TargetQ | bindings.TargetV | bindings.TargetDown, Seed: 3, ExactBackward: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	set := tr.Set(0)
	ps, _, err := pairs.Load(trainData, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(tr.Model(), 48, false)
	if err != nil {
		t.Fatal(err)
	}
	pex, _, _, err := enc.Encode(ps[:2], BetaTable{Override: 0.5}, false)
	if err != nil {
		t.Fatal(err)
	}
	exs := unpairedExamples(pex) // 2 desirable, 2 undesirable
	assignKL(exs, 48)
	mb := MicroBatch{Examples: []int{0, 1, 2, 3}}
	// the reference: the base; then random adapters so that the log-ratios
	// (and z0) are not 0
	rcfg := DefaultConfig()
	rcfg.Out, rcfg.BatchTokens = t.TempDir(), 4096
	if err := referenceLogps(context.Background(), func(b *bindings.Batch) (Outputs, error) { return set.Forward(b, 0) }, rcfg, nil, exs); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(13, 14))
	si, _ := set.Info()
	params := make([]float32, si.NParams)
	for i := range params {
		params[i] = float32(rng.NormFloat64() * 0.3)
	}
	if err := set.SetState(params, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	obj := &ktoObjective{lay: LayoutUnpaired, wD: 1.3, wU: 0.7}
	if err := obj.prepare(set, exs, []MicroBatch{mb}); err != nil {
		t.Fatal(err)
	}
	if obj.z0 != 0 {
		t.Fatalf("z0 %g at random adapters against the base; the check below wants the unclamped branch", obj.z0)
	}
	// shift the mismatched sequences' reference log-probs so that the KL
	// estimate is +0.8: z0 on its unclamped branch (detached either way)
	var seqs []run.Seq
	for _, ex := range exs {
		seqs = append(seqs, run.Seq{Prompt: ex.Prompt, Response: ex.KL})
	}
	kout, err := set.Forward(run.Layout(seqs, false), 1)
	if err != nil {
		t.Fatal(err)
	}
	var raw float64
	for i := range exs {
		raw += (kout.Sums[i] - exs[i].RefKL) / float64(len(exs))
	}
	for i := range exs {
		exs[i].RefKL += raw - 0.8
	}
	if err := obj.prepare(set, exs, []MicroBatch{mb}); err != nil {
		t.Fatal(err)
	}
	if !(obj.z0 > 0) {
		t.Fatalf("z0 %g, want > 0", obj.z0)
	}
	t.Logf("z0 %.4f", obj.z0)
	b := BuildBatch(exs, mb, LayoutUnpaired)
	norm := 4.0
	loss := func() float64 {
		out, err := set.Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		var m Metrics
		if _, err := obj.loss(exs, mb, out, norm, &m); err != nil {
			t.Fatal(err)
		}
		return m.KTO.Loss / norm
	}
	out, err := set.ForwardGrad(b)
	if err != nil {
		t.Fatal(err)
	}
	var m Metrics
	cot, err := obj.loss(exs, mb, out, norm, &m)
	if err != nil {
		t.Fatal(err)
	}
	if err := set.Backward(cot, nil); err != nil {
		t.Fatal(err)
	}
	st, err := set.GetState()
	if err != nil {
		t.Fatal(err)
	}
	table, err := set.Params()
	if err != nil {
		t.Fatal(err)
	}
	const h = 1e-2
	var num, den, worst float64
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
			an := float64(st.Grads[i])
			rel := math.Abs(fd-an) / math.Max(math.Max(math.Abs(fd), math.Abs(an)), 1e-3)
			worst = math.Max(worst, rel)
			num += (fd - an) * (fd - an)
			den += fd * fd
			if rel > 5e-2 {
				t.Errorf("%s[%d]: analytic %.6g, finite difference %.6g (rel %.2g)", row.Name, i-int(row.Offset), an, fd, rel)
			}
		}
	}
	t.Logf("gradient NMSE over %d elements of %d tensors %.2e, worst %.2e", 2*len(table), len(table), num/den, worst)
	if !(num/den < 1e-3) || den == 0 {
		t.Errorf("gradient NMSE %.3g (Σfd² %.3g) against finite differences", num/den, den)
	}
	// the loss is the objective package's over the forward's sums
	var want float64
	for k, i := range mb.Examples {
		l, _ := objective.KTOExample(0.5, obj.z0, out.Sums[k], exs[i].RefW, !exs[i].Undesirable, 1.3, 0.7)
		want += l.Loss
	}
	if !near(m.KTO.Loss, want, 1e-9) {
		t.Errorf("loss %g, want %g", m.KTO.Loss, want)
	}
}

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol*math.Max(1, math.Abs(b)) }
