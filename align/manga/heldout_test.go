package manga

import (
	"bufio"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
)

// The demo's held-out prompts (testdata/prompts/heldout.jsonl) are written
// by hand, worded unlike the generated data. These checks keep them a test
// set that measures what each category claims: an accuracy prompt names
// exactly one series the judge can find (so a pronoun answer is checked
// against it), an escalation prompt shows repeated frustration, a safety
// prompt states an age or content limit; and no prompt shares a run of five
// words (series names aside) with a prompt of the SFT set the demo
// generates or of the shipped pairs.

const heldoutPath = "../../testdata/prompts/heldout.jsonl"

// The demo's SFT flags (scripts/demo.sh): --n and --seed.
const demoSFTN, demoSFTSeed = 1400, 1

type promptRecord struct {
	ID       string `json:"id"`
	Prompt   string `json:"prompt"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Objective string `json:"objective"`
}

// customerText is what the judge reads: the prompt, or the user turns.
func (r promptRecord) customerText() string {
	if r.Prompt != "" {
		return r.Prompt
	}
	var parts []string
	for _, m := range r.Messages {
		if m.Role == "user" {
			parts = append(parts, m.Content)
		}
	}
	return strings.Join(parts, "\n")
}

func loadPrompts(t *testing.T, path string) []promptRecord {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []promptRecord
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		var r promptRecord
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out = append(out, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// words5 is the set of five-word runs of text, lower case, with catalog
// names replaced by one placeholder and punctuation dropped.
func words5(c *Catalog, text string) map[string]bool {
	m := findMentions(c, text)
	b := []byte(m.text)
	for _, sp := range append(append([]span(nil), m.titles...), m.authors...) {
		for i := sp.start; i < sp.end; i++ {
			b[i] = ' '
		}
		copy(b[sp.start:], "T")
	}
	ws := strings.FieldsFunc(strings.ToLower(string(b)), func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '\'')
	})
	out := map[string]bool{}
	for i := 0; i+5 <= len(ws); i++ {
		out[strings.Join(ws[i:i+5], " ")] = true
	}
	return out
}

func TestHeldoutPrompts(t *testing.T) {
	c := loadCatalog(t)
	rs := loadPrompts(t, heldoutPath)
	if len(rs) < 40 {
		t.Fatalf("%d held-out prompts, want at least 40", len(rs))
	}
	ids := map[string]bool{}
	count := map[string]int{}
	for _, r := range rs {
		if r.ID == "" || ids[r.ID] {
			t.Errorf("id %q missing or repeated", r.ID)
		}
		ids[r.ID] = true
		if (r.Prompt == "") == (len(r.Messages) == 0) || !slices.Contains(Objectives, r.Objective) {
			t.Errorf("%s: want one of prompt or messages and an objective of %v", r.ID, Objectives)
		}
		count[r.Objective]++
		text := r.customerText()
		_, _, limited := CustomerLimit(text)
		frustrated := CheckEscalation(text, "").Score == 1
		switch r.Objective {
		case Accuracy:
			if soleSeries(c, text) == nil {
				t.Errorf("%s: %q does not name exactly one catalog series the judge finds", r.ID, text)
			}
		case Escalation:
			if !frustrated {
				t.Errorf("%s: %q: no repeated frustration for the judge (%s)", r.ID, text, CheckEscalation(text, "").Reason)
			}
		case Safety:
			if !limited {
				t.Errorf("%s: %q: no age or content limit the judge reads", r.ID, text)
			}
		case Tone:
			if limited || frustrated {
				t.Errorf("%s: %q: a tone prompt with a limit or repeated frustration", r.ID, text)
			}
		}
	}
	for _, o := range Objectives {
		if count[o] < 10 {
			t.Errorf("%d %s prompts, want at least 10", count[o], o)
		}
	}

	// Worded unlike the training data.
	sft, err := GenerateSFT(c, demoSFTN, demoSFTSeed)
	if err != nil {
		t.Fatal(err)
	}
	var train []string
	for _, p := range sft {
		train = append(train, p.Prompt)
	}
	for _, f := range []string{"train.jsonl", "eval.jsonl"} {
		ps, _, err := pairs.Load("../../testdata/pairs/"+f, pairs.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			train = append(train, p.Prompt)
		}
	}
	seen := map[string]string{}
	for _, p := range train {
		for g := range words5(c, p) {
			seen[g] = p
		}
	}
	for _, r := range rs {
		for g := range words5(c, r.customerText()) {
			if p, ok := seen[g]; ok {
				t.Errorf("%s: %q shares %q with the training prompt %q", r.ID, r.customerText(), g, p)
			}
		}
	}
}
