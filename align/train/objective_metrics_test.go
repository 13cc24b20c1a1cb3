package train

import (
	"math"
	"testing"
)

// Held-out rows carry accuracy and margin per objective (issue 9 item 2):
// on a constructed micro-batch of three pairs, two "tone" (β 0.1) and one
// "safety" (β 0.05), the per-objective means are the hand-computed ones.
func TestPerObjectiveMetrics(t *testing.T) {
	exs := []Example{
		{ID: "a", Objective: "tone", Beta: 0.1, Prompt: []int32{1}, Chosen: []int32{2, 3}, Rejected: []int32{4}, RefW: -5, RefL: -5},
		{ID: "b", Objective: "tone", Beta: 0.1, Prompt: []int32{1}, Chosen: []int32{2}, Rejected: []int32{4}, RefW: -5, RefL: -5},
		{ID: "c", Objective: "safety", Beta: 0.05, Prompt: []int32{1}, Chosen: []int32{2}, Rejected: []int32{4, 5}, RefW: -8, RefL: -8},
	}
	mb := MicroBatch{Examples: []int{0, 1, 2}}
	// policy sums: a: h = (−3+5) − (−6+5) = 3; b: h = (−7+5) − (−4+5) = −3;
	// c: h = (−6+8) − (−10+8) = 4
	out := Outputs{Sums: []float64{-3, -6, -7, -4, -6, -10}}
	m := Metrics{ByObjective: map[string]*Metrics{}}
	if _, err := (prefObjective{method: DPO}).loss(exs, mb, out, 1, &m); err != nil {
		t.Fatal(err)
	}
	got := m.ObjectiveMap()
	want := map[string]float64{
		"objective/tone/rewards/accuracies":   0.5,                  // a right, b wrong
		"objective/tone/rewards/margins":      (0.1*3 + 0.1*-3) / 2, // β·h
		"objective/tone/pairs":                2,
		"objective/safety/rewards/accuracies": 1,
		"objective/safety/rewards/margins":    0.05 * 4,
		"objective/safety/pairs":              1,
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-12 {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, w)
		}
	}
	// the overall means are unchanged by the split
	if all := m.Map()["rewards/accuracies"]; math.Abs(all-2.0/3) > 1e-12 {
		t.Errorf("overall accuracy %v, want 2/3", all)
	}
}
