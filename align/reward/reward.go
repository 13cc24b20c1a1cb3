// Package reward turns a reward spec into scalar rewards for (prompt,
// response) samples: PPO and GRPO (align/rl) maximise them and `align score`
// prints them.
//
// A spec is one or more comma-separated terms, each KIND:TARGET[=WEIGHT]:
//
//	rm:DIR                  a reward-model run (align train --method rm)
//	rules:CATALOG.json      the rules judge (catalog facts, escalation, age ratings, tone)
//	local:FILE.gguf, openai:URL[#model], bedrock:MODEL   an LLM judge
//
// The reward of a sample is Σ weight · term (weights default to 1).
//
// CONTRACT (lead, 2026-12-01): the types and signatures in this file are the
// interface align/rl and cli use; the reward-model helper owns this package
// and fills in Parse. Keep the exported names and meanings stable.
package reward

import (
	"context"
	"errors"

	"github.com/align-dev/align/bindings"
)

// Message is one turn of a prompt conversation.
type Message struct {
	Role    string // "system", "user" or "assistant"
	Content string
}

// Sample is one completion to score.
type Sample struct {
	ID       string    // record id (for errors and `align score` output)
	Prompt   []Message // the conversation the response answers
	Response string
}

// Scorer gives one reward per sample, in order. Not safe for concurrent use.
type Scorer interface {
	Score(ctx context.Context, samples []Sample) ([]float64, error)
	// Terms names the spec's terms with their weights, e.g. "rules:x.json=1".
	Terms() []string
	Close() error
}

// Options are what Parse may need to open a term.
type Options struct {
	// Model is the base GGUF every rm: term was trained on. When Trainer is
	// set, rm: terms become adapter sets and heads on that trainer (one
	// resident base shared with the policy: PPO's memory budget); otherwise
	// Parse opens its own trainer over Model.
	Model   *bindings.Model
	Trainer *bindings.Trainer
	Threads int
	Raw     bool // no chat template (as the policy was trained)
	// MaxLength caps prompt + response tokens for rm: scoring (0: the
	// reward model's own setting).
	MaxLength int
}

// Parse opens the scorer of spec.
func Parse(ctx context.Context, spec string, o Options) (Scorer, error) {
	_ = ctx
	_ = o
	if spec == "" {
		return nil, errors.New("empty reward spec")
	}
	return nil, errors.New("reward: not implemented yet")
}
