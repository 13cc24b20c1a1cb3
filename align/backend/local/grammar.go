package local

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// GrammarFromSchema returns a GBNF grammar (root rule "root") whose every
// sentence is a JSON document satisfying schema, for the subset of JSON
// Schema that structured calls use: objects (required properties only, in
// the order "required" lists them, no white space), strings (with "enum",
// or free text of 1..stringLimit characters that starts with a non-space
// and holds no quote, backslash or control character), integers (a
// single-digit range when minimum and maximum allow, else up to six
// digits), numbers, booleans and arrays of up to eight items.
//
// The grammar bounds the output's length, so a generation with enough
// tokens always ends in a complete document, even from a model that has
// learnt nothing.
func GrammarFromSchema(schema json.RawMessage, stringLimit int) (string, error) {
	if stringLimit < 1 {
		stringLimit = 160
	}
	var s map[string]any
	if err := json.Unmarshal(schema, &s); err != nil {
		return "", fmt.Errorf("schema: %w", err)
	}
	g := &grammar{limit: stringLimit}
	root, err := g.rule(s, "root")
	if err != nil {
		return "", err
	}
	if root != "root" {
		g.add("root", root)
	}
	return strings.Join(g.rules, "\n") + "\n", nil
}

type grammar struct {
	rules []string
	n     int
	limit int
}

func (g *grammar) add(name, body string) { g.rules = append(g.rules, name+" ::= "+body) }

func (g *grammar) fresh() string { g.n++; return fmt.Sprintf("r%d", g.n) }

// lit is a GBNF literal matching s exactly.
func lit(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

func num(v any) (int, bool) {
	f, ok := v.(float64)
	return int(f), ok
}

// rule defines a rule for s and returns the expression (a rule name) that
// matches it. name is the name to define, when the caller wants one.
func (g *grammar) rule(s map[string]any, name string) (string, error) {
	if name == "" {
		name = g.fresh()
	}
	typ, _ := s["type"].(string)
	if enum, ok := s["enum"].([]any); ok && len(enum) > 0 {
		var alts []string
		for _, e := range enum {
			b, err := json.Marshal(e)
			if err != nil {
				return "", err
			}
			alts = append(alts, lit(string(b)))
		}
		g.add(name, strings.Join(alts, " | "))
		return name, nil
	}
	switch typ {
	case "object":
		props, _ := s["properties"].(map[string]any)
		var keys []string
		if req, ok := s["required"].([]any); ok {
			for _, k := range req {
				if ks, ok := k.(string); ok {
					keys = append(keys, ks)
				}
			}
		} else {
			for k := range props {
				keys = append(keys, k)
			}
			sort.Strings(keys)
		}
		parts := []string{lit("{")}
		for i, k := range keys {
			ps, ok := props[k].(map[string]any)
			if !ok {
				return "", fmt.Errorf("schema: property %q has no schema", k)
			}
			sub, err := g.rule(ps, "")
			if err != nil {
				return "", fmt.Errorf("%s: %w", k, err)
			}
			kl, _ := json.Marshal(k)
			sep := ""
			if i > 0 {
				sep = ","
			}
			parts = append(parts, lit(sep+string(kl)+":"), sub)
		}
		parts = append(parts, lit("}"))
		g.add(name, strings.Join(parts, " "))
	case "string":
		g.add(name, fmt.Sprintf(`"\"" [^"\\\x7F\x00-\x20] [^"\\\x7F\x00-\x1F]{0,%d} "\""`, g.limit-1))
	case "integer":
		lo, hasLo := num(s["minimum"])
		hi, hasHi := num(s["maximum"])
		switch {
		case hasLo && hasHi && lo >= 0 && hi <= 9 && lo <= hi:
			g.add(name, fmt.Sprintf("[%d-%d]", lo, hi))
		case hasLo && lo >= 0:
			g.add(name, `"0" | [1-9] [0-9]{0,5}`)
		default:
			g.add(name, `"-"? ("0" | [1-9] [0-9]{0,5})`)
		}
	case "number":
		g.add(name, `"-"? ("0" | [1-9] [0-9]{0,5}) ("." [0-9]{1,6})?`)
	case "boolean":
		g.add(name, `"true" | "false"`)
	case "array":
		items, _ := s["items"].(map[string]any)
		if items == nil {
			return "", fmt.Errorf("schema: array without items")
		}
		sub, err := g.rule(items, "")
		if err != nil {
			return "", err
		}
		g.add(name, fmt.Sprintf(`"[" (%s ("," %s){0,7})? "]"`, sub, sub))
	default:
		return "", fmt.Errorf("schema: type %q is not supported", typ)
	}
	return name, nil
}
