package eval

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/dirlock"
	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
)

// Adapter is a LoRA file with its scale.
type Adapter struct {
	Path  string  `json:"path"`
	Scale float64 `json:"scale"`
}

// Sampler holds the sampling settings of align sample.
type Sampler struct {
	Temperature float64 `json:"temperature"`
	TopP        float64 `json:"top_p"`
	TopK        int     `json:"top_k"`
	MinP        float64 `json:"min_p"`
	MaxTokens   int     `json:"max_tokens"`
}

// GenRequest asks for one response. Adapter is -1 for the base, else an
// index into the Generator's adapters.
type GenRequest struct {
	Adapter int
	System  string
	Prompt  string
	Seed    uint32
	Sampler Sampler
}

// GenResult is one generated response.
type GenResult struct {
	Text       string
	Generated  int
	StopReason string
}

// Generator samples responses with the base model or one of its adapters.
//
// Contract: the same request gives the same text. Not safe for concurrent
// use.
type Generator interface {
	Generate(ctx context.Context, req GenRequest) (GenResult, error)
}

// Fluency is a response's token count, log-prob sum under the base and sum
// of per-position KL(adapter ‖ base).
type Fluency struct {
	Tokens int
	Logp   float64
	KL     float64
}

// Scorer measures text under the base model and its adapters.
//
// Contract: Score tokenizes system and prompt as the Generator formats them
// and response as plain text, and returns the response tokens' log-probs
// under the base and (adapter ≥ 0) the KL of the adapter's next-token
// distribution from the base's, summed over those positions; for the base
// KL is 0. PairScores returns the summed response log-probs of each pair
// under the adapter (policy) and the base (reference) with the pair's β.
// Not safe for concurrent use.
type Scorer interface {
	Score(ctx context.Context, adapter int, system, prompt, response string) (Fluency, error)
	PairScores(ctx context.Context, adapter int, ps []pairs.Pair, betas func(objective string) float64) ([]PairScore, error)
}

// Config is one evaluation.
type Config struct {
	Model       string
	Adapters    []Adapter
	Prompts     string              // prompts file (pipeline prompt records)
	Judge       *pipeline.Backend   // the primary judge: the table's numbers
	MoreJudges  []*pipeline.Backend // judged as well, reported in Result.OtherJudges
	Out         string              // directory
	Samples     int                 // responses per prompt and variant
	Seed        uint32              // sample s of prompt i uses Seed + i·Samples + s, for every variant
	Sampler     Sampler
	Categories  []Category
	Pairs       string // optional pairs file for preference metrics
	Betas       func(objective string) float64
	BootIters   int
	Progress    func(done, total int, what string) // may be nil
	Generator   Generator
	Scorer      Scorer
	ModelDigest string // identifies the base model in record ids (e.g. path and size)
}

// Result is DIR/eval.json.
type Result struct {
	Version    int             `json:"version"`
	Model      string          `json:"model"`
	Judge      string          `json:"judge"`
	Prompts    string          `json:"prompts"`
	NPrompts   int             `json:"n_prompts"`
	Samples    int             `json:"samples"`
	Seed       uint32          `json:"seed"`
	Sampler    Sampler         `json:"sampler"`
	Bootstrap  int             `json:"bootstrap_iterations"`
	Pairs      string          `json:"pairs,omitempty"`
	Categories []Category      `json:"categories"`
	Variants   []VariantResult `json:"variants"`
	// OtherJudges are the same responses' rows by each further --judge.
	OtherJudges []JudgeResult `json:"other_judges,omitempty"`
	Notes       []string      `json:"notes"`
}

// JudgeResult is the table by one further judge.
type JudgeResult struct {
	Judge    string          `json:"judge"`
	Variants []VariantResult `json:"variants"`
}

