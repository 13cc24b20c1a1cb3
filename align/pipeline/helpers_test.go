package pipeline

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/align-dev/align/align/backend/bedrock/standin"
	"github.com/align-dev/align/align/backend/pace"
)

const (
	llama  = "meta.llama3-70b-instruct-v1:0"
	claude = "anthropic.claude-3-5-sonnet-20240620-v1:0"
)

func isolate(t testing.TB) {
	dir := t.TempDir()
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_PROFILE", "AWS_BEARER_TOKEN_BEDROCK"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

func startStandin(t *testing.T, m standin.Model) *standin.Server {
	t.Helper()
	isolate(t)
	s := standin.Start(standin.Config{JobPolls: 2}, m)
	t.Cleanup(s.Close)
	return s
}

// fastOpen are options for the stand-in: short back-off and timeouts.
func fastOpen(s *standin.Server) OpenOptions {
	cfg := s.Config()
	return OpenOptions{
		AWSConfig:      &aws.Config{Region: cfg.Region, Credentials: credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")},
		Endpoint:       s.URL(),
		MaxAttempts:    8,
		MaxBackoff:     5 * time.Millisecond,
		AttemptTimeout: 500 * time.Millisecond,
		CallTimeout:    20 * time.Second,
		Limits:         pace.Limits{BackoffMin: time.Millisecond, BackoffMax: 5 * time.Millisecond},
	}
}

func mustOpen(t *testing.T, spec string, o OpenOptions) *Backend {
	t.Helper()
	b, err := Open(context.Background(), spec, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

var (
	respA = regexp.MustCompile(`(?s)<response_A>\n(.*?)\n</response_A>`)
	respB = regexp.MustCompile(`(?s)<response_B>\n(.*?)\n</response_B>`)
	chose = regexp.MustCompile(`(?s)<chosen>\n(.*?)\n</chosen>`)
)

func lastUser(req standin.Request) string {
	last := ""
	for _, m := range req.Messages {
		if m.Role == "user" {
			last = m.Text
		}
	}
	return last
}

// shopModel is a deterministic fake: as a generator it answers with the
// prompt and its temperature (the T=0.7 answer is the friendly, right one);
// as a judge it prefers the answer that says "Happy to help", in either
// order, says tie for prompts marked TIE and answers without its tool for
// prompts marked POISON; as a screener it removes answers marked REMOVE.
func shopModel(req standin.Request) standin.Response {
	switch req.ToolName {
	case "record_verdict":
		text := lastUser(req)
		if len(req.Messages) > 1 { // a repair: the first user turn holds the pair
			text = req.Messages[0].Text
		}
		a, b := "", ""
		if m := respA.FindStringSubmatch(text); m != nil {
			a = m[1]
		}
		if m := respB.FindStringSubmatch(text); m != nil {
			b = m[1]
		}
		if strings.Contains(a+b, "POISON") {
			return standin.Response{Text: "I cannot decide."}
		}
		w := "tie"
		switch {
		case strings.Contains(a+b, "TIE"):
		case strings.Contains(a, "Happy to help"):
			w = "A"
		case strings.Contains(b, "Happy to help"):
			w = "B"
		}
		return standin.Response{ToolInput: verdictJSON(w)}
	case "record_screening":
		m := chose.FindStringSubmatch(req.Messages[0].Text)
		if m != nil && strings.Contains(m[1], "REMOVE") {
			return standin.Response{ToolInput: json.RawMessage(`{"decision":"remove","rule":2,"reason":"invents a fact"}`)}
		}
		return standin.Response{ToolInput: json.RawMessage(`{"decision":"approve","rule":0,"reason":"fine"}`)}
	}
	p := lastUser(req)
	if req.Temperature != nil && *req.Temperature < 0.8 {
		return standin.Response{Text: "Happy to help! About " + p + ": Naruto has 72 volumes."}
	}
	return standin.Response{Text: "Re " + p + ": Naruto has 65 volumes."}
}

func verdictJSON(w string) json.RawMessage {
	sa, sb := 4, 2
	switch w {
	case "B":
		sa, sb = 2, 4
	case "tie":
		sa, sb = 3, 3
	}
	s := func(n int) string {
		return fmt.Sprintf(`{"tone":%d,"accuracy":%d,"helpfulness":%d,"safety":%d}`, n, n, n, n)
	}
	return json.RawMessage(fmt.Sprintf(`{"winner":%q,"scores":{"A":%s,"B":%s},"reasoning":"compared","objective":"tone"}`, w, s(sa), s(sb)))
}

// writePrompts writes n prompts; every 50th is POISON (its judge never
// answers), every 20th (offset 1) is TIE, every 25th (offset 3) REMOVE.
func writePrompts(t testing.TB, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("question %d about manga", i)
		switch {
		case i%50 == 0:
			text += " POISON"
		case i%20 == 1:
			text += " TIE"
		case i%25 == 3:
			text += " REMOVE"
		}
		fmt.Fprintf(w, `{"id":"q%04d","prompt":%q,"objective":"tone"}`+"\n", i, text)
	}
	w.Flush()
	f.Close()
}

// ids reads the "id" of every line of a JSONL file.
func ids(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		id, err := idOf(json.RawMessage(line))
		if err != nil {
			t.Fatalf("%s: %v: %q", path, err, line)
		}
		out = append(out, id)
	}
	return out
}

// sortedLines returns a file's lines, sorted.
func sortedLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

// field reads a string field of every line of a JSONL file.
func field(t *testing.T, path, key string) []string {
	t.Helper()
	var out []string
	for _, l := range sortedLines(t, path) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatal(err)
		}
		s, _ := m[key].(string)
		out = append(out, s)
	}
	return out
}

func noDups(t *testing.T, what string, xs ...[]string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	for _, x := range xs {
		for _, id := range x {
			if seen[id] {
				t.Errorf("%s: id %s appears twice", what, id)
			}
			seen[id] = true
		}
	}
	return seen
}
