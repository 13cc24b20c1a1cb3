package pairs

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode"

	"github.com/align-dev/align/align/jsonl"
)

// Objectives are the objectives of the reference use case, in the order of
// the default β table (safety 0.05, tone 0.1, escalation 0.1, accuracy 0.3).
var Objectives = []string{"safety", "tone", "escalation", "accuracy"}

// LoadOptions control Load.
type LoadOptions struct {
	// SkipInvalid skips bad lines (malformed JSON, missing or empty fields,
	// identical responses, unknown objectives, repeated ids) and counts them
	// in Stats instead of failing.
	SkipInvalid bool
	// Objectives, if not empty, is the set of allowed objectives; a pair
	// without one of them is invalid.
	Objectives []string
	// Dedupe drops a pair whose normalised prompt, chosen and rejected
	// (see Normalize) repeat an earlier pair's, and counts it in
	// Stats.Duplicates. A repeated id on different content is still an
	// error.
	Dedupe bool
	// Unpaired accepts TRL's unpaired examples ("completion" and "label")
	// beside pairs (LoadAll); without it such a record is an error.
	Unpaired bool
}

// Stats describes what Load read.
type Stats struct {
	Read           int            `json:"read"`                  // pairs kept
	Skipped        int            `json:"skipped"`               // invalid lines skipped (SkipInvalid)
	Duplicates     int            `json:"duplicates"`            // repeated pairs dropped (Dedupe)
	Conversational int            `json:"conversational"`        // kept pairs in message-list form
	Desirable      int            `json:"desirable,omitempty"`   // kept unpaired examples labelled true (LoadAll)
	Undesirable    int            `json:"undesirable,omitempty"` // kept unpaired examples labelled false (LoadAll)
	ByObjective    map[string]int `json:"by_objective"`          // kept pairs per objective ("" for none)
	BySource       map[string]int `json:"by_source"`             // kept pairs per source ("" for none)
	Errors         []string       `json:"errors,omitempty"`      // the first few skipped lines' errors, for a report
}

// MaxReportedErrors bounds Stats.Errors.
const MaxReportedErrors = 10

// Load reads pairs from a JSON Lines file ("-" is standard input; ".zst" is
// decompressed) or a Parquet file (".parquet": the hub's preference sets,
// each row read as a JSON line would be; errors then name the row). Errors name the file and line: `train.jsonl:17: missing
// field "chosen"`. A pair without an id gets its ContentID; two pairs with
// the same id are an error, since ids key resumes and splits.
func Load(path string, opt LoadOptions) ([]Pair, Stats, error) {
	opt.Unpaired = false
	d, st, err := LoadAll(path, opt)
	return d.Pairs, st, err
}

// Data is what LoadAll reads: pairs and unpaired examples, each in file
// order.
type Data struct {
	Pairs    []Pair
	Unpaired []Unpaired
}

// LoadAll is Load for files that may also hold TRL's unpaired examples
// (with opt.Unpaired; "prompt" or "messages", "completion", "label"): a
// record with a "label" or "completion" field is one, any other a pair.
// Ids are unique across both.
func LoadAll(path string, opt LoadOptions) (Data, Stats, error) {
	if IsParquet(path) && path != "-" {
		return loadParquet(path, opt)
	}
	rc, err := jsonl.Open(path)
	if err != nil {
		return Data{}, Stats{}, err
	}
	defer rc.Close()
	name := path
	if path == "-" {
		name = "stdin"
	}
	return ReadAll(rc, name, opt)
}

// Read is Load over a reader; name prefixes error messages.
func Read(r io.Reader, name string, opt LoadOptions) ([]Pair, Stats, error) {
	opt.Unpaired = false
	d, st, err := ReadAll(r, name, opt)
	return d.Pairs, st, err
}

// ReadAll is LoadAll over a reader.
func ReadAll(r io.Reader, name string, opt LoadOptions) (Data, Stats, error) {
	jr := jsonl.NewReader(r, name)
	c := newCollector(name, "line", opt)
	for {
		raw, line, err := jr.NextRaw()
		if err == io.EOF {
			break
		}
		if err != nil {
			return Data{}, c.st, err
		}
		if err := c.add(raw, line); err != nil {
			return Data{}, c.st, err
		}
	}
	return Data{c.out, c.outU}, c.st, nil
}