// Notes that say how the numbers are made, kept in eval.json.
var resultNotes = []string{
	"rate: share of responses whose judge score on the category's criterion is at or below its threshold; ci: Wilson 95%",
	"change: adapter minus base, paired by prompt (mean over samples), percentile 95% interval of a seeded bootstrap over prompts",
	"win_rate: wins / comparisons of adapter vs base on the same prompt and seed, judged in both orders; ties and inconsistent orders are not wins",
	"mean_logp_base: mean log-prob per response token under the base model (temperature 1); kl_to_base: mean per-token KL(adapter || base) of next-token distributions along the adapter's responses",
}

// Paths of an evaluation's files in its directory.
func ResponsesPath(dir string) string   { return filepath.Join(dir, "responses.jsonl") }
func ComparisonsPath(dir string) string { return filepath.Join(dir, "comparisons.jsonl") }
func ResultPath(dir string) string      { return filepath.Join(dir, "eval.json") }

type prompt struct {
	index int
	p     pipeline.Prompt
	text  string // what the generator is given
}

// promptText flattens a conversation for generation: a single user turn is
// given as is; a longer conversation as "User: …" / "Assistant: …" lines
// ending with "Assistant:".
func promptText(p pipeline.Prompt) string {
	conv := p.Conversation()
	if len(conv) == 1 {
		return conv[0].Content
	}
	var b strings.Builder
	for _, m := range conv {
		role := "User"
		if m.Role == backend.RoleAssistant {
			role = "Assistant"
		}
		fmt.Fprintf(&b, "%s: %s\n", role, m.Content)
	}
	b.WriteString("Assistant:")
	return b.String()
}

// FileDigest is a short sha256 of a file's contents.
func FileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// VariantNames names the base "base" and adapters by file name without
// extension, by parent directory and file name when file names repeat
// (runs/good/adapter, runs/bad/adapter), with the scale when it is not 1,
// and with an index when names still repeat.
func VariantNames(as []Adapter) []string {
	stem := func(p string) string { return strings.TrimSuffix(filepath.Base(p), filepath.Ext(p)) }
	count := map[string]int{}
	for _, a := range as {
		count[stem(a.Path)]++
	}
	names := []string{"base"}
	seen := map[string]bool{"base": true}
	for i, a := range as {
		n := stem(a.Path)
		if count[n] > 1 {
			n = filepath.Base(filepath.Dir(a.Path)) + "/" + n
		}
		if a.Scale != 1 {
			n += ":" + strconv.FormatFloat(a.Scale, 'g', -1, 64)
		}
		if seen[n] {
			n = fmt.Sprintf("%s#%d", n, i+1)
		}
		seen[n] = true
		names = append(names, n)
	}
	return names
}

// judgeScores judges one response on its own (shown as both A and B, so
// any judge can score it) and returns the lower of the two scores per
// criterion, with one repair attempt for invalid output.
func judgeScores(ctx context.Context, j backend.Judge, conv []backend.Message, text string) (backend.Scores, string, error) {
	resp, err := judgeRepair(ctx, j, backend.JudgeRequest{Prompt: conv, A: text, B: text})
	if err != nil {
		return backend.Scores{}, "", err
	}
	a, b := resp.Verdict.Scores.A, resp.Verdict.Scores.B
	return backend.Scores{Tone: min(a.Tone, b.Tone), Accuracy: min(a.Accuracy, b.Accuracy),
		Helpfulness: min(a.Helpfulness, b.Helpfulness), Safety: min(a.Safety, b.Safety)}, resp.Verdict.Reasoning, nil
}

func judgeRepair(ctx context.Context, j backend.Judge, req backend.JudgeRequest) (backend.JudgeResponse, error) {
	resp, err := j.Judge(ctx, req)
	if err == nil || !backend.IsInvalidOutput(err) {
		return resp, err
	}
	var ie *backend.InvalidOutputError
	if errors.As(err, &ie) {
		problem := ie.Reason
		if ie.Err != nil {
			problem += ": " + ie.Err.Error()
		}
		req.Repair = &backend.Repair{Previous: ie.Raw, Problem: problem}
	}
	return j.Judge(ctx, req)
}

