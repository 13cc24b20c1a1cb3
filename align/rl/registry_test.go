package rl

import (
	"errors"
	"testing"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/run"
)

// Every rollout method of align/objective's registry has its objective
// here, every online method is online DPO's stepper, and this package
// implements no method of another kind; each objective's reference pass is
// what its row says.
func TestRegistryRolloutObjectives(t *testing.T) {
	for _, m := range objective.Methods() {
		newObj, ok := rolloutObjectives[m.Name]
		switch m.Kind {
		case objective.Rollout:
			if !ok {
				t.Errorf("%s: a rollout method of the registry with no objective in rolloutObjectives", m.Name)
				continue
			}
			cfg := Defaults(m.Name)
			coef := cfg.KLCoef
			cfg.Beta, cfg.MaxKL = 0, 0
			off := newObj(&cfg, &coef).needsReference()
			on := cfg
			on.Beta = 0.1
			withKL := newObj(&on, &coef).needsReference()
			if off != m.NeedsReference(false) || withKL != m.NeedsReference(true) {
				t.Errorf("%s: needsReference %v without a KL term, %v with β 0.1; the registry says %v", m.Name, off, withKL, m.Reference)
			}
		case objective.Online:
			if m.Name != OnlineDPO || ok {
				t.Errorf("%s: an online method; this package's only one is %s, online.go's stepper (in rolloutObjectives: %v)", m.Name, OnlineDPO, ok)
			}
		default:
			if ok {
				t.Errorf("%s: a %v method with an objective in align/rl", m.Name, m.Kind)
			}
		}
		// both steppers stop early on the held-out reward
		if m.Kind != objective.Dataset {
			held := map[string]float64{"rewards/margins": 3, "loss": 5, "reward": 7}
			if (&stepper{}).Score(held) != 7 || (&onlineStepper{}).Score(held) != 7 || m.Score != objective.ScoreReward {
				t.Errorf("%s: the steppers' score is the reward, the registry says %q", m.Name, m.Score)
			}
		}
		if want := m.Kind == objective.Rollout || m.Kind == objective.Online; isMethod(m.Name) != want {
			t.Errorf("isMethod(%q) = %v, want %v (kind %v)", m.Name, isMethod(m.Name), want, m.Kind)
		}
	}
	for name := range rolloutObjectives {
		if objective.KindOf(name) != objective.Rollout {
			t.Errorf("rolloutObjectives has %q, which the registry has as kind %v", name, objective.KindOf(name))
		}
	}
	if isMethod("bogus") || isMethod(objective.DPO) {
		t.Error("isMethod accepts a method align/rl does not run")
	}
	// Validate takes exactly the registry's rollout and online methods
	for _, m := range objective.Methods() {
		cfg := Defaults(m.Name)
		cfg.Method = m.Name
		err := cfg.Validate()
		var ce *run.ConfigError
		refused := errors.As(err, &ce) && ce.Flag == "method"
		if refused != (m.Kind == objective.Dataset) {
			t.Errorf("Validate of --method %s (kind %v): %v", m.Name, m.Kind, err)
		}
	}
}
