package train

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/align-dev/align/align/encode"
	"github.com/align-dev/align/align/run"
	"github.com/align-dev/align/align/testgate"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/align-dev/align/align/manga"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/bindings"
)

var tinyModel string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "align-train-test-")
	if err != nil {
		panic(err)
	}
	tinyModel = filepath.Join(dir, "tiny-q8_0.gguf")
	if err := bindings.WriteFixture(tinyModel, bindings.FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 1}); err != nil {
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	trainData = "../../testdata/pairs/train.jsonl"
	evalData  = "../../testdata/pairs/eval.jsonl"
)

// subset writes the first n pairs of a data file.
func subset(t *testing.T, path string, n int) string {
	t.Helper()
	ps, _, err := pairs.Load(path, pairs.LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := pairs.Save(out, ps[:min(n, len(ps))]); err != nil {
		t.Fatal(err)
	}
	return out
}

// DPO on the synthetic manga pairs takes held-out accuracy from chance (the
// step-0 policy equals the reference, so every margin is 0) to >= 0.9, and
// the adapter makes the preferred phrasing appear in samples.
func TestDPOLearnsPreferences(t *testing.T) {
	testgate.Slow(t, "acceptance test (about 150 s on 2 cores); TestLoopWithFakeTrainer covers the loop")
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.EvalData = DPO, tinyModel, trainData, evalData
	cfg.Out = t.TempDir()
	cfg.Epochs, cfg.LR, cfg.Rank, cfg.Alpha, cfg.RPOAlpha = 2, 3e-3, 16, 32, 1
	cfg.Targets = []string{"q", "k", "v", "o", "gate", "up", "down"}
	cfg.Threads = 2
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %v", res.Before)
	t.Logf("after  %v (%d steps, %.0f tokens/s)", res.After, res.Steps, res.TokensPerS)
	if res.Before["rewards/margins"] != 0 {
		t.Errorf("step-0 margin %g, want 0 (policy == reference)", res.Before["rewards/margins"])
	}
	if acc := res.After["rewards/accuracies"]; acc < 0.9 {
		t.Errorf("held-out accuracy after DPO = %.3f, want >= 0.9", acc)
	}
	if m := res.After["rewards/margins"]; !(m > 0) {
		t.Errorf("held-out margin after DPO = %g, want > 0", m)
	}

	// count the preferred phrasing in samples, base vs adapter
	evalPairs, _, _ := pairs.Load(evalData, pairs.LoadOptions{})
	m, err := bindings.LoadModel(tinyModel, bindings.ModelOptions{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	l, err := bindings.LoadLoRA(m, res.Adapter)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	count := func(adapters []bindings.LoRAScale) int {
		s, err := bindings.NewSession(m, bindings.SessionOptions{NCtx: 512, Adapters: adapters})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		hits := 0
		for i, p := range evalPairs[:24] {
			text, _ := m.ChatApply("", []bindings.Message{{Role: "user", Content: p.Prompt}}, true)
			toks, _ := m.Tokenize(text, true, true)
			var sb strings.Builder
			if _, err := s.Generate(context.Background(), toks, bindings.SamplerParams{Temperature: 0.7, TopP: 0.95, TopK: 40,
				Seed: uint32(i + 1), MaxTokens: 40}, func(x string) bool { sb.WriteString(x); return true }); err != nil {
				t.Fatal(err)
			}
			for _, obj := range manga.Objectives {
				if manga.HasMarker(obj, sb.String()) {
					hits++
					break
				}
			}
		}
		return hits
	}
	base, tuned := count(nil), count([]bindings.LoRAScale{{LoRA: l, Scale: 1}})
	t.Logf("samples with a preferred phrase: base %d/24, adapter %d/24", base, tuned)
	if tuned < base+8 {
		t.Errorf("adapter produced the preferred phrasing in %d/24 samples, base %d/24", tuned, base)
	}
}

func smallRun(t *testing.T, method, out string) Config {
	cfg := Defaults(method)
	cfg.Model, cfg.Out = tinyModel, out
	cfg.Data, cfg.EvalData = subset(t, trainData, 48), subset(t, evalData, 16)
	cfg.Epochs, cfg.BatchTokens, cfg.GradAccum, cfg.SaveEvery, cfg.EvalEvery, cfg.WarmupSteps = 3, 384, 2, 4, 5, 3
	cfg.Threads = 2
	return cfg
}

// A run interrupted (as by SIGINT: checkpoint at the interruption) or killed
// (the last periodic checkpoint only) and then resumed ends with the same
// adapter, byte for byte, as an uninterrupted run.
func TestResumeIsBitIdentical(t *testing.T) {
	testgate.Slow(t, "acceptance test of the engine's resume; TestFakeResumeIsBitIdentical covers the loop")
	for _, method := range []string{DPO, SFT, ORPO, SimPO, KTO} {
		t.Run(method, func(t *testing.T) {
			ref := smallRun(t, method, t.TempDir())
			if _, err := Run(context.Background(), ref, nil); err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(filepath.Join(ref.Out, "adapter.gguf"))
			for _, kill := range []bool{false, true} {
				cfg := smallRun(t, method, t.TempDir())
				cfg.Data, cfg.EvalData = ref.Data, ref.EvalData
				ctx, cancel := context.WithCancel(context.Background())
				cfg.OnStep = func(step int) {
					if step == 7 {
						cancel()
					}
				}
				_, err := Run(ctx, cfg, nil)
				cancel()
				if !errors.Is(err, ErrInterrupted) {
					t.Fatalf("interrupted run: err = %v", err)
				}
				if kill {
					// as after kill -9: the interruption checkpoint never existed
					os.RemoveAll(filepath.Join(cfg.Out, "checkpoints", "step-00000007"))
				}
				res, err := Run(context.Background(), Config{Common: run.Common{Out: cfg.Out, Resume: true, Threads: 2}}, nil)
				if err != nil {
					t.Fatalf("resume: %v", err)
				}
				got, _ := os.ReadFile(res.Adapter)
				if !bytes.Equal(got, want) || len(want) == 0 {
					t.Errorf("kill=%v: resumed adapter differs from the uninterrupted run", kill)
				}
				// the metrics read as one run: one train row per step
				b, _ := os.ReadFile(filepath.Join(cfg.Out, "metrics.jsonl"))
				if n := strings.Count(string(b), `"split":"train"`); n != res.Steps {
					t.Errorf("kill=%v: %d train rows for %d steps", kill, n, res.Steps)
				}
			}
		})
	}
}

func TestBadData(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	os.WriteFile(bad, []byte(`{"id":"a","prompt":"hi","chosen":"yes","rejected":"no"}
{"id":"b","prompt":"hi","chosen":"yes"
`), 0o644)
	cfg := DefaultConfig()
	cfg.Model, cfg.Data, cfg.Out, cfg.EvalSplit = tinyModel, bad, t.TempDir(), 0
	_, err := Run(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Errorf("malformed line: err = %v, want it to name bad.jsonl:2", err)
	}
	long := filepath.Join(dir, "long.jsonl")
	os.WriteFile(long, []byte(`{"id":"ok","prompt":"hi","chosen":"yes please","rejected":"no thanks"}
{"id":"huge","prompt":"`+strings.Repeat("manga volume ", 400)+`","chosen":"yes","rejected":"no"}
`), 0o644)
	// a prompt over --max-length is cut from the left like any other (issue 7 item 12)
	cfg.Data, cfg.MaxLength, cfg.MaxSteps = long, 64, 1
	res, err := Run(context.Background(), cfg, nil)
	if err != nil || res.Truncation.PromptsCut != 1 || res.TrainPairs != 2 {
		t.Errorf("prompt over --max-length: %+v, %v", res, err)
	}
	cfg.Data, cfg.Out, cfg.SkipInvalid = bad, t.TempDir(), true
	res, err = Run(context.Background(), cfg, nil)
	if err != nil || res.Skipped != 1 || res.TrainPairs != 1 {
		t.Errorf("skip-invalid: %+v, %v", res, err)
	}
	cfg.Out = t.TempDir()
	cfg.Method = "ppo"
	var ce *ConfigError
	if _, err := Run(context.Background(), cfg, nil); !errors.As(err, &ce) || ce.Flag != "method" {
		t.Errorf("unknown method: %v", err)
	}
}

// An encoding error names the file and line of its pair.
func TestEncodeErrorNamesLine(t *testing.T) {
	data := filepath.Join(t.TempDir(), "p.jsonl")
	os.WriteFile(data, []byte(`{"id":"a","prompt":"hi","chosen":"yes","rejected":"no"}

{"id":"b","prompt":"hi","chosen":"yes","rejected":"no"}
`), 0o644)
	err := positioned("p.jsonl", data, &encode.PairError{ID: "b", Err: errors.New("boom")})
	if err == nil || !strings.HasPrefix(err.Error(), `p.jsonl:3: pair "b": boom`) {
		t.Errorf("err = %v", err)
	}
}

// --max-length keeps the whole response when the prompt can give way.
func TestTruncationKeepsResponse(t *testing.T) {
	m, err := bindings.LoadModel(tinyModel, bindings.ModelOptions{VocabOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	enc, _ := NewEncoder(m, 40, false)
	ps := []pairs.Pair{{ID: "x", Prompt: strings.Repeat("Is the Naruto manga finished? ", 3), Chosen: "Happy to help! Naruto has 72 volumes.", Rejected: "No."}}
	exs, tr, _, err := enc.Encode(ps, BetaTable{Table: DefaultBetas}, false)
	if err != nil {
		t.Fatal(err)
	}
	full, _, _, _ := (&Encoder{&encode.Encoder{Format: enc.Format, MaxLength: 1 << 20}}).Encode(ps, BetaTable{}, false)
	ex := exs[0]
	if tr.PromptsCut != 1 || tr.ResponsesCut != 0 {
		t.Errorf("truncation %+v", tr)
	}
	if len(ex.Prompt)+len(ex.Chosen) > 40 || !slices.Equal(ex.Chosen, full[0].Chosen) {
		t.Errorf("response changed: %v vs %v", ex.Chosen, full[0].Chosen)
	}
	if ex.Prompt[0] != full[0].Prompt[0] {
		t.Errorf("BOS dropped")
	}
}

// Held-out pairs whose preference is the reverse of the training pairs get
// worse as training goes on: early stopping ends the run after --patience
// evaluations without a better margin and exports the best adapter.
func TestEarlyStopping(t *testing.T) {
	ps, _, _ := pairs.Load(trainData, pairs.LoadOptions{})
	train, held := ps[:48], ps[48:64]
	for i := range held {
		held[i].Chosen, held[i].Rejected = held[i].Rejected, held[i].Chosen
	}
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Out = DPO, tinyModel, t.TempDir()
	cfg.Data, cfg.EvalData = filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	pairs.Save(cfg.Data, train)
	pairs.Save(cfg.EvalData, held)
	cfg.Epochs, cfg.BatchTokens, cfg.EvalEvery, cfg.Patience, cfg.WarmupSteps, cfg.Threads = 4, 384, 1, 2, 0, 2
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.StoppedEarly || res.Steps != 3 {
		t.Fatalf("stopped early %v after %d steps, want true after 3 (best at step 1, patience 2)", res.StoppedEarly, res.Steps)
	}
	// the exported adapter is the step-1 one: its margin is the step-1 evaluation's
	b, _ := os.ReadFile(filepath.Join(cfg.Out, "metrics.jsonl"))
	var step1 float64
	for _, line := range strings.Split(string(b), "\n") {
		var row map[string]any
		if json.Unmarshal([]byte(line), &row) == nil && row["split"] == "eval" && row["step"] == 1.0 {
			step1 = row["rewards/margins"].(float64)
		}
	}
	if got := res.After["rewards/margins"]; step1 == 0 || math.Abs(got-step1) > 1e-9*math.Max(1, math.Abs(step1)) {
		t.Errorf("exported adapter's held-out margin %g, step-1 evaluation %g", got, step1)
	}
}

// Every method trains end to end through the driver (the losses are checked
// in closed form in loss_test.go); a .zst data file reads like a plain one.
func TestMethodsRun(t *testing.T) {
	ps, _, _ := pairs.Load(trainData, pairs.LoadOptions{})
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl.zst")
	if err := pairs.Save(data, ps[:24]); err != nil {
		t.Fatal(err)
	}
	for _, method := range Methods {
		cfg := Defaults(method)
		cfg.Model, cfg.Data, cfg.Out = tinyModel, data, t.TempDir()
		cfg.Epochs, cfg.EvalSplit, cfg.BatchTokens, cfg.Threads = 1, 0.25, 512, 2
		res, err := Run(context.Background(), cfg, nil)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := os.ReadFile(filepath.Join(cfg.Out, "metrics.jsonl"))
		rows := strings.Split(strings.TrimSpace(string(b)), "\n")
		var train, epochs, evals int
		for _, line := range rows {
			var row map[string]any
			if err := json.Unmarshal([]byte(line), &row); err != nil {
				t.Fatalf("%s: bad metrics row %q", method, line)
			}
			switch row["split"] {
			case "train":
				train++
				if _, ok := row["loss"]; !ok {
					t.Errorf("%s: train row without loss: %s", method, line)
				}
			case "train_epoch":
				epochs++
			case "eval":
				evals++
				if _, ok := row["rewards/margins"]; !ok && method != SFT {
					t.Errorf("%s: eval row without TRL metrics: %s", method, line)
				}
			}
		}
		if train != res.Steps || epochs != 1 || evals < 2 {
			t.Errorf("%s: %d train rows for %d steps, %d epoch rows, %d eval rows", method, train, res.Steps, epochs, evals)
		}
		if _, err := os.Stat(res.Adapter); err != nil {
			t.Errorf("%s: no adapter: %v", method, err)
		}
	}
}

// A torn or corrupt newest checkpoint is skipped for the one before it; a
// checkpoint without its DONE marker is never read.
func mustTargets(t *testing.T, ts []string) uint32 {
	bits, err := targetBits(ts)
	if err != nil {
		t.Fatal(err)
	}
	return bits
}

func TestCorruptCheckpointFallsBack(t *testing.T) {
	cfg := smallRun(t, SFT, t.TempDir())
	cfg.SaveEvery = 2
	ctx, cancel := context.WithCancel(context.Background())
	cfg.OnStep = func(step int) {
		if step == 5 {
			cancel()
		}
	}
	if _, err := Run(ctx, cfg, nil); !errors.Is(err, ErrInterrupted) {
		t.Fatalf("err = %v", err)
	}
	cancel()
	dir := filepath.Join(cfg.Out, "checkpoints")
	names := listCheckpoints(dir)
	if len(names) != 2 || names[1] != "step-00000005" {
		t.Fatalf("checkpoints %v, want the two newest (4 and 5)", names)
	}
	// flip a byte in the newest state: the CRC rejects it
	p := filepath.Join(dir, names[1], "state.bin")
	b, _ := os.ReadFile(p)
	b[len(b)/2] ^= 0xff
	os.WriteFile(p, b, 0o644)
	tr, err := bindings.NewTrainerFromFile(tinyModel, bindings.TrainerOptions{Threads: 2, Rank: cfg.Rank, Alpha: float32(cfg.Alpha), Targets: mustTargets(t, cfg.Targets), Seed: cfg.Seed})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	st, note, err := loadCheckpoint(cfg.Out, asTrainer(tr))
	if err != nil || st.step != 4 {
		t.Errorf("loaded step %d (%v), want the previous checkpoint, step 4", st.step, err)
	}
	if !strings.Contains(note, "step-00000004") || !strings.Contains(note, "checksum") {
		t.Errorf("fallback note %q, want it to name the checkpoint used and why the newest was skipped", note)
	}
	// without DONE the directory does not count
	os.Remove(filepath.Join(dir, "step-00000004", "DONE"))
	if _, _, err := loadCheckpoint(cfg.Out, asTrainer(tr)); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("only a corrupt checkpoint left: err = %v, want a checksum error", err)
	}
}

// --eval-split holds out pairs even from a file that a data tool already
// split with the same seed (the shipped train.jsonl).
func TestEvalSplitOfSplitData(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Method, cfg.Model, cfg.Data, cfg.Out = SFT, tinyModel, subset(t, trainData, 60), t.TempDir()
	cfg.EvalSplit, cfg.MaxSteps, cfg.Threads = 0.2, 1, 2
	res, err := Run(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.EvalPairs < 4 || res.EvalPairs > 24 {
		t.Errorf("--eval-split 0.2 of 60 pairs held out %d", res.EvalPairs)
	}
}
