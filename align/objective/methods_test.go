package objective

import (
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// Every row is well formed: a unique lowercase name, a title, one line of
// summary, a known kind, layout and reference.
func TestMethodRows(t *testing.T) {
	seen := map[string]bool{}
	for _, m := range Methods() {
		if m.Name == "" || m.Name != strings.ToLower(m.Name) || strings.ContainsAny(m.Name, " ,") {
			t.Errorf("method %q: want a lowercase name without spaces or commas", m.Name)
		}
		if seen[m.Name] {
			t.Errorf("method %q: listed twice", m.Name)
		}
		seen[m.Name] = true
		// the summary is a line of help's methods table (80 columns with
		// the indent and the longest name)
		if m.Title == "" || m.Summary == "" || strings.Contains(m.Summary, "\n") || strings.HasSuffix(m.Summary, ".") || utf8.RuneCountInString(m.Summary) > 62 {
			t.Errorf("%s: title %q, summary %q: want both, the summary one line of at most 62 characters without a final period", m.Name, m.Title, m.Summary)
		}
		if m.Kind.String() == "unknown" || m.Layout.String() == "unknown" || m.Reference.String() == "unknown" {
			t.Errorf("%s: kind %v, layout %v, reference %v: want known values", m.Name, m.Kind, m.Layout, m.Reference)
		}
		// a rollout method's batches are rollout groups, and only its
		if (m.Kind == Rollout) != (m.Layout == LayoutRolloutGroup) {
			t.Errorf("%s: kind %v with layout %v", m.Name, m.Kind, m.Layout)
		}
		if m.Score != ScoreMargin && m.Score != ScoreLoss && m.Score != ScoreReward {
			t.Errorf("%s: early-stopping score %q: want margin, loss or reward", m.Name, m.Score)
		}
		if m.BetaTable && m.Beta == "" {
			t.Errorf("%s: a β table but no --beta", m.Name)
		}
		if m.Preference && (m.Kind != Dataset || m.Layout != LayoutPair || m.Reference != RefAlways || !m.BetaTable) {
			t.Errorf("%s: a preference method is a dataset method on pairs against a reference with a β table (got %+v)", m.Name, m)
		}
	}
	for _, k := range []Kind{Dataset, Rollout, Online} {
		if len(Names(k)) == 0 {
			t.Errorf("no method of kind %v", k)
		}
	}
}

// Preference is exactly the set of methods PreferenceLoss computes.
func TestPreferenceRowsArePreferenceLoss(t *testing.T) {
	p := PairLogps{PiW: -4, PiL: -6, RefW: -5, RefL: -5, NW: 2, NL: 3}
	for _, m := range Methods() {
		_, err := PreferenceLoss(m.Name, 0.1, 0, p)
		if m.Preference && err != nil {
			t.Errorf("%s is a preference method but PreferenceLoss refuses it: %v", m.Name, err)
		}
		if !m.Preference && (err == nil || !strings.Contains(err.Error(), "unknown preference method")) {
			t.Errorf("%s is not a preference method but PreferenceLoss gives %v", m.Name, err)
		}
	}
}

func TestMethodLookups(t *testing.T) {
	all := Methods()
	for _, m := range all {
		got, ok := Lookup(m.Name)
		if !ok || got != m {
			t.Errorf("Lookup(%q) = %+v, %v; want its row", m.Name, got, ok)
		}
		if KindOf(m.Name) != m.Kind {
			t.Errorf("KindOf(%q) = %v, want %v", m.Name, KindOf(m.Name), m.Kind)
		}
	}
	for _, name := range []string{"", "DPO", "bogus", "online_dpo"} {
		if m, ok := Lookup(name); ok || KindOf(name) != 0 {
			t.Errorf("Lookup(%q) = %+v, %v (kind %v); want no method", name, m, ok, KindOf(name))
		}
	}
	// Names partitions the methods by kind, in help order
	var names []string
	for _, m := range all {
		names = append(names, m.Name)
	}
	if got := Names(); !slices.Equal(got, names) {
		t.Errorf("Names() = %v, want %v", got, names)
	}
	n := 0
	for _, k := range []Kind{Dataset, Rollout, Online} {
		for _, name := range Names(k) {
			if KindOf(name) != k {
				t.Errorf("Names(%v) lists %s of kind %v", k, name, KindOf(name))
			}
			n++
		}
	}
	if n != len(all) {
		t.Errorf("the kinds list %d methods, want %d", n, len(all))
	}
	if got := Names(Rollout, Online); !slices.Equal(got, Where(func(m Method) bool { return m.Kind != Dataset })) {
		t.Errorf("Names(Rollout, Online) = %v", got)
	}
	// Methods is a copy: changing it changes no row
	all[0].Name = "changed"
	if Methods()[0].Name == "changed" {
		t.Error("Methods() shares its rows with the registry")
	}
	if want := strings.Count(Titles(), ", ") + 1; want != len(all) {
		t.Errorf("Titles() = %q: %d titles for %d methods", Titles(), want, len(all))
	}
}

// The facts the drivers and the command line rely on, pinned.
func TestMethodFacts(t *testing.T) {
	for _, c := range []struct {
		name  string
		kind  Kind
		lay   Layout
		ref   Reference
		beta  bool
		score Score
	}{
		{SFT, Dataset, LayoutSingle, RefNever, false, ScoreLoss},
		{DPO, Dataset, LayoutPair, RefAlways, true, ScoreMargin},
		{KTO, Dataset, LayoutUnpaired, RefAlways, true, ScoreMargin},
		{RM, Dataset, LayoutPair, RefNever, false, ScoreMargin},
		{ORPO, Dataset, LayoutPair, RefNever, false, ScoreLoss},
		{SimPO, Dataset, LayoutPair, RefNever, true, ScoreMargin},
		{OnlineDPO, Online, LayoutPair, RefAlways, true, ScoreReward},
		{PPO, Rollout, LayoutRolloutGroup, RefAlways, false, ScoreReward},
		{GRPO, Rollout, LayoutRolloutGroup, RefOptional, true, ScoreReward},
	} {
		m, ok := Lookup(c.name)
		if !ok || m.Kind != c.kind || m.Layout != c.lay || m.Reference != c.ref || (m.Beta != "") != c.beta || m.Score != c.score {
			t.Errorf("%s: %+v (found %v); want kind %v, layout %v, reference %v, --beta %v, score %v", c.name, m, ok, c.kind, c.lay, c.ref, c.beta, c.score)
		}
	}
	grpo, _ := Lookup(GRPO)
	dpo, _ := Lookup(DPO)
	orpo, _ := Lookup(ORPO)
	if grpo.NeedsReference(false) || !grpo.NeedsReference(true) || !dpo.NeedsReference(false) || orpo.NeedsReference(true) {
		t.Error("NeedsReference: want an optional reference only when in use, always and never as the row says")
	}
}
