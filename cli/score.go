package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/cost"
	"github.com/align-dev/align/align/jsonl"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/reward"
)

func init() { register(scoreCommand) }

// scoreChunk is how many records are scored per call of the scorer (a
// reward model packs their responses into batches).
const scoreChunk = 64

func scoreCommand() *cli.Command {
	return &cli.Command{
		Name:      "score",
		Usage:     "print the reward of every response of a pairs or candidates file",
		ArgsUsage: " ",
		Description: `Scores each record of --in with the reward --reward and writes one JSON
line per record: {"id", "reward_chosen", "reward_rejected", "spec"} for a
preference pair, or per response {"id", "index", "reward", "spec"} for a
candidates record of align collect (index is the response's position;
spec is the --reward that gave the reward). Both kinds may be mixed in one
file.

--reward is a reward spec as PPO and GRPO take it: terms KIND:TARGET
with optional =WEIGHT, comma-separated and summed: rm:DIR (a run of align
train --method rm; a bare DIR means the same), rules:CATALOG.json (the mean
of the rules judge's four criterion scores, 1 to 5), local:FILE.gguf,
openai:URL[#model] or bedrock:MODEL (an LLM judge scoring the response
against itself: the mean of its criterion scores, 1 to 5) and
contains:PHRASE (1 when the response contains PHRASE, else 0). A reward
model refuses a --model other than the one it was trained on; without
--model it loads that one.

A file --out is appended to as records are scored: a rerun of the same
command skips what it holds and drops a torn last line, so an interrupted
run (exit 4) or one stopped by --max-usd (exit 3) continues where it
stopped. It must hold rewards of the same --reward, or be new. Calls to
openai: and bedrock: judges are recorded in OUT.ledger.jsonl (--ledger; in
memory for --out -); --max-usd stops before the total, earlier runs
included, would cross it (0: free calls only; leave it out for no limit).

Example:
   align score --model models/tiny-q8_0.gguf --reward runs/rm --in testdata/pairs/eval.jsonl --out -
   align score --reward rules:testdata/catalog.json,contains:sorry=0.5 --in cand.jsonl --out scores.jsonl
   align score --reward bedrock:anthropic.claude-3-haiku-20240307-v1:0 --in pairs.jsonl --out judged.jsonl --max-usd 5`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE` of the rm: terms", EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringFlag{Name: "reward", Usage: "reward `SPEC` (rm:DIR, rules:CATALOG.json, local:, openai:, bedrock:, contains:PHRASE; =WEIGHT; comma-separated)", EnvVars: []string{"ALIGN_REWARD"}},
			&cli.StringFlag{Name: "in", Usage: "pairs or candidates `FILE` (.jsonl or .jsonl.zst; - reads standard input)", EnvVars: []string{"ALIGN_IN"}},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "-", Usage: "output `FILE`, appended to and resumed (- writes standard output)", EnvVars: []string{"ALIGN_OUT"}},
			&cli.IntFlag{Name: "max-length", Usage: "rm: tokens per prompt + response (0: the reward model's setting)", EnvVars: []string{"ALIGN_MAX_LENGTH"}},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
			&cli.StringFlag{Name: "ledger", Usage: "cost ledger `FILE` of the judge calls (default: OUT.ledger.jsonl; in memory for --out -)", EnvVars: []string{"ALIGN_LEDGER"}},
			maxUSDFlag(),
			&cli.StringFlag{Name: "prices", Usage: "price table `FILE` (JSON) overriding the built-in prices", EnvVars: []string{"ALIGN_PRICES"}},
		},
		Action: runScore,
	}
}

// scoreRecord is one record of --in with the samples it contributes.
type scoreRecord struct {
	id      string
	pair    bool
	samples []reward.Sample
}

// parseScoreRecord reads a pair or a candidates record.
func parseScoreRecord(raw []byte) (scoreRecord, error) {
	var probe map[string]json.RawMessage
	if err := json.Unmarshal(raw, &probe); err != nil {
		return scoreRecord{}, err
	}
	if _, ok := probe["responses"]; ok {
		c, err := pipeline.ParseCandidate(raw)
		if err != nil {
			return scoreRecord{}, fmt.Errorf("candidates record: %w", err)
		}
		var prompt []reward.Message
		if c.System != "" {
			prompt = append(prompt, reward.Message{Role: "system", Content: c.System})
		}
		prompt = append(prompt, c.AsPrompt().Conversation()...)
		r := scoreRecord{id: c.ID}
		for i, resp := range c.Responses {
			r.samples = append(r.samples, reward.Sample{ID: fmt.Sprintf("%s#%d", c.ID, i), Prompt: prompt, Response: resp.Text})
		}
		return r, nil
	}
	p, err := pairs.ParseLine(raw)
	if err != nil {
		return scoreRecord{}, fmt.Errorf("pair: %w", err)
	}
	if err := p.Validate(nil); err != nil {
		return scoreRecord{}, fmt.Errorf("pair %q: %w", p.ID, err)
	}
	pm, cm, rm := p.Messages()
	prompt := pm
	return scoreRecord{id: p.ID, pair: true, samples: []reward.Sample{
		{ID: p.ID + "#chosen", Prompt: prompt, Response: joinTurns(cm)},
		{ID: p.ID + "#rejected", Prompt: prompt, Response: joinTurns(rm)},
	}}, nil
}

// joinTurns is a response of one or more turns as one text.
func joinTurns(ms []pairs.Message) string {
	if len(ms) == 1 {
		return ms[0].Content
	}
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += "\n"
		}
		s += m.Content
	}
	return s
}

func runScore(c *cli.Context) error {
	env := envOf(c)
	if c.NArg() > 0 {
		return usagef("score takes no arguments (got %q)", c.Args().First())
	}
	for _, f := range []string{"reward", "in"} {
		if c.String(f) == "" {
			return usagef("--%s is required", f)
		}
	}
	if c.Int("max-length") < 0 {
		return usagef("--max-length must not be negative (got %d)", c.Int("max-length"))
	}
	spec := c.String("reward")
	terms, err := reward.ParseSpec(spec)
	if err != nil {
		return usagef("--reward: %v", err)
	}
	in, out := c.String("in"), c.String("out")
	sp := reward.Spending{Ledger: c.String("ledger")}
	if sp.Ledger == "" && out != "-" {
		sp.Ledger = pipeline.SidePath(out, "ledger")
	}
	if c.IsSet("max-usd") {
		usd := c.Float64("max-usd")
		if math.IsNaN(usd) || math.IsInf(usd, 0) || usd < 0 {
			return usagef("--max-usd %g: want a finite amount, 0 (spend nothing) or more; leave the flag out for no limit", usd)
		}
		sp.MaxUSD = &usd
	}
	inputs := []namedPath{{"in", in}, {"model", c.String("model")}, {"prices", c.String("prices")}}
	for _, f := range reward.Files(spec) {
		inputs = append(inputs, namedPath{"reward", f})
	}
	if err := checkDistinct(inputs, []namedPath{{"out", out}, {"ledger", sp.Ledger}}); err != nil {
		return err
	}
	if p := c.String("prices"); p != "" {
		if sp.Prices, err = cost.LoadPrices(p); err != nil {
			return err
		}
	}
	var r io.Reader = env.Stdin
	name := "stdin"
	if in != "-" {
		rc, err := jsonl.Open(in)
		if err != nil {
			return err
		}
		defer rc.Close()
		r, name = rc, in
	}
	// the output is checked (and its torn last line dropped) before any
	// model is loaded or judge paid
	so := &scoreOut{path: out, spec: specKey(terms), w: env.Stdout}
	if err := so.open(); err != nil {
		return err
	}
	defer so.close()
	sc, err := reward.Parse(c.Context, spec, reward.Options{ModelPath: c.String("model"), Threads: c.Int("threads"), MaxLength: c.Int("max-length"), Spending: &sp})
	if err != nil {
		return err
	}
	defer sc.Close()
	chunk := scoreChunk
	for _, t := range terms {
		switch t.Kind {
		case reward.KindLocal, reward.KindOpenAI, reward.KindBedrock:
			// an interruption loses the chunk in flight: keep it to about
			// the judge's workers' worth of calls
			chunk = judgeChunk
		}
	}
	err = scoreAll(c, sc, jsonl.NewReader(r, name), so, chunk)
	if cerr := so.close(); err == nil {
		err = cerr
	}
	if out != "-" {
		spent, serr := reward.Spent(sc)
		msg := fmt.Sprintf("score: %s written to %s", fmtCount(so.n, "line", "lines"), out)
		if so.skipped > 0 {
			msg += fmt.Sprintf(", %s already there", fmtCount(so.skipped, "record", "records"))
		}
		if serr == nil && spent.Calls > 0 {
			msg += fmt.Sprintf("; judge calls $%.4f in all (%s)", spent.USD, sp.Ledger)
		}
		fmt.Fprintln(env.Stderr, msg)
	}
	return stageError(c, out, err)
}

// judgeChunk is how many records are scored per call when the spec has an
// LLM judge term (paid per call; lost when interrupted mid-chunk).
const judgeChunk = 4

// specKey is the spec as the output records it: its terms, normalised.
func specKey(terms []reward.Term) string {
	s := ""
	for i, t := range terms {
		if i > 0 {
			s += ","
		}
		s += t.String()
	}
	return s
}

// scoreOut is where score writes: standard output, or a file appended to
// (what it holds is skipped on a rerun).
type scoreOut struct {
	path, spec string
	w          io.Writer       // for "-"
	bw         *bufio.Writer   // over w
	app        *jsonl.Appender // for a file, opened at the first line when new
	done       map[string]bool // keys already in the file
	n, skipped int             // lines written, records skipped
}

// scoreLine is one line of score's output.
type scoreLine struct {
	ID       string   `json:"id"`
	Chosen   *float64 `json:"reward_chosen,omitempty"`
	Rejected *float64 `json:"reward_rejected,omitempty"`
	Index    *int     `json:"index,omitempty"`
	Reward   *float64 `json:"reward,omitempty"`
	Spec     string   `json:"spec"`
}

// key is what identifies a line: the pair's id, or the candidate's id and
// the response's index.
func (l scoreLine) key() string {
	if l.Index != nil {
		return fmt.Sprintf("%s\x00%d", l.ID, *l.Index)
	}
	return l.ID
}

// open reads an existing output file: it must hold score lines of the
// same spec; their keys are skipped.
func (o *scoreOut) open() error {
	if o.path == "-" {
		o.bw = bufio.NewWriter(o.w)
		return nil
	}
	st, err := os.Stat(o.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // created at the first line, so a failure before it leaves no file
	}
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("--out %s is a directory", o.path)
	}
	app, keys, err := jsonl.OpenAppend(o.path, func(raw json.RawMessage) (string, error) {
		var l scoreLine
		if err := json.Unmarshal(raw, &l); err != nil || l.ID == "" || (l.Chosen == nil && l.Reward == nil) {
			return "", fmt.Errorf("not a line of align score: refusing to add to this file (name another --out)")
		}
		if l.Spec != o.spec {
			return "", fmt.Errorf("holds rewards of --reward %q, not %q: refusing to mix them (name another --out)", l.Spec, o.spec)
		}
		return l.key(), nil
	})
	if err != nil {
		return err
	}
	o.app, o.done = app, keys
	return nil
}

func (o *scoreOut) write(l scoreLine) error {
	l.Spec = o.spec
	o.n++
	if o.bw != nil {
		return jsonl.Encode(o.bw, l)
	}
	if o.app == nil {
		app, _, err := jsonl.OpenAppend(o.path, nil)
		if err != nil {
			return err
		}
		o.app = app
	}
	return o.app.Write(l)
}

func (o *scoreOut) close() error {
	if o.bw != nil {
		err := o.bw.Flush()
		o.bw = nil
		return err
	}
	err := o.app.Close()
	o.app = nil
	return err
}

// scoreAll scores the records of jr not yet in o, chunk records per call
// of the scorer, and writes their lines.
func scoreAll(c *cli.Context, sc reward.Scorer, jr *jsonl.Reader, o *scoreOut, chunk int) error {
	type pending struct {
		rec  scoreRecord
		keep []int // indexes of rec.samples to score (candidates: those not done)
	}
	var recs []pending
	var lines []int
	flush := func() error {
		var samples []reward.Sample
		for _, p := range recs {
			for _, i := range p.keep {
				samples = append(samples, p.rec.samples[i])
			}
		}
		if len(samples) == 0 {
			return nil
		}
		rs, err := sc.Score(c.Context, samples)
		if err != nil {
			return fmt.Errorf("%s: lines %d-%d: %w", jr.Name(), lines[0], lines[len(lines)-1], err)
		}
		k := 0
		for _, p := range recs {
			if p.rec.pair {
				if err := o.write(scoreLine{ID: p.rec.id, Chosen: &rs[k], Rejected: &rs[k+1]}); err != nil {
					return err
				}
				k += 2
				continue
			}
			for _, i := range p.keep {
				i := i
				if err := o.write(scoreLine{ID: p.rec.id, Index: &i, Reward: &rs[k]}); err != nil {
					return err
				}
				k++
			}
		}
		recs, lines = recs[:0], lines[:0]
		return nil
	}
	for {
		raw, line, err := jr.NextRaw()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		rec, err := parseScoreRecord(raw)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", jr.Name(), line, err)
		}
		p := pending{rec: rec}
		if rec.pair {
			if !o.done[rec.id] {
				p.keep = []int{0, 1}
			}
		} else {
			for i := range rec.samples {
				if !o.done[scoreLine{ID: rec.id, Index: &i}.key()] {
					p.keep = append(p.keep, i)
				}
			}
		}
		if len(p.keep) == 0 {
			o.skipped++
			continue
		}
		recs, lines = append(recs, p), append(lines, line)
		if len(recs) == chunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