// conversation is what the judge sees, as align rank shows it.
func conversation(p pipeline.Prompt) []backend.Message {
	conv := p.Conversation()
	if p.System != "" {
		conv = append([]backend.Message{{Role: backend.RoleUser, Content: "[assistant instructions]\n" + p.System}}, conv...)
	}
	return conv
}

func recordID(r json.RawMessage) (string, error) {
	var x struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r, &x); err != nil || x.ID == "" {
		return "", errors.New(`want a record with an "id"`)
	}
	return x.ID, nil
}

// Run generates, judges and scores every (variant, prompt, sample), appends
// each finished response to DIR/responses.jsonl and each comparison to
// DIR/comparisons.jsonl, then writes DIR/eval.json. Records already in the
// files (same ids: same model, adapter contents, prompt, seed, sampler and
// judge) are reused, so a killed run continues where it stopped and ends
// with the same eval.json.
func Run(ctx context.Context, c Config) (Result, error) {
	if c.Judge == nil || c.Judge.Judge == nil {
		return Result{}, errors.New("eval: the judge backend cannot judge")
	}
	for _, j := range c.MoreJudges {
		if j == nil || j.Judge == nil {
			return Result{}, errors.New("eval: a further judge backend cannot judge")
		}
	}
	if c.Generator == nil || c.Scorer == nil {
		return Result{}, errors.New("eval: no generator or scorer")
	}
	if c.Samples <= 0 {
		c.Samples = 1
	}
	if c.Categories == nil {
		c.Categories = DefaultCategories
	}
	if err := ValidateCategories(c.Categories); err != nil {
		return Result{}, err
	}
	if c.Betas == nil {
		c.Betas = func(string) float64 { return 0.1 }
	}
	ps, err := pipeline.LoadPrompts(c.Prompts)
	if err != nil {
		return Result{}, err
	}
	var pairSet []pairs.Pair
	if c.Pairs != "" {
		pairSet, _, err = pairs.Load(c.Pairs, pairs.LoadOptions{})
		if err != nil {
			return Result{}, err
		}
	}
	if err := os.MkdirAll(c.Out, 0o755); err != nil {
		return Result{}, err
	}
	// one eval at a time per directory: two would both judge (and pay for)
	// every response and append duplicate records
	lock, err := dirlock.Acquire(c.Out, "align eval")
	if err != nil {
		return Result{}, err
	}
	defer lock.Unlock()
	names := VariantNames(c.Adapters)
	digests := []string{c.ModelDigest}
	for _, a := range c.Adapters {
		d, err := FileDigest(a.Path)
		if err != nil {
			return Result{}, fmt.Errorf("--lora %s: %w", a.Path, err)
		}
		digests = append(digests, d+"@"+strconv.FormatFloat(a.Scale, 'g', -1, 64))
	}
	sampler, _ := json.Marshal(c.Sampler)
	judgesKey := c.Judge.Model
	for _, j := range c.MoreJudges {
		judgesKey += "+" + j.Model
	}
	respID := func(v, pi, s int, seed uint32) string {
		return jsonl.RecordID("eval-response", c.Model, digests[0], digests[v], ps[pi].Key(), strconv.Itoa(s),
			strconv.FormatUint(uint64(seed), 10), string(sampler), judgesKey, categoriesKey(c.Categories))
	}
	cmpID := func(v, pi, s int, seed uint32) string {
		return jsonl.RecordID("eval-compare", respID(0, pi, s, seed), respID(v, pi, s, seed))
	}

	have := map[string]Response{}
	rapp, _, err := jsonl.OpenAppend(ResponsesPath(c.Out), func(raw json.RawMessage) (string, error) {
		var r Response
		if err := json.Unmarshal(raw, &r); err != nil || r.ID == "" {
			return "", errors.New(`want a response record with an "id"`)
		}
		have[r.ID] = r
		return r.ID, nil
	})
	if err != nil {
		return Result{}, err
	}
	defer rapp.Close()
	haveCmp := map[string]Comparison{}
	capp, _, err := jsonl.OpenAppend(ComparisonsPath(c.Out), func(raw json.RawMessage) (string, error) {
		var x Comparison
		if err := json.Unmarshal(raw, &x); err != nil || x.ID == "" {
			return "", errors.New(`want a comparison record with an "id"`)
		}
		haveCmp[x.ID] = x
		return x.ID, nil
	})
	if err != nil {
		return Result{}, err
	}
	defer capp.Close()

	total := len(names)*len(ps)*c.Samples + (len(names)-1)*len(ps)*c.Samples
	done := 0
	progress := func(what string) {
		done++
		if c.Progress != nil {
			c.Progress(done, total, what)
		}
	}
	var all []Response
	byKey := map[[3]int]Response{}
	for v := range names {
		for pi, p := range ps {
			for s := 0; s < c.Samples; s++ {
				seed := c.Seed + uint32(pi*c.Samples+s)
				id := respID(v, pi, s, seed)
				r, ok := have[id]
				if !ok {
					r, err = c.respond(ctx, v, names[v], pi, p, s, seed)
					if err != nil {
						return Result{}, fmt.Errorf("%s, prompt %s (%s line %d), sample %d: %w", names[v], p.ID, c.Prompts, pi+1, s, err)
					}
					r.ID = id
					if err := rapp.Write(r); err != nil {
						return Result{}, err
					}
				}
				all = append(all, r)
				byKey[[3]int{v, pi, s}] = r
				progress(names[v])
			}
		}
	}
	var cmps []Comparison
	for v := 1; v < len(names); v++ {
		for pi, p := range ps {
			for s := 0; s < c.Samples; s++ {
				seed := c.Seed + uint32(pi*c.Samples+s)
				id := cmpID(v, pi, s, seed)
				x, ok := haveCmp[id]
				if !ok {
					adapterText, baseText := byKey[[3]int{v, pi, s}].Text, byKey[[3]int{0, pi, s}].Text
					x, err = compare(ctx, c.Judge.Judge, conversation(p), adapterText, baseText)
					for _, j := range c.MoreJudges {
						if err != nil {
							break
						}
						var y Comparison
						if y, err = compare(ctx, j.Judge, conversation(p), adapterText, baseText); err == nil {
							x.Others = append(x.Others, JudgedPair{Judge: j.Model, AB: y.AB, BA: y.BA, Outcome: y.Outcome})
						}
					}
					if err != nil {
						return Result{}, fmt.Errorf("%s vs base, prompt %s (%s line %d), sample %d: %w", names[v], p.ID, c.Prompts, pi+1, s, err)
					}
					x.ID, x.Variant, x.PromptIndex, x.Sample = id, names[v], pi, s
					if err := capp.Write(x); err != nil {
						return Result{}, err
					}
				}
				cmps = append(cmps, x)
				progress(names[v] + " vs base")
			}
		}
	}
	vars := []Variant{{Name: names[0]}}
	for i, a := range c.Adapters {
		vars = append(vars, Variant{Name: names[i+1], Adapter: a.Path, Scale: a.Scale})
	}
	vrs := Summarize(c.Categories, vars, all, cmps, c.BootIters, uint64(c.Seed))
	if len(pairSet) > 0 {
		for v := range vrs {
			sc, err := c.Scorer.PairScores(ctx, v-1, pairSet, c.Betas)
			if err != nil {
				return Result{}, fmt.Errorf("%s: %w", c.Pairs, err)
			}
			o, per := Preference(sc)
			vrs[v].Preference = &PrefSet{Overall: o, PerObjective: per}
		}
	}
	var others []JudgeResult
	for k, j := range c.MoreJudges {
		rs := make([]Response, len(all))
		for i, r := range all {
			rs[i] = r
			rs[i].Issues = nil
			if k < len(r.Others) {
				rs[i].Issues = r.Others[k].Issues
			}
		}
		xs := make([]Comparison, len(cmps))
		for i, x := range cmps {
			xs[i] = x
			if k < len(x.Others) {
				xs[i].Outcome = x.Others[k].Outcome
			}
		}
		jr := JudgeResult{Judge: j.Model, Variants: Summarize(c.Categories, vars, rs, xs, c.BootIters, uint64(c.Seed))}
		for v := range jr.Variants {
			jr.Variants[v].Preference = vrs[v].Preference // judge-independent
		}
		others = append(others, jr)
	}
	res := Result{Version: 1, OtherJudges: others, Model: c.Model, Judge: c.Judge.Model, Prompts: c.Prompts, NPrompts: len(ps), Samples: c.Samples,
		Seed: c.Seed, Sampler: c.Sampler, Bootstrap: c.BootIters, Pairs: c.Pairs, Categories: c.Categories, Variants: vrs, Notes: resultNotes}
	if err := rapp.Close(); err != nil {
		return res, err
	}
	if err := capp.Close(); err != nil {
		return res, err
	}
	err = jsonl.WriteFileAtomic(ResultPath(c.Out), func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	})
	return res, err
}

