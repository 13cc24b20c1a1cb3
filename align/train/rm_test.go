package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/align-dev/align/align/reward"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/testgate"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/bindings"
)

// The Bradley–Terry loss on hand numbers, and its derivatives against
// central differences.
func TestRewardLoss(t *testing.T) {
	for _, c := range []struct {
		rw, rl, m, coef float64
		loss, drw, drl  float64
	}{
		// log(1+e^-1), ∓σ(-1)
		{1, 0, 0, 0, 0.3132616875, -0.2689414214, 0.2689414214},
		// z = 0.5: log(1+e^-0.5) + 0.1·1², −σ(−0.5) ± 0, + 2·0.1·1
		{1, 0, 0.5, 0.1, 0.4740769842 + 0.1, -0.3775406688 + 0.2, 0.3775406688 + 0.2},
		// a wrong order costs more than log 2
		{-2, 1, 0, 0, 3.0485873516, -0.9525741268, 0.9525741268},
	} {
		l, dw, dl := RewardLoss(c.rw, c.rl, c.m, c.coef)
		if math.Abs(l-c.loss) > 1e-9 || math.Abs(dw-c.drw) > 1e-9 || math.Abs(dl-c.drl) > 1e-9 {
			t.Errorf("RewardLoss(%g, %g, %g, %g) = %.10f, %.10f, %.10f; want %.10f, %.10f, %.10f", c.rw, c.rl, c.m, c.coef, l, dw, dl, c.loss, c.drw, c.drl)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const h = 1e-6
	for i := 0; i < 100; i++ {
		rw, rl, m, coef := rng.NormFloat64()*3, rng.NormFloat64()*3, rng.Float64(), rng.Float64()*0.1
		_, dw, dl := RewardLoss(rw, rl, m, coef)
		lp, _, _ := RewardLoss(rw+h, rl, m, coef)
		lm, _, _ := RewardLoss(rw-h, rl, m, coef)
		fw := (lp - lm) / (2 * h)
		lp, _, _ = RewardLoss(rw, rl+h, m, coef)
		lm, _, _ = RewardLoss(rw, rl-h, m, coef)
		fl := (lp - lm) / (2 * h)
		if math.Abs(fw-dw) > 1e-6 || math.Abs(fl-dl) > 1e-6 {
			t.Fatalf("rw %g rl %g m %g c %g: analytic %g %g, finite differences %g %g", rw, rl, m, coef, dw, dl, fw, fl)
		}
	}
}

func TestPairMargin(t *testing.T) {
	extra := func(k, v string) map[string]json.RawMessage { return map[string]json.RawMessage{k: json.RawMessage(v)} }
	for _, c := range []struct {
		name, source string
		extra        map[string]json.RawMessage
		want         float64
		err          string
	}{
		{"scores", MarginScores, extra("scores", `{"chosen":{"tone":5,"accuracy":5,"helpfulness":4,"safety":5},"rejected":{"tone":3,"accuracy":2,"helpfulness":4,"safety":5}}`), 1.25, ""},
		{"field", MarginField, extra("margin", `0.5`), 0.5, ""},
		{"no scores", MarginScores, nil, 0, `no "scores" field`},
		{"no side", MarginScores, extra("scores", `{"chosen":{"tone":5}}`), 0, `no "rejected" criteria`},
		{"bad scores", MarginScores, extra("scores", `[1,2]`), 0, `"scores" is not`},
		{"no margin", MarginField, nil, 0, `no "margin" field`},
		{"bad margin", MarginField, extra("margin", `"big"`), 0, `not a number`},
	} {
		p := pairs.Pair{ID: "x", Extra: c.extra}
		got, err := pairMargin(&p, c.source)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %g, %v; want %g", c.name, got, err, c.want)
		}
	}
}

// --margin-from and --center-coef are rm settings; a data file without
// scores is refused with its line.
func TestRewardModelSettings(t *testing.T) {
	cfg := fakeRun(t, DPO)
	cfg.MarginFrom = MarginScores
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--margin-from applies to --method rm") {
		t.Errorf("dpo with --margin-from: %v", err)
	}
	cfg.Method, cfg.MarginFrom = RM, "judge"
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--margin-from must be one of scores, margin") {
		t.Errorf("--margin-from judge: %v", err)
	}
	cfg.MarginFrom, cfg.CenterCoef = "", -1
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "--center-coef") {
		t.Errorf("--center-coef -1: %v", err)
	}
	cfg.CenterCoef, cfg.MarginFrom = 0.01, MarginScores
	_, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams)))
	if err == nil || !strings.Contains(err.Error(), `train.jsonl:1: pair "3774641f9f99fe747b3ee63bec606c49": --margin-from scores: the pair has no "scores" field`) {
		t.Errorf("pairs without scores: %v", err)
	}
}

