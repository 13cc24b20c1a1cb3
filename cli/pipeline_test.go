package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/align-dev/align/align/backend/bedrock/standin"
	"github.com/align-dev/align/align/cost"
)

const (
	llamaID  = "meta.llama3-70b-instruct-v1:0"
	claudeID = "anthropic.claude-3-5-sonnet-20240620-v1:0"
)

// TestHelperProcess is the align command when ALIGN_TEST_HELPER is set: the
// kill-and-resume test runs it as a real subprocess.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("ALIGN_TEST_HELPER") != "1" {
		t.Skip("helper process only")
	}
	var args []string
	if err := json.Unmarshal([]byte(os.Getenv("ALIGN_TEST_ARGS")), &args); err != nil {
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), InterruptSignals...)
	code := Run(ctx, append([]string{"align"}, args...), MainEnv())
	stop()
	os.Exit(code)
}

var (
	reA = regexp.MustCompile(`(?s)<response_A>\n(.*?)\n</response_A>`)
	reB = regexp.MustCompile(`(?s)<response_B>\n(.*?)\n</response_B>`)
)

// shop is a deterministic stand-in model: the T=0.7 answer is friendly
// and right, and the judge prefers it in either order.
func shop(req standin.Request) standin.Response {
	last := req.Messages[0].Text
	switch req.ToolName {
	case "record_verdict":
		w := "B"
		if m := reA.FindStringSubmatch(last); m != nil && strings.Contains(m[1], "Happy") {
			w = "A"
		}
		if m := reB.FindStringSubmatch(last); m != nil && strings.Contains(m[1], "Happy") && w == "A" {
			w = "tie"
		}
		sa, sb := 4, 2
		if w == "B" {
			sa, sb = 2, 4
		} else if w == "tie" {
			sa = 2
		}
		sc := func(n int) string {
			return fmt.Sprintf(`{"tone":%d,"accuracy":%d,"helpfulness":%d,"safety":%d}`, n, n, n, n)
		}
		return standin.Response{ToolInput: json.RawMessage(fmt.Sprintf(`{"winner":%q,"scores":{"A":%s,"B":%s},"reasoning":"r","objective":"tone"}`, w, sc(sa), sc(sb)))}
	case "record_screening":
		return standin.Response{ToolInput: json.RawMessage(`{"decision":"approve","rule":0,"reason":"fine"}`)}
	}
	if req.Temperature != nil && *req.Temperature < 0.8 {
		return standin.Response{Text: "Happy to help! About " + last + ": Naruto has 72 volumes."}
	}
	return standin.Response{Text: "About " + last + ": Naruto has 65 volumes."}
}

func awsEnv(t *testing.T, s *standin.Server) {
	dir := t.TempDir()
	cfg := s.Config()
	for k, v := range map[string]string{
		"AWS_ACCESS_KEY_ID": cfg.AccessKeyID, "AWS_SECRET_ACCESS_KEY": cfg.SecretAccessKey, "AWS_REGION": cfg.Region,
		"AWS_CONFIG_FILE": filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE": filepath.Join(dir, "credentials"),
		"AWS_EC2_METADATA_DISABLED": "true", "AWS_BEARER_TOKEN_BEDROCK": "", "AWS_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": "",
		"AWS_PROFILE": "", "AWS_SESSION_TOKEN": "",
	} {
		t.Setenv(k, v)
		if v == "" {
			os.Unsetenv(k)
		}
	}
}

func writeCLIPrompts(t *testing.T, path string, n, pad int) {
	t.Helper()
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		text := fmt.Sprintf("question %d about manga%s", i, strings.Repeat(" please", pad))
		fmt.Fprintf(&b, `{"id":"q%04d","prompt":%q,"objective":"tone"}`+"\n", i, text)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func lines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	sort.Strings(out)
	return out
}

func fast(s *standin.Server) []string {
	return []string{"--endpoint", s.URL(), "--max-backoff", "5ms", "--attempt-timeout", "5s", "--workers", "4"}
}

