package train

import (
	"testing"

	"github.com/align-dev/align/align/objective"
)

// Every dataset method of align/objective's registry has its objective
// here and no method of another kind has; each objective's layout,
// reference pass and early-stopping score are its row's, and the DPO
// family's rows are the methods prefObjective implements.
func TestRegistryDatasetObjectives(t *testing.T) {
	for _, m := range objective.Methods() {
		newObj, ok := registry[m.Name]
		if isMethod(m.Name) != (m.Kind == objective.Dataset) {
			t.Errorf("isMethod(%q) = %v for a %v method", m.Name, isMethod(m.Name), m.Kind)
		}
		if m.Kind != objective.Dataset {
			if ok {
				t.Errorf("%s: a %v method with an objective in align/train", m.Name, m.Kind)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: a dataset method of the registry with no objective in align/train", m.Name)
			continue
		}
		obj := newObj(Defaults(m.Name))
		if got := obj.layout(); got != Layout(m.Layout) {
			t.Errorf("%s: layout %v, the registry says %v", m.Name, got, m.Layout)
		}
		if m.Reference == objective.RefOptional {
			t.Errorf("%s: align/train has no optional reference pass", m.Name)
		}
		if got := obj.needsReference(); got != m.NeedsReference(false) {
			t.Errorf("%s: needsReference %v, the registry says %v", m.Name, got, m.Reference)
		}
		held := map[string]float64{"rewards/margins": 3, "loss": 5, "reward": 7}
		if got, want := obj.score(held), map[objective.Score]float64{objective.ScoreMargin: 3, objective.ScoreLoss: -5, objective.ScoreReward: 7}[m.Score]; got != want {
			t.Errorf("%s: score of margin 3, loss 5, reward 7 is %g; the registry's %q gives %g", m.Name, got, m.Score, want)
		}
		if _, pref := obj.(prefObjective); pref != m.Preference {
			t.Errorf("%s: a prefObjective %v, the registry's Preference %v", m.Name, pref, m.Preference)
		}
	}
	for name := range registry {
		if objective.KindOf(name) != objective.Dataset {
			t.Errorf("registry has %q, which align/objective has as kind %v", name, objective.KindOf(name))
		}
	}
	if len(Methods) != len(registry) {
		t.Errorf("Methods %v, %d objectives", Methods, len(registry))
	}
}
