package pairs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"

	"github.com/align-dev/align/align/jsonl"
)

// object writes one JSON object with its fields in the order they are
// added: the records' own forms (Pair, Unpaired) put the known fields first
// in a fixed order, then the extra fields sorted by name.
type object struct {
	buf bytes.Buffer
	n   int
	err error
}

// field appends "k": v (the first error sticks).
func (o *object) field(k string, v any) {
	if o.err != nil {
		return
	}
	b, err := jsonl.Marshal(v)
	if err != nil {
		o.err = fmt.Errorf("field %q: %w", k, err)
		return
	}
	if o.n == 0 {
		o.buf.WriteByte('{')
	} else {
		o.buf.WriteByte(',')
	}
	o.n++
	kb, _ := jsonl.Marshal(k)
	o.buf.Write(bytes.TrimSpace(kb))
	o.buf.WriteByte(':')
	o.buf.Write(bytes.TrimSpace(b))
}

// extra appends the fields of extra whose names are not in known, sorted by
// name; each must be valid JSON.
func (o *object) extra(extra map[string]json.RawMessage, known []string) {
	ks := make([]string, 0, len(extra))
	for k := range extra {
		if !slices.Contains(known, k) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	for _, k := range ks {
		if o.err == nil && !json.Valid(extra[k]) {
			o.err = fmt.Errorf("extra field %q: invalid JSON", k)
		}
		o.field(k, json.RawMessage(extra[k]))
	}
}

// bytes is the finished object.
func (o *object) bytes() ([]byte, error) {
	if o.err != nil {
		return nil, o.err
	}
	if o.n == 0 {
		o.buf.WriteByte('{')
	}
	o.buf.WriteByte('}')
	return o.buf.Bytes(), nil
}
