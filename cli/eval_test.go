package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/align-dev/align/align/testgate"
	"github.com/align-dev/align/bindings"
)

// runWith runs the app and returns exit code, stdout and stderr.
func runWith(t *testing.T, ctx context.Context, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code := Run(ctx, append([]string{"align"}, args...), env)
	return code, out.String(), errb.String()
}

// tinyAdapter writes a rank-4 adapter on the tiny fixture's q and output
// projections with weights of standard deviation sd.
func tinyAdapter(t *testing.T, path string, sd float64) {
	t.Helper()
	m, err := bindings.LoadModel(tinyModel, bindings.ModelOptions{})
	if err != nil {
		t.Fatal(err)
	}
	info, err := m.Info()
	m.Close()
	if err != nil {
		t.Fatal(err)
	}
	const rank = 4
	r := rand.New(rand.NewPCG(1, 1))
	var ts []bindings.AdapterTensor
	for l := 0; l < info.NLayer; l++ {
		for _, p := range []string{"attn_q", "attn_output"} {
			n := info.NEmbd
			a, b := make([]float32, n*rank), make([]float32, rank*n)
			for i := range a {
				a[i] = float32(r.NormFloat64() * sd)
			}
			for i := range b {
				b[i] = float32(r.NormFloat64() * sd)
			}
			ts = append(ts, bindings.AdapterTensor{BaseName: "blk." + strconv.Itoa(l) + "." + p + ".weight", NIn: n, NOut: n, Rank: rank, A: a, B: b})
		}
	}
	if err := bindings.WriteAdapter(path, info.Arch, rank, ts); err != nil {
		t.Fatal(err)
	}
}

func TestEvalEndToEndTinyRulesResume(t *testing.T) {
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter.gguf")
	tinyAdapter(t, ad, 0.3)
	out := filepath.Join(dir, "eval")
	all, err := os.ReadFile("../testdata/pairs/eval.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	pairsFile := filepath.Join(dir, "pairs.jsonl")
	os.WriteFile(pairsFile, bytes.Join(bytes.SplitAfter(all, []byte("\n"))[:20], nil), 0o644)
	args := []string{"eval", "--model", tinyModel, "--lora", ad, "--prompts", "../testdata/prompts/sample.jsonl",
		"--judge", "rules:../testdata/catalog.json", "--out", out, "--samples", "2", "--seed", "3", "-n", "12",
		"--pairs", pairsFile, "--bootstrap", "200", "--threads", "1"}
	code, stdout, stderr := runWith(t, context.Background(), args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"off-brand tone", "combined issue rate", "win rate vs base", "KL to base", "pair accuracy"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, stdout)
		}
	}
	want, err := os.ReadFile(filepath.Join(out, "eval.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Variants []struct {
			Name              string                        `json:"name"`
			Responses         int                           `json:"responses"`
			Categories        map[string]map[string]float64 `json:"-"`
			CombinedIssueRate *float64                      `json:"combined_issue_rate"`
			WinRate           *float64                      `json:"win_rate"`
			MeanLogpBase      float64                       `json:"mean_logp_base"`
			KLToBase          float64                       `json:"kl_to_base"`
			ScoredTokens      int                           `json:"scored_tokens"`
		} `json:"variants"`
	}
	if err := json.Unmarshal(want, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Variants) != 2 || doc.Variants[0].Responses != 12 || doc.Variants[1].Responses != 12 {
		t.Fatalf("variants %+v", doc.Variants)
	}
	b, a := doc.Variants[0], doc.Variants[1]
	if b.CombinedIssueRate == nil || a.WinRate == nil || b.WinRate != nil {
		t.Errorf("combined %v, win rates base %v adapter %v", b.CombinedIssueRate, b.WinRate, a.WinRate)
	}
	if b.ScoredTokens == 0 || b.MeanLogpBase >= 0 || b.KLToBase != 0 || a.KLToBase <= 0 {
		t.Errorf("fluency: base logp %g over %d tokens, KL base %g adapter %g", b.MeanLogpBase, b.ScoredTokens, b.KLToBase, a.KLToBase)
	}
	lines := func() int {
		bb, _ := os.ReadFile(filepath.Join(out, "responses.jsonl"))
		return bytes.Count(bb, []byte("\n"))
	}
	if n := lines(); n != 24 {
		t.Errorf("responses.jsonl has %d lines, want 24", n)
	}

	// a killed run: keep the first 9 responses and a torn tenth, drop the
	// comparisons and the result; the rerun must give the same eval.json
	rb, _ := os.ReadFile(filepath.Join(out, "responses.jsonl"))
	ls := bytes.SplitAfter(rb, []byte("\n"))
	torn := append(bytes.Join(ls[:9], nil), ls[9][:len(ls[9])/2]...)
	os.WriteFile(filepath.Join(out, "responses.jsonl"), torn, 0o644)
	os.Remove(filepath.Join(out, "comparisons.jsonl"))
	os.Remove(filepath.Join(out, "eval.json"))
	code, _, stderr = runWith(t, context.Background(), args...)
	if code != 0 {
		t.Fatalf("rerun exit %d: %s", code, stderr)
	}
	got, _ := os.ReadFile(filepath.Join(out, "eval.json"))
	if !bytes.Equal(got, want) {
		t.Errorf("rerun eval.json differs:\n%s\nwant\n%s", got, want)
	}
	if n := lines(); n != 24 {
		t.Errorf("after rerun responses.jsonl has %d lines, want 24", n)
	}

	// cancelled at once: exit 4 (resumable), nothing lost
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out2 := filepath.Join(dir, "eval2")
	a2 := append([]string(nil), args...)
	for i := range a2 {
		if a2[i] == out {
			a2[i] = out2
		}
	}
	if code, _, stderr := runWith(t, ctx, a2...); code != ExitResumable {
		t.Errorf("cancelled eval: exit %d, want %d: %s", code, ExitResumable, stderr)
	}
}