// startHelper runs the align command with args as a real subprocess (see
// TestHelperProcess); exited receives cmd.Wait's result.
func startHelper(t *testing.T, args []string) (cmd *exec.Cmd, stderr *bytes.Buffer, exited <-chan error) {
	t.Helper()
	a, _ := json.Marshal(args)
	cmd = exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "ALIGN_TEST_HELPER=1", "ALIGN_TEST_ARGS="+string(a))
	stderr = &bytes.Buffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := make(chan error, 1)
	go func() { ch <- cmd.Wait() }()
	return cmd, stderr, ch
}

// runKilled runs args in a subprocess and SIGKILLs it once out holds at
// least killAt records; it reports whether the kill happened before the
// process finished on its own.
func runKilled(t *testing.T, args []string, out string, killAt int) bool {
	t.Helper()
	cmd, stderr, exited := startHelper(t, args)
	for {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("%v: %v\n%s", args, err, stderr.String())
			}
			return false
		case <-time.After(2 * time.Millisecond):
		}
		data, _ := os.ReadFile(out)
		if bytes.Count(data, []byte{'\n'}) >= killAt {
			cmd.Process.Kill()
			<-exited
			return true
		}
	}
}

// TestKillAndResume kills collect and rank subprocesses with SIGKILL at
// random points, reruns them, and compares the final files with an
// uninterrupted run.
func TestKillAndResume(t *testing.T) {
	s := standin.Start(standin.Config{}, func(req standin.Request) standin.Response {
		time.Sleep(time.Millisecond) // leave the killer time to act
		return shop(req)
	})
	defer s.Close()
	awsEnv(t, s)
	ref, work := t.TempDir(), t.TempDir()
	prompts := filepath.Join(ref, "prompts.jsonl")
	writeCLIPrompts(t, prompts, 300, 0)
	collect := func(dir string) []string {
		return append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", filepath.Join(dir, "cand.jsonl")}, fast(s)...)
	}
	rank := func(dir string) []string {
		return append([]string{"rank", "--in", filepath.Join(dir, "cand.jsonl"), "--judge", "bedrock:" + claudeID, "--out", filepath.Join(dir, "pairs.jsonl")}, fast(s)...)
	}
	for _, args := range [][]string{collect(ref), rank(ref)} {
		if code, _, errs := run(t, "", args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
	}
	r := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for _, stage := range []struct {
		args func(string) []string
		out  string
	}{{collect, "cand.jsonl"}, {rank, "pairs.jsonl"}} {
		out := filepath.Join(work, stage.out)
		for k := 0; k < 3; k++ {
			at := len(lines(t, out)) + 10 + r.IntN(60)
			if runKilled(t, stage.args(work), out, at) {
				kills++
			}
		}
		if code, _, errs := run(t, "", stage.args(work)...); code != 0 {
			t.Fatalf("final %s: exit %d: %s", stage.out, code, errs)
		}
	}
	t.Logf("%d kills", kills)
	if kills == 0 {
		t.Error("no run was killed: the test checked nothing")
	}
	for _, f := range []string{"cand.jsonl", "cand.dead.jsonl", "pairs.jsonl", "pairs.ties.jsonl", "pairs.dead.jsonl"} {
		want, got := lines(t, filepath.Join(ref, f)), lines(t, filepath.Join(work, f))
		if strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Errorf("%s: %d lines after kills, %d uninterrupted, contents differ", f, len(got), len(want))
		}
	}
	if n := len(lines(t, filepath.Join(ref, "pairs.jsonl"))); n != 300 {
		t.Errorf("reference run made %d pairs, want 300", n)
	}
}

