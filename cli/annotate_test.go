package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/align-dev/align/align/pairs"
)

func annotateCandidates(t *testing.T, dir string, n int) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"id":"c%d","prompt_id":"p%d","prompt":"Is volume %d out?","objective":"accuracy","generator":"g","responses":[{"text":"yes, volume %d"},{"text":"no idea"}]}`+"\n", i, i, i, i)
	}
	p := filepath.Join(dir, "cand.jsonl")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Refusals happen before anything is read or written: one line, exit 2.
func TestAnnotateServeRefusals(t *testing.T) {
	dir := t.TempDir()
	in := annotateCandidates(t, dir, 2)
	out := filepath.Join(dir, "labels.jsonl")
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"public address without tokens", []string{"--in", in, "--out", out, "--addr", "0.0.0.0:8080"}, "not a loopback address"},
		{"all interfaces without tokens", []string{"--in", in, "--out", out, "--addr", ":8080"}, "not a loopback address"},
		{"more per item than annotators", []string{"--in", in, "--out", out, "--annotators", "ana,ben", "--per-item", "3"}, "--per-item 3"},
		{"labels over the input", []string{"--in", in, "--out", in}, "refusing to write over what is read"},
		{"labels to stdout", []string{"--in", in, "--out", "-"}, "--out -"},
		{"bad name", []string{"--in", in, "--out", out, "--annotators", "ana,b c"}, "annotator name"},
		{"repeated name", []string{"--in", in, "--out", out, "--annotators", "ana,ana"}, "twice"},
		{"bad address", []string{"--in", in, "--out", out, "--addr", "8080"}, "--addr"},
		{"zero per item", []string{"--in", in, "--out", out, "--per-item", "0"}, "--per-item"},
		{"no input", []string{"--out", out}, "--in"},
	} {
		code, stdout, errs := run(t, "", append([]string{"annotate", "serve"}, c.args...)...)
		if code != ExitUsage || !strings.Contains(errs, c.want) || stdout != "" || strings.Count(errs, "\n") != 1 {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and one line with %q", c.name, code, stdout, errs, c.want)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("a refused serve created the labels file")
	}
}

// serve prints NAME URL lines once it listens; the URLs work with the API;
// an interrupt stops it with exit 0; stats and export read what it wrote.
func TestAnnotateServeStatsExport(t *testing.T) {
	dir := t.TempDir()
	in := annotateCandidates(t, dir, 4)
	labels := filepath.Join(dir, "labels.jsonl")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	var errb strings.Builder
	done := make(chan int, 1)
	go func() {
		code := Run(ctx, []string{"align", "annotate", "serve", "--in", in, "--out", labels, "--addr", "127.0.0.1:0",
			"--annotators", "ana,ben", "--per-item", "2"}, Env{Stdin: strings.NewReader(""), Stdout: pw, Stderr: &errb})
		pw.Close()
		done <- code
	}()
	urls := map[string]string{}
	sc := bufio.NewScanner(pr)
	for len(urls) < 2 && sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || !strings.HasPrefix(f[1], "http://127.0.0.1:") || !strings.Contains(f[1], "?token=") {
			t.Fatalf("stdout line %q: want NAME URL", sc.Text())
		}
		urls[f[0]] = f[1]
	}
	go io.Copy(io.Discard, pr)
	if urls["ana"] == "" || urls["ben"] == "" {
		t.Fatalf("URLs %v", urls)
	}
	choices := map[string]string{"ana": "a", "ben": "a"}
	for name, u := range urls {
		i := strings.Index(u, "/?token=")
		origin, token := u[:i], u[i+len("/?token="):]
		for {
			req, _ := http.NewRequest("GET", origin+"/api/next", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var v struct {
				ItemID    string    `json:"item_id"`
				Responses [2]string `json:"responses"`
			}
			json.NewDecoder(resp.Body).Decode(&v)
			resp.Body.Close()
			if resp.StatusCode == 204 {
				break
			}
			// both prefer "yes, volume N", wherever it is shown
			choice := choices[name]
			if !strings.HasPrefix(v.Responses[0], "yes") {
				choice = "b"
			}
			body := fmt.Sprintf(`{"item_id":%q,"choice":%q}`, v.ItemID, choice)
			req, _ = http.NewRequest("POST", origin+"/api/label", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s: POST %s: %d", name, body, resp.StatusCode)
			}
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Fatalf("serve exit %d after an interrupt, want 0: %s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop on interrupt")
	}
	if !strings.Contains(errb.String(), "8 labels this run") {
		t.Errorf("serve stderr %q", errb.String())
	}

	code, stdout, errs := run(t, "", "annotate", "stats", "--labels", labels, "--json", "--bootstrap", "50")
	if code != 0 {
		t.Fatalf("stats: exit %d: %s", code, errs)
	}
	var rep struct {
		Standing int `json:"standing"`
		Pairs    []struct {
			Items int `json:"items"`
		} `json:"pairs"`
		Majority [4]int `json:"majority"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("stats --json: %v\n%s", err, stdout)
	}
	if rep.Standing != 8 || len(rep.Pairs) != 1 || rep.Pairs[0].Items != 4 || rep.Majority[0] != 4 {
		t.Errorf("stats %+v: want 8 labels, ana–ben over 4 items, 4 majorities for the first response", rep)
	}
	if code, stdout, _ := run(t, "", "annotate", "stats", "--labels", labels); code != 0 || !strings.Contains(stdout, "Cohen's kappa") {
		t.Errorf("stats text: exit %d\n%s", code, stdout)
	}

	out := filepath.Join(dir, "human.jsonl")
	code, _, errs = run(t, "", "annotate", "export", "--labels", labels, "--out", out)
	if code != 0 || !strings.Contains(errs, "4 pairs") {
		t.Fatalf("export: exit %d: %s", code, errs)
	}
	ps, _, err := pairs.Load(out, pairs.LoadOptions{Objectives: pairs.Objectives})
	if err != nil || len(ps) != 4 {
		t.Fatalf("exported pairs: %d, %v", len(ps), err)
	}
	for _, p := range ps {
		if p.Source != "human" || !strings.HasPrefix(p.Chosen, "yes") || p.Rejected != "no idea" {
			t.Errorf("pair %+v", p)
		}
	}
	if code, _, errs := run(t, "", "annotate", "export", "--labels", labels, "--out", labels); code != ExitUsage || !strings.Contains(errs, "refusing") {
		t.Errorf("export over the labels: exit %d %q", code, errs)
	}
	if code, _, errs := run(t, "", "annotate", "stats", "--labels", filepath.Join(dir, "none.jsonl")); code != ExitError || !strings.Contains(errs, "none.jsonl") {
		t.Errorf("stats of a missing file: exit %d %q", code, errs)
	}
}
