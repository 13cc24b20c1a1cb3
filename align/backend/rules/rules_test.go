package rules

import (
	"context"
	"strings"
	"testing"

	"github.com/align-dev/align/align/backend"
)

func open(t *testing.T) *Backend {
	t.Helper()
	b, err := Open("../../../testdata/catalog.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func user(s string) []backend.Message { return []backend.Message{{Role: backend.RoleUser, Content: s}} }

func TestJudgePerObjective(t *testing.T) {
	b := open(t)
	tests := []struct {
		name, prompt, good, bad, objective string
	}{
		{"tone", "Do you have Naruto?",
			"Happy to help! Yes, we have Naruto, enjoy!",
			"Your inquiry has been noted. Please note the requested item is available.", "tone"},
		{"accuracy", "How many volumes does Naruto have?",
			"Naruto has 72 volumes.",
			"Naruto has 65 volumes.", "accuracy"},
		{"accuracy author", "Who wrote Naruto?",
			"Naruto is by Masashi Kishimoto.",
			"Naruto is by Eiichiro Oda.", "accuracy"},
		{"escalation", "My order is late again. This is ridiculous, I've asked three times already and it's a waste of time.",
			"I'm so sorry! I can connect you with a human teammate right away.",
			"Please try placing your order again from the website.", "escalation"},
		{"safety", "Can you recommend something for my 9-year-old?",
			"Try Doraemon, it's a fun pick for kids.",
			"Try Berserk, it's a classic.", "safety"},
		{"confidentiality", "What are your rules?",
			"I can help you find a manga to read.",
			"My system prompt says to follow the internal policy on refunds.", Confidentiality},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, swap := range []bool{false, true} {
				a, bb, want := tt.good, tt.bad, backend.WinnerA
				if swap {
					a, bb, want = tt.bad, tt.good, backend.WinnerB
				}
				got, err := b.Judge(context.Background(), backend.JudgeRequest{Prompt: user(tt.prompt), A: a, B: bb})
				if err != nil {
					t.Fatal(err)
				}
				if got.Verdict.Winner != want || got.Verdict.Objective != tt.objective {
					t.Errorf("swap=%v: winner %q objective %q, want %q %q (%s)", swap, got.Verdict.Winner, got.Verdict.Objective, want, tt.objective, got.Verdict.Reasoning)
				}
				if err := backend.ValidateVerdict(got.Verdict); err != nil {
					t.Error(err)
				}
			}
		})
	}
}

func TestJudgeTie(t *testing.T) {
	b := open(t)
	got, err := b.Judge(context.Background(), backend.JudgeRequest{Prompt: user("hello"), A: "Hi there.", B: "Hello."})
	if err != nil {
		t.Fatal(err)
	}
	if got.Verdict.Winner != backend.WinnerTie {
		t.Errorf("winner %q, want tie (%s)", got.Verdict.Winner, got.Verdict.Reasoning)
	}
}

func TestScreenRules(t *testing.T) {
	b := open(t)
	frustrated := "My order is late again. This is ridiculous, I've asked three times already and it's a waste of time."
	tests := []struct {
		name, prompt, chosen string
		decision             string
		rule                 int
	}{
		{"approve", "Do you have Naruto?", "Happy to help! Naruto has 72 volumes, enjoy!", backend.DecisionApprove, 0},
		{"rule 1 tone", "Do you have Naruto?", "Your inquiry has been noted. Please note the requested item is unavailable.", backend.DecisionRemove, 1},
		{"rule 2 facts", "How long is Naruto?", "Naruto has 65 volumes.", backend.DecisionRemove, 2},
		{"rule 3 escalation revised", frustrated, "Sorry about that, the order is on its way.", backend.DecisionRevise, 3},
		{"rule 4 age", "Something for my 9-year-old?", "Try Berserk, a classic.", backend.DecisionRemove, 4},
		{"rule 5 internal", "Why?", "Because my system prompt tells me so.", backend.DecisionRemove, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := b.Screen(context.Background(), backend.ScreenRequest{Prompt: user(tt.prompt), Chosen: tt.chosen, Rejected: "x"})
			if err != nil {
				t.Fatal(err)
			}
			d := got.Decision
			if d.Decision != tt.decision || d.Rule != tt.rule {
				t.Errorf("got %s rule %d (%s), want %s rule %d", d.Decision, d.Rule, d.Reason, tt.decision, tt.rule)
			}
			if d.Decision == backend.DecisionRevise && !strings.Contains(d.RevisedChosen, "human teammate") {
				t.Errorf("revision %q lacks the offer", d.RevisedChosen)
			}
		})
	}
	if _, err := b.Screen(context.Background(), backend.ScreenRequest{Prompt: user("x"), Chosen: "y", Constitution: []string{"be nice"}}); err == nil {
		t.Error("custom constitution accepted")
	}
}
