package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

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
line per record: {"id", "reward_chosen", "reward_rejected"} for a
preference pair, or per response {"id", "index", "reward"} for a
candidates record of align collect (index is the response's position).
Both kinds may be mixed in one file.

--reward is a reward spec as PPO and GRPO take it: terms KIND:TARGET
with optional =WEIGHT, comma-separated and summed: rm:DIR (a run of align
train --method rm; a bare DIR means the same), rules:CATALOG.json (the mean
of the rules judge's four criterion scores, 1 to 5), local:FILE.gguf,
openai:URL[#model] or bedrock:MODEL (an LLM judge scoring the response
against itself: the mean of its criterion scores, 1 to 5) and
contains:PHRASE (1 when the response contains PHRASE, else 0). A reward
model refuses a --model other than the one it was trained on; without
--model it loads that one.

Example:
   align score --model models/tiny-q8_0.gguf --reward runs/rm --in testdata/pairs/eval.jsonl --out -
   align score --reward rules:testdata/catalog.json,contains:sorry=0.5 --in cand.jsonl --out scores.jsonl`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "base GGUF model `FILE` of the rm: terms", EnvVars: []string{"ALIGN_MODEL"}},
			&cli.StringFlag{Name: "reward", Usage: "reward `SPEC` (rm:DIR, rules:CATALOG.json, local:, openai:, bedrock:, contains:PHRASE; =WEIGHT; comma-separated)", EnvVars: []string{"ALIGN_REWARD"}},
			&cli.StringFlag{Name: "in", Usage: "pairs or candidates `FILE` (.jsonl or .jsonl.zst; - reads standard input)", EnvVars: []string{"ALIGN_IN"}},
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Value: "-", Usage: "output `FILE` (- writes standard output)", EnvVars: []string{"ALIGN_OUT"}},
			&cli.IntFlag{Name: "max-length", Usage: "rm: tokens per prompt + response (0: the reward model's setting)", EnvVars: []string{"ALIGN_MAX_LENGTH"}},
			&cli.IntFlag{Name: "threads", Aliases: []string{"t"}, Usage: "CPU threads (0: all cores)", EnvVars: []string{"ALIGN_THREADS"}},
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
		for _, m := range c.AsPrompt().Conversation() {
			prompt = append(prompt, reward.Message{Role: string(m.Role), Content: m.Content})
		}
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
	var prompt []reward.Message
	for _, m := range pm {
		prompt = append(prompt, reward.Message{Role: m.Role, Content: m.Content})
	}
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
	if _, err := reward.ParseSpec(c.String("reward")); err != nil {
		return usagef("--reward: %v", err)
	}
	in, out := c.String("in"), c.String("out")
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
	sc, err := reward.Parse(c.Context, c.String("reward"), reward.Options{ModelPath: c.String("model"), Threads: c.Int("threads"), MaxLength: c.Int("max-length")})
	if err != nil {
		return err
	}
	defer sc.Close()
	score := func(w io.Writer) error { return scoreAll(c, sc, jsonl.NewReader(r, name), w) }
	if out == "-" {
		bw := bufio.NewWriter(env.Stdout)
		if err := score(bw); err != nil {
			bw.Flush()
			return err
		}
		return bw.Flush()
	}
	// written whole or not at all: a failed run leaves no partial file
	return jsonl.WriteFileAtomic(out, score)
}

// scoreAll scores every record of jr in chunks and writes their lines.
func scoreAll(c *cli.Context, sc reward.Scorer, jr *jsonl.Reader, w io.Writer) error {
	var recs []scoreRecord
	var lines []int
	flush := func() error {
		var samples []reward.Sample
		for _, r := range recs {
			samples = append(samples, r.samples...)
		}
		if len(samples) == 0 {
			return nil
		}
		rs, err := sc.Score(c.Context, samples)
		if err != nil {
			return fmt.Errorf("%s: lines %d-%d: %w", jr.Name(), lines[0], lines[len(lines)-1], err)
		}
		k := 0
		for _, r := range recs {
			if r.pair {
				if err := jsonl.Encode(w, struct {
					ID       string  `json:"id"`
					Chosen   float64 `json:"reward_chosen"`
					Rejected float64 `json:"reward_rejected"`
				}{r.id, rs[k], rs[k+1]}); err != nil {
					return err
				}
				k += 2
				continue
			}
			for i := range r.samples {
				if err := jsonl.Encode(w, struct {
					ID     string  `json:"id"`
					Index  int     `json:"index"`
					Reward float64 `json:"reward"`
				}{r.id, i, rs[k]}); err != nil {
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
		recs, lines = append(recs, rec), append(lines, line)
		if len(recs) == scoreChunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}
