package encode

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/align-dev/align/align/pairs"
	"github.com/align-dev/align/align/prompt"
)

// bytesModel is a model without a chat template whose tokens are bytes,
// BOS 1 and EOS 2; '~' is a character it cannot spell.
type bytesModel struct{}

func (bytesModel) HasChatTemplate() bool { return false }
func (bytesModel) EOS() int32            { return 2 }
func (bytesModel) ChatApply([]prompt.Message, bool) (string, error) {
	return "", errors.New("no template")
}
func (bytesModel) Tokenize(text string, addSpecial, _ bool) ([]int32, prompt.Unspelled, error) {
	var out []int32
	if addSpecial {
		out = append(out, 1)
	}
	var u prompt.Unspelled
	for i := 0; i < len(text); i++ {
		if text[i] == '~' && u.Count == 0 {
			u.First, u.Offset = "~", i
		}
		if text[i] == '~' {
			u.Count++
		}
		out = append(out, int32(text[i]))
	}
	return out, u, nil
}

func newEnc(t *testing.T, maxLength int) *Encoder {
	t.Helper()
	e, err := New(prompt.New(bytesModel{}, false), maxLength)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func seq(n int, from int32) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = from + int32(i)
	}
	return out
}

// Fit keeps BOS and the prompt's end, keeps at least a quarter of the
// budget for the prompt, cuts responses only past what is left, and counts.
func TestFit(t *testing.T) {
	e := newEnc(t, 40)
	var tr Truncation
	p, w, l := e.Fit(seq(10, 1), seq(5, 100), seq(7, 200), &tr)
	if len(p) != 10 || len(w) != 5 || len(l) != 7 || tr != (Truncation{}) {
		t.Errorf("within budget: %d %d %d, %+v", len(p), len(w), len(l), tr)
	}
	p, w, l = e.Fit(seq(30, 1), seq(5, 100), seq(20, 200), &tr)
	if len(p) != 20 || p[0] != 1 || p[19] != 30 || len(w) != 5 || len(l) != 20 || tr != (Truncation{PromptsCut: 1}) {
		t.Errorf("prompt cut: prompt %v, responses %d %d, %+v", p, len(w), len(l), tr)
	}
	tr = Truncation{}
	p, w, l = e.Fit(seq(30, 1), seq(50, 100), nil, &tr)
	if len(p) != 10 || p[0] != 1 || len(w) != 30 || w[29] != 129 || l != nil || tr != (Truncation{1, 1}) {
		t.Errorf("both cut: prompt %d, response %d (ends %d), %+v", len(p), len(w), w[len(w)-1], tr)
	}
	if _, err := New(prompt.New(bytesModel{}, false), MinLength-1); err == nil || !strings.Contains(err.Error(), "--max-length must be at least 8") {
		t.Errorf("max length 7: %v", err)
	}
}

// Pairs and Unpaired encode the plain format (prompt, newline; response and
// EOS), name the pair of an error, and skip and count with skipInvalid.
func TestPairsAndUnpaired(t *testing.T) {
	e := newEnc(t, 64)
	ps := []pairs.Pair{
		{ID: "a", Objective: "tone", Prompt: "hi", Chosen: "yes", Rejected: "no"},
		{ID: "b", Prompt: "hi", Chosen: "y~s", Rejected: "no"},
	}
	ts, _, _, err := e.Pairs(ps, false)
	var pe *PairError
	if !errors.As(err, &pe) || pe.ID != "b" || !strings.Contains(err.Error(), `pair "b": the model's vocabulary cannot spell "~"`) || ts != nil {
		t.Fatalf("unspellable pair: %v", err)
	}
	ts, tr, skipped, err := e.Pairs(ps, true)
	if err != nil || skipped != 1 || len(ts) != 1 || tr != (Truncation{}) {
		t.Fatalf("skip: %v, %d skipped, %d kept", err, skipped, len(ts))
	}
	want := Triple{ID: "a", Objective: "tone", Prompt: []int32{1, 'h', 'i', '\n'}, Chosen: []int32{'y', 'e', 's', 2}, Rejected: []int32{'n', 'o', 2}}
	if !reflect.DeepEqual(ts[0], want) {
		t.Errorf("pair a: %+v, want %+v", ts[0], want)
	}
	us := []pairs.Unpaired{{ID: "u", Prompt: "hi", Completion: "no", Label: false}, {ID: "v", Prompt: "hi", Completion: "~"}}
	if _, _, _, err := e.Unpaired(us, false); err == nil || !strings.Contains(err.Error(), `pair "v"`) {
		t.Errorf("unspellable completion: %v", err)
	}
	ss, _, skipped, err := e.Unpaired(us, true)
	if err != nil || skipped != 1 || len(ss) != 1 || !ss[0].Undesirable || !reflect.DeepEqual(ss[0].Completion, []int32{'n', 'o', 2}) {
		t.Errorf("unpaired: %+v, %d skipped, %v", ss, skipped, err)
	}
	if got := e.Sampled([]int32{'n', 'o'}); !reflect.DeepEqual(got, []int32{'n', 'o', 2}) {
		t.Errorf("Sampled = %v, want the response ended by EOS", got)
	}
}