// The margin reaches the loss: with m from the scores, the fake run's
// loss differs from the run without, and each logged loss is finite.
func TestRewardModelMarginFromScores(t *testing.T) {
	ps, _, err := pairs.Load(trainData, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range ps {
		gap := rng.IntN(3)
		ps[i].Extra = map[string]json.RawMessage{"scores": json.RawMessage(
			`{"chosen":{"tone":5,"accuracy":5,"helpfulness":5,"safety":5},"rejected":{"tone":` + string(rune('5'-gap)) + `,"accuracy":5,"helpfulness":5,"safety":5}}`)}
	}
	data := filepath.Join(t.TempDir(), "scored.jsonl")
	if err := pairs.Save(data, ps[:24]); err != nil {
		t.Fatal(err)
	}
	losses := map[string]float64{}
	for _, from := range []string{"", MarginScores} {
		cfg := fakeRun(t, RM)
		cfg.Data, cfg.EvalData, cfg.MarginFrom, cfg.CenterCoef = data, "", from, 0.01
		cfg.EvalSplit = 0.25
		res, err := runWith(context.Background(), cfg, nil, fakeOpener(newFake(fakeParams)))
		if err != nil {
			t.Fatalf("--margin-from %q: %v", from, err)
		}
		losses[from] = res.Before["loss"]
	}
	// the same untrained rewards, a larger margin to beat: a larger loss
	if !(losses[MarginScores] > losses[""]) {
		t.Errorf("held-out loss before training: %g with margins, %g without; want larger with", losses[MarginScores], losses[""])
	}
}

// f32Fixture writes the tiny F32 model (gradient checks).
func f32Fixture(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tiny-f32.gguf")
	if err := bindings.WriteFixture(p, bindings.FixtureParams{Arch: "llama", Type: "f32", Size: "tiny", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	return p
}

// The reward model's composite gradient — forward → head values → Go
// Bradley–Terry loss (margins and centering on) → head cotangents →
// backward — against central differences of the same loss on an F32 base,
// for two elements of every row of the reward set's parameter table (LoRA
// A and B of each adapted projection, heads.weight, heads.bias).
func TestRewardModelGradCheck(t *testing.T) {
	path := f32Fixture(t)
	tr, err := bindings.NewTrainerFromFile(path, bindings.TrainerOptions{Threads: 2, Rank: 2, Alpha: 4, Seed: 3, ExactBackward: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	cfg := DefaultConfig()
	cfg.Method, cfg.Rank, cfg.Alpha, cfg.Targets, cfg.Seed, cfg.CenterCoef = RM, 2, 4, []string{"q", "v", "down"}, 5, 0.05
	rs, err := tr.AddSet(rewardSetOptions(cfg))
	if err != nil {
		t.Fatal(err)
	}
	ps, _, err := pairs.Load(trainData, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	enc, err := NewEncoder(tr.Model(), 64, false)
	if err != nil {
		t.Fatal(err)
	}
	exs, _, _, err := enc.Encode(ps[:3], BetaTable{}, false)
	if err != nil {
		t.Fatal(err)
	}
	exs[0].Margin, exs[1].Margin, exs[2].Margin = 0.5, -0.25, 1
	mb := MicroBatch{Examples: []int{0, 1, 2}}
	obj := rmObjective{center: cfg.CenterCoef}
	b := obj.batch(exs, mb)
	norm := 3.0

	rng := rand.New(rand.NewPCG(13, 14))
	si, _ := rs.Info()
	params := make([]float32, si.NParams)
	for i := range params {
		params[i] = float32(rng.NormFloat64() * 0.05)
	}
	table, err := rs.Params()
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range table { // a head large enough that the rewards differ
		if row.Kind == bindings.ParamHeadWeight || row.Kind == bindings.ParamHeadBias {
			for i := row.Offset; i < row.Offset+row.Ne0*row.Ne1; i++ {
				params[i] = float32(rng.NormFloat64() * 0.5)
			}
		}
	}
	if err := rs.SetState(params, nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	loss := func() float64 {
		out, err := rs.Forward(b, 1)
		if err != nil {
			t.Fatal(err)
		}
		var m Metrics
		if _, _, err := lossOf(obj, exs, mb, out, norm, &m); err != nil {
			t.Fatal(err)
		}
		return m.Loss / norm
	}
	out, err := rs.ForwardGrad(b)
	if err != nil {
		t.Fatal(err)
	}
	var m Metrics
	cot, hc, err := lossOf(obj, exs, mb, out, norm, &m)
	if err != nil {
		t.Fatal(err)
	}
	if cot != nil || len(hc) != 6 {
		t.Fatalf("cotangents: %d token, %d head; want 0 and 6", len(cot), len(hc))
	}
	if err := rs.Backward(cot, hc); err != nil {
		t.Fatal(err)
	}
	st, err := rs.GetState()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("rewards %v", out.Heads)

	kinds := fdCheck(t, rs, table, params, st.Grads, loss, rng)
	for _, k := range []int{bindings.ParamLoRAA, bindings.ParamLoRAB, bindings.ParamHeadWeight, bindings.ParamHeadBias} {
		if kinds[k] == 0 {
			t.Errorf("parameter kind %d was not checked", k)
		}
	}
}

// keepOpen opens the native trainer and keeps it open after the run, so a
// test can look at the trained state.
func keepOpen(keep **bindings.Trainer) opener {
	return func(model string, opt bindings.TrainerOptions) (host, func() error, error) {
		t, err := bindings.NewTrainerFromFile(model, opt)
		*keep = t
		return native{t}, func() error { return nil }, err
	}
}

// A reward-model run exports adapter.gguf and head.gguf; loaded into a
// fresh trainer they give the rewards the trained set gave, and a shared
// trainer gets the reward model as one more set.
func TestRewardModelRoundTrip(t *testing.T) {
	var kept *bindings.Trainer
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = RM, tinyModel, subset(t, trainData, 16), subset(t, evalData, 8), t.TempDir()
	cfg.Epochs, cfg.BatchTokens, cfg.Threads, cfg.LR, cfg.CenterCoef, cfg.MaxSteps = 1, 1024, 2, 1e-2, 0.01, 2
	res, err := runWith(context.Background(), cfg, nil, keepOpen(&kept))
	if kept != nil {
		defer kept.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	evals := 0
	for _, row := range metricRows(t, cfg.Out) {
		for k := range row {
			if strings.Contains(k, "logps") {
				t.Errorf("%s row has %s", row["split"], k)
			}
		}
		if row["split"] == "eval" {
			evals++
			for _, k := range []string{"loss", "rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected"} {
				if _, ok := row[k].(float64); !ok {
					t.Errorf("eval row at step %v has no %s", row["step"], k)
				}
			}
		}
	}
	if evals < 2 {
		t.Errorf("%d eval rows, want before and after", evals)
	}
	if res.Head != filepath.Join(cfg.Out, HeadFile) {
		t.Errorf("result head %q", res.Head)
	}
	for _, f := range []string{"adapter.gguf", HeadFile} {
		if _, err := os.Stat(filepath.Join(cfg.Out, f)); err != nil {
			t.Fatal(err)
		}
	}
	ha, err := bindings.ReadAdapterFile(filepath.Join(cfg.Out, HeadFile))
	if err != nil || ha.Kind != "heads" || len(ha.Heads) != 1 || ha.Heads[0] != (bindings.HeadSpec{Name: RewardHead, Dim: 1}) {
		t.Errorf("head.gguf: %+v, %v", ha, err)
	}
	la, err := bindings.ReadAdapterFile(filepath.Join(cfg.Out, "adapter.gguf"))
	if err != nil || la.Kind != "lora" || la.Rank != cfg.Rank {
		t.Errorf("adapter.gguf: %+v, %v", la, err)
	}
	ps, _, _ := pairs.Load(evalData, pairs.LoadOptions{})
	var prompts [][]pairs.Message
	var responses []string
	for _, p := range ps[:8] {
		pm, cm, rm := p.Messages()
		prompts = append(prompts, pm, pm)
		responses = append(responses, cm[0].Content, rm[0].Content)
	}
	// the trained set: the trainer's only one (no unused policy set)
	if n := kept.Info().NSets; n != 1 {
		t.Errorf("the reward-model run's trainer has %d sets, want 1 (its reward set)", n)
	}
	set := kept.Set(0)
	trained, err := reward.OpenRewardModel(cfg.Out, reward.RewardModelOptions{Trainer: kept, Set: &set})
	if err != nil {
		t.Fatal(err)
	}
	before, err := trained.Score(context.Background(), prompts, responses)
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for i := 0; i < len(before); i += 2 {
		sum += before[i]
	}
	if got, want := sum/8, res.After["rewards/chosen"]; math.Abs(got-want) > 1e-5*math.Max(1, math.Abs(want)) {
		t.Errorf("mean chosen reward %g, held-out evaluation's %g", got, want)
	}

	m, err := reward.OpenRewardModel(cfg.Out, reward.RewardModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	after, err := m.Score(context.Background(), prompts, responses)
	if err != nil {
		t.Fatal(err)
	}
	// on a trainer that already has sets (the PPO layout)
	shared, err := reward.OpenRewardModel(cfg.Out, reward.RewardModelOptions{Trainer: kept})
	if err != nil {
		t.Fatal(err)
	}
	defer shared.Close()
	if shared.Set() != 1 {
		t.Errorf("shared trainer: reward set %d, want 1 (after the run's own set)", shared.Set())
	}
	if m.Set() != 0 {
		t.Errorf("a reward model on its own trainer: set %d, want 0 (its only set)", m.Set())
	}
	again, err := shared.Score(context.Background(), prompts, responses)
	if err != nil {
		t.Fatal(err)
	}
	worst := 0.0
	for i := range before {
		worst = math.Max(worst, math.Max(math.Abs(after[i]-before[i]), math.Abs(again[i]-before[i])))
	}
	t.Logf("rewards %v; largest difference after export and load %.3g", before[:4], worst)
	if worst > 1e-6 {
		t.Errorf("rewards after export and load differ by up to %g", worst)
	}
	if before[0] == before[1] && before[2] == before[3] {
		t.Error("the trained rewards do not tell responses apart")
	}
	// issue 21 item 7: a record's reward is the same scored alone or among
	// the others, bit for bit, in either order
	rev := func(x []string) []string { y := slices.Clone(x); slices.Reverse(y); return y }
	rp := slices.Clone(prompts)
	slices.Reverse(rp)
	reversed, err := m.Score(context.Background(), rp, rev(responses))
	if err != nil {
		t.Fatal(err)
	}
	for i := range responses {
		alone, err := m.Score(context.Background(), prompts[i:i+1], responses[i:i+1])
		if err != nil {
			t.Fatal(err)
		}
		if alone[0] != after[i] || reversed[len(responses)-1-i] != after[i] {
			t.Errorf("response %d: reward %v alone, %v among %d, %v in reverse order", i, alone[0], after[i], len(responses), reversed[len(responses)-1-i])
		}
	}
}

// The reward model learns the shipped pairs: held-out accuracy >= 0.9.
func TestRewardModelLearns(t *testing.T) {
	testgate.Slow(t, "acceptance test (minutes on 2 cores); TestLoopWithFakeTrainer/rm covers the loop")
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = RM, tinyModel, trainData, evalData, t.TempDir()
	cfg.Epochs, cfg.LR, cfg.Threads = 1, 3e-3, 2
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %v", res.Before)
	t.Logf("after  %v (%d steps, %.0f tokens/s)", res.After, res.Steps, res.TokensPerS)
	if acc := res.After["rewards/accuracies"]; acc < 0.9 {
		t.Errorf("held-out accuracy of the reward model = %.3f, want >= 0.9", acc)
	}
	if m := res.After["rewards/margins"]; !(m > 0) {
		t.Errorf("held-out margin = %g, want > 0", m)
	}
}

// An interrupted and resumed reward-model run ends with the adapter and
// head of an uninterrupted one, bit for bit (the checkpoint holds the
// reward set, head included).
func TestRewardModelResume(t *testing.T) {
	data, eval := subset(t, trainData, 12), subset(t, evalData, 4)
	cfgOf := func() Config {
		cfg := DefaultConfig()
		cfg.Method, cfg.Model, cfg.Data, cfg.EvalData, cfg.Out = RM, tinyModel, data, eval, t.TempDir()
		cfg.Epochs, cfg.MaxSteps, cfg.BatchTokens, cfg.SaveEvery, cfg.Threads, cfg.LR, cfg.CenterCoef = 1, 3, 300, 1, 2, 1e-2, 0.01
		return cfg
	}
	ref := cfgOf()
	if _, err := Run(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	cfg := cfgOf()
	ctx, cancel := context.WithCancel(context.Background())
	cfg.OnStep = func(step int) {
		if step == 2 {
			cancel()
		}
	}
	_, err := Run(ctx, cfg, nil)
	cancel()
	if !errors.Is(err, ErrInterrupted) {
		t.Fatalf("interrupted run: err = %v", err)
	}
	if _, err := Run(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true, Threads: 2}}, nil); err != nil {
		t.Fatalf("resume: %v", err)
	}
	for _, f := range []string{"adapter.gguf", HeadFile} {
		want, _ := os.ReadFile(filepath.Join(ref.Out, f))
		got, _ := os.ReadFile(filepath.Join(cfg.Out, f))
		if len(want) == 0 || !bytes.Equal(got, want) {
			t.Errorf("%s of the resumed run differs from the uninterrupted run's", f)
		}
	}
}