// loadParquet is Load for a Parquet file: each row read as a JSON line
// would be; errors name the file and row.
func loadParquet(path string, opt LoadOptions) (Data, Stats, error) {
	c := newCollector(path, "row", opt)
	err := ParquetRows(path, func(raw []byte, n int) error { return c.add(raw, n) })
	if err != nil {
		return Data{}, c.st, err
	}
	return Data{c.out, c.outU}, c.st, nil
}

// collector validates records one by one and keeps the good ones.
type collector struct {
	name, unit string // file, and "line" or "row"
	opt        LoadOptions
	st         Stats
	out        []Pair
	outU       []Unpaired
	seen       map[string]int // id -> line
	content    map[string]int // dedupe key -> line
}

func newCollector(name, unit string, opt LoadOptions) *collector {
	return &collector{name: name, unit: unit, opt: opt, st: Stats{ByObjective: map[string]int{}, BySource: map[string]int{}},
		seen: map[string]int{}, content: map[string]int{}}
}

// add takes record line (or row); it fails on a bad one unless SkipInvalid.
func (c *collector) add(raw []byte, line int) error {
	name, opt, st, seen, content := c.name, c.opt, &c.st, c.seen, c.content
	if isUnpaired(raw) {
		return c.addUnpaired(raw, line)
	}
	{
		p, err := parse(raw, opt.Objectives)
		if err == nil && opt.Dedupe {
			k := dedupeKey(&p)
			if _, dup := content[k]; dup {
				st.Duplicates++
				return nil
			}
			content[k] = line
		}
		if err == nil {
			if first, dup := seen[p.ID]; dup {
				switch {
				case p.has&hasID == 0:
					err = fmt.Errorf("repeats %s %d (no \"id\": the same content gets the same id)", c.unit, first)
				case opt.Dedupe:
					err = fmt.Errorf("id %q also on %s %d, with other content", p.ID, c.unit, first)
				default:
					err = fmt.Errorf("duplicate id %q (first on %s %d)", p.ID, c.unit, first)
				}
			}
		}
		if err != nil {
			if c.unit == "row" {
				err = fmt.Errorf("%s: row %d: %w", name, line, err)
			} else {
				err = fmt.Errorf("%s:%d: %w", name, line, err)
			}
			if !opt.SkipInvalid {
				return err
			}
			st.Skipped++
			if len(st.Errors) < MaxReportedErrors {
				st.Errors = append(st.Errors, err.Error())
			}
			return nil
		}
		seen[p.ID] = line
		c.out = append(c.out, p)
		st.Read++
		st.ByObjective[p.Objective]++
		st.BySource[p.Source]++
		if p.Conversational() {
			st.Conversational++
		}
	}
	return nil
}

// addUnpaired takes an unpaired record (refused unless opt.Unpaired).
func (c *collector) addUnpaired(raw []byte, line int) error {
	var u Unpaired
	err := errors.New(`an unpaired example ("completion", "label"), where a pair ("chosen", "rejected") is needed (align train --method kto reads unpaired examples)`)
	if c.opt.Unpaired {
		u, err = parseUnpaired(raw, c.opt.Objectives)
	}
	if err == nil && c.opt.Dedupe {
		pr, co := u.Text()
		k := jsonl.RecordID("unpaired", Normalize(pr), Normalize(co), fmt.Sprint(u.Label))
		if _, dup := c.content[k]; dup {
			c.st.Duplicates++
			return nil
		}
		c.content[k] = line
	}
	if err == nil {
		if first, dup := c.seen[u.ID]; dup {
			if !u.hasID {
				err = fmt.Errorf("repeats %s %d (no \"id\": the same content gets the same id)", c.unit, first)
			} else {
				err = fmt.Errorf("duplicate id %q (first on %s %d)", u.ID, c.unit, first)
			}
		}
	}
	if err != nil {
		return c.fail(err, line)
	}
	c.seen[u.ID] = line
	c.outU = append(c.outU, u)
	if u.Label {
		c.st.Desirable++
	} else {
		c.st.Undesirable++
	}
	c.st.ByObjective[u.Objective]++
	c.st.BySource[u.Source]++
	return nil
}