// TestPipes runs collect --out - | rank --in - --out - | screen --in - in
// process with buffers.
func TestPipes(t *testing.T) {
	s := standin.Start(standin.Config{}, shop)
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writeCLIPrompts(t, prompts, 40, 0)
	catalog := "../testdata/catalog.json"
	code, cand, errs := run(t, "", append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", "-",
		"--dead-letter", filepath.Join(dir, "c.dead.jsonl")}, fast(s)...)...)
	if code != 0 {
		t.Fatalf("collect: %d %s", code, errs)
	}
	code, pairs, errs := run(t, cand, "rank", "--in", "-", "--judge", "rules:"+catalog, "--out", "-",
		"--ties", filepath.Join(dir, "ties.jsonl"), "--dead-letter", filepath.Join(dir, "r.dead.jsonl"))
	if code != 0 {
		t.Fatalf("rank: %d %s", code, errs)
	}
	code, clean, errs := run(t, pairs, "screen", "--in", "-", "--judge", "rules:"+catalog, "--out", "-",
		"--removed", filepath.Join(dir, "removed.jsonl"), "--dead-letter", filepath.Join(dir, "s.dead.jsonl"))
	if code != 0 {
		t.Fatalf("screen: %d %s", code, errs)
	}
	nc, np, nk := strings.Count(cand, "\n"), strings.Count(pairs, "\n"), strings.Count(clean, "\n")
	ties, removed := len(lines(t, filepath.Join(dir, "ties.jsonl"))), len(lines(t, filepath.Join(dir, "removed.jsonl")))
	t.Logf("%d candidates → %d pairs + %d ties → %d kept + %d removed\n%s", nc, np, ties, nk, removed, errs)
	if nc != 40 || np+ties != 40 || nk+removed != np || nk == 0 {
		t.Errorf("lost records: %d candidates, %d pairs, %d ties, %d kept, %d removed", nc, np, ties, nk, removed)
	}
	if !strings.Contains(errs, "approved") {
		t.Errorf("no summary table: %s", errs)
	}
}

// TestCLIMaxUSD: collect stops with exit code 3 before crossing --max-usd.
func TestCLIMaxUSD(t *testing.T) {
	s := standin.Start(standin.Config{}, shop)
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	prompts, out := filepath.Join(dir, "p.jsonl"), filepath.Join(dir, "c.jsonl")
	writeCLIPrompts(t, prompts, 100, 0)
	code, _, errs := run(t, "", append([]string{"collect", "--prompts", prompts, "--generator", "bedrock:" + llamaID, "--out", out, "--max-usd", "0.01"}, fast(s)...)...)
	if code != ExitBudget || !strings.Contains(errs, "budget reached") {
		t.Fatalf("exit %d, want %d: %s", code, ExitBudget, errs)
	}
	l, err := cost.OpenLedger(filepath.Join(dir, "c.ledger.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if usd := l.Total().USD; usd > 0.01 || usd == 0 {
		t.Errorf("spent $%.4f with --max-usd 0.01", usd)
	}
}

// TestDryRunReferencePlan prints the estimate for the reference plan:
// 3,000 prompts (about 150 tokens each), Llama 3 70B generating two
// responses each, Claude 3.5 Sonnet judging both orders. Nothing is called.
func TestDryRunReferencePlan(t *testing.T) {
	s := standin.Start(standin.Config{}, shop)
	defer s.Close()
	awsEnv(t, s)
	dir := t.TempDir()
	prompts := filepath.Join(dir, "p.jsonl")
	writeCLIPrompts(t, prompts, 3000, 82) // ~600 characters: ~150 tokens
	code, _, errs := run(t, "", "collect", "--prompts", prompts, "--generator", "bedrock:"+llamaID, "--judge", "bedrock:"+claudeID,
		"--out", filepath.Join(dir, "c.jsonl"), "--dry-run", "--endpoint", s.URL())
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := s.Counts().Requests["converse"]; n != 0 {
		t.Errorf("dry run made %d calls", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "c.jsonl")); err == nil {
		t.Error("dry run wrote the output")
	}
	if !strings.Contains(errs, "total: $") || !strings.Contains(errs, "6000") {
		t.Errorf("estimate: %s", errs)
	}
	ref := cost.DefaultPrices().Estimate(cost.ReferencePlan(3000, llamaID, claudeID, true, false))
	t.Logf("align collect --dry-run:\n%scost.ReferencePlan (fixed token sizes): $%.2f (%+v)", errs, ref.TotalUSD, ref.Lines)
}