func TestEvalUsage(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	os.WriteFile(prompts, []byte("{\"prompt\":\"hi\"}\nnot json\n"), 0o644)
	base := []string{"eval", "--model", tinyModel, "--judge", "rules:../testdata/catalog.json", "--out", filepath.Join(dir, "o")}
	tests := []struct {
		args []string
		code int
		want string
	}{
		{append(base, "--prompts", prompts, "--samples", "0"), ExitUsage, "--samples 0"},
		{append(base, "--prompts", filepath.Join(dir, "missing.jsonl")), ExitUsage, "--prompts"},
		{append(base, "--prompts", prompts, "--lora", filepath.Join(dir, "nope.gguf")), ExitUsage, "--lora"},
		{append(base, "--prompts", prompts, "--seed", "-1"), ExitUsage, "--seed -1"},
		{append(base, "--prompts", prompts, "--beta-table", prompts), ExitUsage, "--beta-table"},
		{append(base, "--prompts", prompts), ExitError, "p.jsonl:2:"},
	}
	for _, tt := range tests {
		code, _, stderr := runWith(t, context.Background(), tt.args...)
		if code != tt.code || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", tt.args[len(tt.args)-2:], code, stderr, tt.code, tt.want)
		}
		if strings.Count(strings.TrimSpace(stderr), "align: error:") != 1 {
			t.Errorf("want one error line, got %q", stderr)
		}
	}
}

