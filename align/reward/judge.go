package reward

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/pipeline"
	"github.com/align-dev/align/align/train"
)

// judgeWorkers is how many samples a judge term scores at once (judges
// are safe for concurrent use; remote ones are paced by their clients).
const judgeWorkers = 8

// judge is a pairwise judge turned into a per-response score: the response
// is judged against itself (as A and as B) and its reward is the mean of
// the verdict's eight criterion scores, 1 to 5. For the rules judge, whose
// scores depend on the response alone, this is exactly the mean of its four
// criterion scores.
type judge struct {
	b *pipeline.Backend
}

func openJudge(ctx context.Context, spec string, o Options) (scorer, error) {
	b, err := pipeline.Open(ctx, spec, o.Backend)
	if err != nil {
		return nil, err
	}
	if b.Judge == nil {
		b.Close()
		return nil, errors.New("this backend cannot judge")
	}
	return judge{b}, nil
}

// conversation is s's prompt as the judges take it (user and assistant
// turns; system messages are left out).
func conversation(s Sample) []backend.Message {
	var out []backend.Message
	for _, m := range s.Prompt {
		switch backend.Role(m.Role) {
		case backend.RoleUser, backend.RoleAssistant:
			out = append(out, backend.Message{Role: backend.Role(m.Role), Content: m.Content})
		}
	}
	return out
}

// criteriaMean is the mean of a verdict's eight criterion scores.
func criteriaMean(v backend.VerdictScores) float64 {
	t := v.A.Tone + v.A.Accuracy + v.A.Helpfulness + v.A.Safety + v.B.Tone + v.B.Accuracy + v.B.Helpfulness + v.B.Safety
	return float64(t) / 8
}

func (j judge) one(ctx context.Context, s Sample) (float64, error) {
	req := backend.JudgeRequest{Prompt: conversation(s), A: s.Response, B: s.Response}
	resp, err := j.b.Judge.Judge(ctx, req)
	if err != nil && backend.IsInvalidOutput(err) {
		// one repair attempt, as align rank makes
		var ie *backend.InvalidOutputError
		if errors.As(err, &ie) {
			req.Repair = &backend.Repair{Previous: ie.Raw, Problem: ie.Error()}
		}
		resp, err = j.b.Judge.Judge(ctx, req)
	}
	if err != nil {
		return 0, err
	}
	return criteriaMean(resp.Verdict.Scores), nil
}

func (j judge) score(ctx context.Context, samples []Sample) ([]float64, error) {
	out := make([]float64, len(samples))
	errs := make([]error, len(samples))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(judgeWorkers, len(samples)); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				out[i], errs[i] = j.one(ctx, samples[i])
			}
		}()
	}
	for i := range samples {
		if ctx.Err() != nil {
			break
		}
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("sample %s: %w", sampleName(samples, i), err)
		}
	}
	return out, nil
}

func (j judge) close() error { return j.b.Close() }

// sampleName is sample i's id, or its index.
func sampleName(samples []Sample, i int) string {
	if id := samples[i].ID; id != "" {
		return fmt.Sprintf("%q", id)
	}
	return fmt.Sprint(i)
}

// withID names the sample of a train.RewardModel error.
func withID(err error, samples []Sample) error {
	var re *train.ResponseError
	if errors.As(err, &re) && re.Index >= 0 && re.Index < len(samples) {
		return fmt.Errorf("sample %s: %w", sampleName(samples, re.Index), re.Err)
	}
	return err
}
