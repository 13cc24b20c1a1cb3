package engine

import (
	"strings"
	"testing"
)

func TestParseAdapter(t *testing.T) {
	for _, c := range []struct {
		spec, path string
		scale      float32
		err        string
	}{
		{spec: "a.gguf", path: "a.gguf", scale: 1},
		{spec: "a.gguf:0.5", path: "a.gguf", scale: 0.5},
		{spec: "a.gguf:-1", path: "a.gguf", scale: -1},
		{spec: "a.gguf:1e40", err: `scale "1e40" is out of range`}, // issue 21: said "is not a number"
		{spec: "a.gguf:-1e40", err: `scale "-1e40" is out of range`},
		{spec: "a.gguf:Inf", err: "is not a finite number"},
		{spec: "a.gguf:NaN", err: "is not a finite number"},
		{spec: "a.gguf:abc", err: `scale "abc" is not a number`},
		{spec: "a.gguf:", err: "missing scale"},
		{spec: "", err: "empty adapter"},
	} {
		a, err := ParseAdapter(c.spec)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: err = %v, want %q", c.spec, err, c.err)
			}
			continue
		}
		if err != nil || a.Path != c.path || a.Scale != c.scale {
			t.Errorf("%q: %+v, %v", c.spec, a, err)
		}
	}
}
