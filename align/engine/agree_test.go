package engine_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/align-dev/align/align/backend"
	"github.com/align-dev/align/align/backend/local"
	"github.com/align-dev/align/align/engine"
	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/align/train"
	"github.com/align-dev/align/bindings"
)

// The three callers the prompt formatter unifies (issue 11, item 7) see the
// same prompt tokens: `align sample` (engine.SamplePrompt), the local
// backend (Backend.EncodePrompt) and training (train.Encoder). Training's
// response tokens are align/prompt's too, so switching train to
// prompt.Formatter.EncodePair changes no token.
func TestPromptFormatsAgree(t *testing.T) {
	dir := t.TempDir()
	fixture := filepath.Join(dir, "tiny.gguf")
	if err := engine.InitModel(fixture, engine.FixtureParams{Arch: "llama", Type: "q8_0", Size: "tiny", Seed: 1}); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		model string
		raw   bool
	}{
		{"template", fixture, false},
		{"raw", fixture, true},
	}
	// a real model without a chat template (and without byte fallback)
	noTemplate := "../../../shared/models/TinyStories-656K-Q8_0.gguf"
	if _, err := os.Stat(noTemplate); err == nil {
		cases = append(cases, struct {
			name  string
			model string
			raw   bool
		}{"no template", noTemplate, false})
	} else {
		t.Logf("no %s: the no-template case runs on the fixture with raw only", noTemplate)
	}
	system, user, answer := "You are a shop assistant.", "Is Berserk finished?", "Not yet: volume 42 is out."
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := bindings.LoadModel(c.model, bindings.ModelOptions{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()

			sample, _, _, err := engine.SamplePrompt(m, system, user, c.raw)
			if err != nil {
				t.Fatal(err)
			}

			lb, err := local.Open(c.model, local.Options{Threads: 2, Raw: c.raw})
			if err != nil {
				t.Fatal(err)
			}
			defer lb.Close()
			judged, err := lb.EncodePrompt("generate", system, []backend.Message{{Role: backend.RoleUser, Content: user}})
			if err != nil {
				t.Fatal(err)
			}

			enc, err := train.NewEncoder(m, 4096, c.raw)
			if err != nil {
				t.Fatal(err)
			}
			p := pairs.Pair{
				ID:               "p1",
				PromptMessages:   []pairs.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
				ChosenMessages:   []pairs.Message{{Role: "assistant", Content: answer}},
				RejectedMessages: []pairs.Message{{Role: "assistant", Content: "Yes."}},
			}
			exs, _, _, err := enc.Encode([]pairs.Pair{p}, train.BetaTable{}, false)
			if err != nil {
				t.Fatal(err)
			}
			trained := exs[0].Prompt

			if !reflect.DeepEqual(sample, trained) {
				t.Errorf("sample's prompt differs from training's:\nsample %v\ntrain  %v", sample, trained)
			}
			if !reflect.DeepEqual(judged, trained) {
				t.Errorf("the local backend's prompt differs from training's:\nlocal %v\ntrain %v", judged, trained)
			}

			pm, err := engine.PromptModel(m)
			if err != nil {
				t.Fatal(err)
			}
			pp, r, _, err := prompt.New(pm, c.raw).EncodePair(
				[]prompt.Message{{Role: "system", Content: system}, {Role: "user", Content: user}},
				[]prompt.Message{{Role: "assistant", Content: answer}})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pp, trained) || !reflect.DeepEqual(r, exs[0].Chosen) {
				t.Errorf("EncodePair differs from training's encoding:\nprompt %v\ntrain  %v\nresp   %v\ntrain  %v", pp, trained, r, exs[0].Chosen)
			}
		})
	}
}