// fail positions a bad record's error and returns it, or with SkipInvalid
// counts it.
func (c *collector) fail(err error, line int) error {
	if c.unit == "row" {
		err = fmt.Errorf("%s: row %d: %w", c.name, line, err)
	} else {
		err = fmt.Errorf("%s:%d: %w", c.name, line, err)
	}
	if !c.opt.SkipInvalid {
		return err
	}
	c.st.Skipped++
	if len(c.st.Errors) < MaxReportedErrors {
		c.st.Errors = append(c.st.Errors, err.Error())
	}
	return nil
}

// Write writes pairs to w as JSON Lines.
func Write(w io.Writer, ps []Pair) error {
	for i := range ps {
		if err := jsonl.Encode(w, ps[i]); err != nil {
			return fmt.Errorf("pair %d (%s): %w", i, ps[i].ID, err)
		}
	}
	return nil
}

// Save writes pairs to path atomically (see jsonl.WriteFileAtomic).
func Save(path string, ps []Pair) error {
	return jsonl.WriteFileAtomic(path, func(w io.Writer) error { return Write(w, ps) })
}

// InEval reports whether the pair with this id belongs to the held-out split:
// a hash of (seed, id) mapped to [0, 1) is below evalFraction. It depends on
// nothing else, so a pair stays on its side when others are added or removed.
func InEval(id string, evalFraction float64, seed uint64) bool {
	var s [8]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	h := sha256.New()
	h.Write(s[:])
	h.Write([]byte(id))
	u := binary.BigEndian.Uint64(h.Sum(nil)[:8]) >> 11 // 53 bits
	return float64(u)/(1<<53) < evalFraction
}

// Split divides pairs into train and eval by InEval, keeping their order.
// The eval share is evalFraction in expectation, not exactly.
func Split(ps []Pair, evalFraction float64, seed uint64) (train, eval []Pair, err error) {
	if evalFraction < 0 || evalFraction > 1 || evalFraction != evalFraction {
		return nil, nil, fmt.Errorf("eval fraction %g not in [0, 1]", evalFraction)
	}
	for _, p := range ps {
		id := p.ID
		if id == "" {
			id = p.ContentID()
		}
		if InEval(id, evalFraction, seed) {
			eval = append(eval, p)
		} else {
			train = append(train, p)
		}
	}
	return train, eval, nil
}

// Normalize is the text form Dedupe compares: lower case, runs of white
// space as one space, no leading or trailing space.
func Normalize(s string) string {
	return strings.Join(strings.FieldsFunc(strings.ToLower(s), unicode.IsSpace), " ")
}

// Dedupe keeps the first of pairs whose normalised (prompt, chosen,
// rejected) are equal, in order, and returns how many it dropped.
func Dedupe(ps []Pair) ([]Pair, int) {
	seen := map[string]bool{}
	out := ps[:0:0]
	for _, p := range ps {
		k := dedupeKey(&p)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, p)
	}
	return out, len(ps) - len(out)
}

// dedupeKey is what Dedupe compares: the normalised prompt, chosen and
// rejected.
func dedupeKey(p *Pair) string {
	pr, ch, rj := p.Text()
	return jsonl.RecordID(Normalize(pr), Normalize(ch), Normalize(rj))
}

// Summary formats Stats for people: one line per objective, sorted.
func (s Stats) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d pairs", s.Read)
	if s.Skipped > 0 {
		fmt.Fprintf(&b, ", %d skipped", s.Skipped)
	}
	if s.Conversational > 0 {
		fmt.Fprintf(&b, ", %d conversational", s.Conversational)
	}
	b.WriteByte('\n')
	ks := make([]string, 0, len(s.ByObjective))
	for k := range s.ByObjective {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	for _, k := range ks {
		name := k
		if name == "" {
			name = "(none)"
		}
		fmt.Fprintf(&b, "  %-12s %d\n", name, s.ByObjective[k])
	}
	return b.String()
}
