package backend

import (
	"fmt"
	"net/url"
	"strings"
)

// Kind names a family of backends.
type Kind string

// Backend kinds a spec can name.
const (
	KindBedrock Kind = "bedrock" // bedrock:<model-id>
	KindOpenAI  Kind = "openai"  // openai:<base-url>[#model]
	KindLocal   Kind = "local"   // local:<file.gguf>
	KindRules   Kind = "rules"   // rules:<catalog.json>
)

// Spec is a parsed backend spec.
type Spec struct {
	Kind   Kind
	Target string // model id, base URL, or file path
	Model  string // openai only: the model name after '#', may be empty
}

// String returns the spec in the form ParseSpec reads.
func (s Spec) String() string {
	out := string(s.Kind) + ":" + s.Target
	if s.Kind == KindOpenAI && s.Model != "" {
		out += "#" + s.Model
	}
	return out
}

// ParseSpec parses a backend spec: "bedrock:<model-id>",
// "openai:<base-url>[#model]", "local:<file.gguf>" or "rules:<catalog.json>".
// The kind is split at the first ':' so model ids and URLs may contain ':'.
// It checks form only; it opens no file and contacts no server.
func ParseSpec(spec string) (Spec, error) {
	kind, target, ok := strings.Cut(spec, ":")
	if !ok {
		return Spec{}, fmt.Errorf("backend spec %q: want kind:target (bedrock, openai, local, rules)", spec)
	}
	if target == "" {
		return Spec{}, fmt.Errorf("backend spec %q: empty target", spec)
	}
	if strings.TrimSpace(target) != target {
		return Spec{}, fmt.Errorf("backend spec %q: target has surrounding space", spec)
	}
	s := Spec{Kind: Kind(kind), Target: target}
	switch s.Kind {
	case KindBedrock:
		if strings.ContainsAny(target, " \t\n") {
			return Spec{}, fmt.Errorf("backend spec %q: model id contains space", spec)
		}
	case KindOpenAI:
		base, model, _ := strings.Cut(target, "#")
		u, err := url.Parse(base)
		if err != nil {
			return Spec{}, fmt.Errorf("backend spec %q: %w", spec, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return Spec{}, fmt.Errorf("backend spec %q: want an http or https base url", spec)
		}
		s.Target, s.Model = base, model
	case KindLocal:
		if !strings.HasSuffix(strings.ToLower(target), ".gguf") {
			return Spec{}, fmt.Errorf("backend spec %q: local backend wants a .gguf file", spec)
		}
	case KindRules:
		if !strings.HasSuffix(strings.ToLower(target), ".json") {
			return Spec{}, fmt.Errorf("backend spec %q: rules backend wants a .json catalog", spec)
		}
	default:
		return Spec{}, fmt.Errorf("backend spec %q: unknown kind %q (want bedrock, openai, local, rules)", spec, kind)
	}
	return s, nil
}