// storyPairs writes n synthetic preference pairs for a TinyStories model:
// a cheerful continuation chosen over a sad one.
func storyPairs(t *testing.T, path string, n int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 9))
	names := []string{"Lily", "Tom", "Ben", "Sue", "Max", "Mia", "Tim", "Anna", "Sam", "Lucy"}
	things := []string{"a red ball", "a little dog", "a big tree", "a blue kite", "a small cat", "a toy car", "a pretty flower", "a shiny stone"}
	happy := []string{"was very happy. She smiled and played all day with her friends.", "laughed and danced in the sun. Everyone was glad and had fun.",
		"felt so happy. They hugged and played together and it was a great day.", "smiled big. The sun was warm and they had a fun day in the park."}
	sad := []string{"was very sad. She cried and sat alone all day.", "felt bad and cried. Nobody wanted to play and it was a sad day.",
		"was scared and cried. The day was dark and nobody came.", "cried and cried. She lost her toy and was sad and alone."}
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		nm, th := names[r.IntN(len(names))], things[r.IntN(len(things))]
		row := map[string]string{"id": fmt.Sprintf("s%d-%d", seed, i), "objective": "tone",
			"prompt": fmt.Sprintf("Once upon a time, there was a child named %s. %s found %s. %s", nm, nm, th, nm),
			"chosen": " " + happy[r.IntN(len(happy))], "rejected": " " + sad[r.IntN(len(sad))]}
		line, _ := json.Marshal(row)
		b.Write(append(line, '\n'))
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestEvalSeparatesDegenerateAdapter trains a sensible adapter and one
// trained far too hard (high constant learning rate, no clipping) on a
// real pretrained story model: both reach the same held-out pair accuracy
// and similar margins, but the over-trained adapter's text is far less
// likely under the base and drifts far more (KL).
func TestEvalSeparatesDegenerateAdapter(t *testing.T) {
	model := testgate.SharedModel(t, "stories260K.gguf")
	testgate.Slow(t, "trains two adapters (about a minute)")
	dir := t.TempDir()
	train, held := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "held.jsonl")
	storyPairs(t, train, 80, 1)
	storyPairs(t, held, 20, 2)
	common := []string{"train", "--method", "dpo", "--model", model, "--data", train, "--eval-data", held, "--beta", "0.1", "--batch-tokens", "256", "--threads", "2"}
	// the good adapter: a gentle one (rank 8, scale 2, attention only; not
	// train's defaults, rank 16 alpha 32 on all seven, which drift further)
	good := filepath.Join(dir, "good")
	if code, _, stderr := runWith(t, context.Background(), append(common, "--out", good, "--epochs", "1", "--lr", "1e-3", "--lora-rank", "8", "--lora-alpha", "16",
		"--lora-targets", "q,k,v,o", "--rpo-alpha", "1")...); code != 0 {
		t.Fatalf("train good: %d %s", code, stderr)
	}
	bad := filepath.Join(dir, "bad")
	if code, _, stderr := runWith(t, context.Background(), append(common, "--out", bad, "--epochs", "30", "--max-steps", "120", "--lr", "3e-2",
		"--lora-rank", "16", "--lora-alpha", "64", "--lora-targets", "q,k,v,o,gate,up,down", "--max-grad-norm", "0", "--warmup-steps", "0", "--schedule", "constant")...); code != 0 {
		t.Fatalf("train bad: %d %s", code, stderr)
	}
	prompts := filepath.Join(dir, "prompts.jsonl")
	os.WriteFile(prompts, []byte(`{"prompt":"Once upon a time, there was a child named Tim. Tim found a red ball. Tim"}
{"prompt":"Once upon a time, there was a child named Mia. Mia found a little dog. Mia"}
{"prompt":"Once upon a time, there was a child named Sam. Sam found a big tree. Sam"}
{"prompt":"Once upon a time, there was a child named Lucy. Lucy found a blue kite. Lucy"}
`), 0o644)
	out := filepath.Join(dir, "eval")
	code, stdout, stderr := runWith(t, context.Background(), "eval", "--model", model, "--lora", filepath.Join(good, "adapter.gguf"), "--lora", filepath.Join(bad, "adapter.gguf"),
		"--prompts", prompts, "--judge", "rules:../testdata/catalog.json", "--out", out, "--samples", "2", "-n", "32", "--pairs", held, "--bootstrap", "200", "--json")
	if code != 0 {
		t.Fatalf("eval: %d %s", code, stderr)
	}
	var res struct {
		Variants []struct {
			Name         string  `json:"name"`
			MeanLogpBase float64 `json:"mean_logp_base"`
			KLToBase     float64 `json:"kl_to_base"`
			Preference   struct {
				Overall struct {
					Accuracy float64 `json:"accuracy"`
					Margin   float64 `json:"margin"`
				} `json:"overall"`
			} `json:"preference"`
		} `json:"variants"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil || len(res.Variants) != 3 {
		t.Fatalf("eval --json: %v\n%s", err, stdout)
	}
	b, g, d := res.Variants[0], res.Variants[1], res.Variants[2]
	t.Logf("mean logp under base: base %.3f, good %.3f, over-trained %.3f; KL good %.3f, over-trained %.3f; pair accuracy good %.2f (margin %.2f), over-trained %.2f (margin %.2f)",
		b.MeanLogpBase, g.MeanLogpBase, d.MeanLogpBase, g.KLToBase, d.KLToBase, g.Preference.Overall.Accuracy, g.Preference.Overall.Margin, d.Preference.Overall.Accuracy, d.Preference.Overall.Margin)
	// the preference metrics do not tell them apart...
	if g.Preference.Overall.Accuracy < 0.9 || d.Preference.Overall.Accuracy < 0.9 {
		t.Errorf("held-out pair accuracy good %.2f, over-trained %.2f: want both trained (≥ 0.9)", g.Preference.Overall.Accuracy, d.Preference.Overall.Accuracy)
	}
	// ...fluency and drift do
	if !(d.MeanLogpBase < g.MeanLogpBase-2) {
		t.Errorf("over-trained adapter's mean logp %.3f is not 2 nats below the good one's %.3f", d.MeanLogpBase, g.MeanLogpBase)
	}
	if !(d.KLToBase > 3*g.KLToBase) {
		t.Errorf("over-trained KL %.3f is not 3× the good adapter's %.3f", d.KLToBase, g.KLToBase)
	}
	if !(g.MeanLogpBase > b.MeanLogpBase-1.5) {
		t.Errorf("good adapter's mean logp %.3f fell more than 1.5 nats below the base's %.3f", g.MeanLogpBase, b.MeanLogpBase)
	}
}

func TestEvalTwoJudges(t *testing.T) {
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	os.WriteFile(prompts, []byte("{\"prompt\":\"Who wrote Naruto?\"}\n{\"prompt\":\"This is ridiculous, I asked three times already.\"}\n"), 0o644)
	ad := filepath.Join(dir, "adapter.gguf")
	tinyAdapter(t, ad, 0.3)
	j := "rules:../testdata/catalog.json"
	code, stdout, stderr := runWith(t, context.Background(), "eval", "--model", tinyModel, "--lora", ad, "--prompts", prompts,
		"--judge", j+","+j, "--out", filepath.Join(dir, "o"), "--samples", "1", "-n", "8", "--bootstrap", "50", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var res struct {
		Variants    []json.RawMessage `json:"variants"`
		OtherJudges []struct {
			Judge    string            `json:"judge"`
			Variants []json.RawMessage `json:"variants"`
		} `json:"other_judges"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if len(res.OtherJudges) != 1 || len(res.OtherJudges[0].Variants) != 2 {
		t.Fatalf("other judges: %s", stdout)
	}
	// the same judge twice: the same rows (compared as values: the
	// indentation differs with depth)
	for i := range res.Variants {
		var a, b any
		json.Unmarshal(res.Variants[i], &a)
		json.Unmarshal(res.OtherJudges[0].Variants[i], &b)
		if a == nil || !reflect.DeepEqual(a, b) {
			t.Errorf("variant %d differs between two identical judges:\n%s\n%s", i, res.Variants[i], res.OtherJudges[0].Variants[i])
		}
	}
}