func categoriesKey(cs []Category) string {
	b, _ := json.Marshal(cs)
	return string(b)
}

// respond generates, judges and scores one response.
func (c *Config) respond(ctx context.Context, v int, name string, pi int, p pipeline.Prompt, s int, seed uint32) (Response, error) {
	text := promptText(p)
	g, err := c.Generator.Generate(ctx, GenRequest{Adapter: v - 1, System: p.System, Prompt: text, Seed: seed, Sampler: c.Sampler})
	if err != nil {
		return Response{}, fmt.Errorf("generate: %w", err)
	}
	scores, why, err := judgeScores(ctx, c.Judge.Judge, conversation(p), g.Text)
	if err != nil {
		return Response{}, fmt.Errorf("judge: %w", err)
	}
	r := Response{Variant: name, PromptIndex: pi, PromptID: p.ID, Objective: p.Objective, Prompt: p.Customer(), Sample: s, Seed: seed,
		Text: g.Text, Generated: g.Generated, StopReason: g.StopReason, Scores: scores, Issues: Issues(c.Categories, scores), Reasoning: why}
	if v > 0 {
		r.Adapter = c.Adapters[v-1].Path
	}
	if r.Issues == nil {
		r.Issues = []string{}
	}
	for _, j := range c.MoreJudges {
		sc, why, err := judgeScores(ctx, j.Judge, conversation(p), g.Text)
		if err != nil {
			return Response{}, fmt.Errorf("judge %s: %w", j.Model, err)
		}
		is := Issues(c.Categories, sc)
		if is == nil {
			is = []string{}
		}
		r.Others = append(r.Others, JudgedBy{Judge: j.Model, Scores: sc, Issues: is, Reasoning: why})
	}
	if strings.TrimSpace(g.Text) != "" {
		f, err := c.Scorer.Score(ctx, v-1, p.System, text, g.Text)
		if err != nil {
			return Response{}, fmt.Errorf("score: %w", err)
		}
		r.Tokens, r.LogpBase, r.KLBase = f.Tokens, f.Logp, f.KL
	}
	return r, nil
}

// compare judges adapter against base in both orders.
func compare(ctx context.Context, j backend.Judge, conv []backend.Message, adapter, base string) (Comparison, error) {
	ab, err := judgeRepair(ctx, j, backend.JudgeRequest{Prompt: conv, A: adapter, B: base})
	if err != nil {
		return Comparison{}, fmt.Errorf("judge (adapter first): %w", err)
	}
	ba, err := judgeRepair(ctx, j, backend.JudgeRequest{Prompt: conv, A: base, B: adapter})
	if err != nil {
		return Comparison{}, fmt.Errorf("judge (base first): %w", err)
	}
	return Comparison{AB: ab.Verdict.Winner, BA: ba.Verdict.Winner, Outcome: Outcome(ab.Verdict.Winner, ba.Verdict.Winner),
		Reasoning: ab.Verdict.Reasoning}, nil
}
