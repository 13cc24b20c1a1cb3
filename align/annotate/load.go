package annotate

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/align-dev/align/align/jsonl"
)

// LoadConfig configures Load, the load benchmark: simulated annotators
// label synthetic items through the HTTP API of a server subprocess, which
// is killed (SIGKILL) once at a random moment and restarted with the same
// flags.
type LoadConfig struct {
	Items      int     // synthetic items; default 2000
	Annotators int     // concurrent simulated annotators; default 20
	PerItem    int     // default 2
	Kill       bool    // kill -9 and restart the server once, at a random moment
	Seed       uint64  // choices, the kill moment
	SkipRate   float64 // share of skips; default 0.05 (<0: none)
	UndoRate   float64 // share of labels undone and made again; default 0.02 (<0: none)
	Dir        string  // work folder for the items and labels files
	// Command returns the command that runs `annotate serve` with args.
	Command func(args []string) *exec.Cmd
	Log     io.Writer // progress lines; nil: none
	Timeout time.Duration
}

// LoadReport is what Load measured and checked.
type LoadReport struct {
	Items      int     `json:"items"`
	Annotators int     `json:"annotators"`
	PerItem    int     `json:"per_item"`
	Labels     int64   `json:"labels"` // label requests answered 200 (skips included, retries once)
	Undos      int64   `json:"undos"`
	Conflicts  int64   `json:"conflicts"` // 409 answers (an item lost to others after a restart)
	Retries    int64   `json:"retries"`   // attempts repeated after a connection error or 5xx
	Waits      int64   `json:"waits"`     // 204s with Retry-After: items this annotator may get are held by others
	Late       int64   `json:"late"`      // labels made in the closing sweep (items reopened by an undo after others finished)
	Seconds    float64 `json:"seconds"`
	LabelsPerS float64 `json:"labels_per_second"`
	LabelP50MS float64 `json:"label_p50_ms"`
	LabelP99MS float64 `json:"label_p99_ms"`
	NextP50MS  float64 `json:"next_p50_ms"`
	NextP99MS  float64 `json:"next_p99_ms"`
	KilledAt   int64   `json:"killed_after_labels"` // labels answered before the kill (0: no kill)
	RestartMS  float64 `json:"restart_ms"`          // from the kill to the restarted server listening
	LabelsFile string  `json:"labels_file"`
}

// ack is a label the client was told is recorded.
type ack struct{ annotator, item, choice string }

// serverProc is a running server subprocess.
type serverProc struct {
	cmd  *exec.Cmd
	urls map[string]string
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed
}

func startServer(ctx context.Context, cfg *LoadConfig, args []string, names []string, stderr io.Writer) (*serverProc, error) {
	cmd := cfg.Command(args)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &serverProc{cmd: cmd, urls: map[string]string{}, done: make(chan struct{})}
	lines := make(chan string)
	quit := make(chan struct{}) // closed when the URLs are read: later lines are drained
	defer close(quit)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-quit:
			}
		}
		close(lines)
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	timeout := time.After(60 * time.Second)
	for len(p.urls) < len(names) {
		select {
		case l, ok := <-lines:
			if !ok {
				<-p.done
				return nil, fmt.Errorf("server exited before printing its URLs: %v", p.err)
			}
			if f := strings.Fields(l); len(f) == 2 {
				p.urls[f[0]] = f[1]
			}
		case <-timeout:
			p.kill()
			return nil, errors.New("server printed no URLs within 60s")
		case <-ctx.Done():
			p.kill()
			return nil, ctx.Err()
		}
	}
	return p, nil
}

// kill sends SIGKILL (if the process still runs) and waits for it.
func (p *serverProc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *serverProc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		p.kill()
		return errors.New("server did not stop within 30s of SIGTERM")
	}
}

// WriteSyntheticItems writes n candidate records with two responses each.
func WriteSyntheticItems(path string, n int) error {
	return jsonl.WriteFileAtomic(path, func(w io.Writer) error {
		for i := 0; i < n; i++ {
			id := fmt.Sprintf("c%06d", i)
			rec := map[string]any{"id": id, "prompt_id": "p" + id[1:], "generator": "synthetic",
				"prompt": fmt.Sprintf("Question %d: is volume %d of series %d in stock?", i, i%40+1, i%97),
				"responses": []map[string]any{
					{"text": fmt.Sprintf("Yes, volume %d is in stock and ships today.", i%40+1), "temperature": 0.7, "top_p": 0.9},
					{"text": fmt.Sprintf("Volume %d? I think so, maybe check later.", i%40+1), "temperature": 1.0, "top_p": 0.95},
				}}
			if err := jsonl.Encode(w, rec); err != nil {
				return err
			}
		}
		return nil
	})
}

func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr, nil
}

func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	k := int(p*float64(len(xs)-1) + 0.5)
	return xs[k]
}

// Load runs the load benchmark and checks the labels file afterwards:
// every item has exactly PerItem standing labels (skips left out) from
// PerItem different annotators, and the standing labels are exactly those
// the clients were told are recorded (nothing lost, nothing duplicated).
func Load(ctx context.Context, cfg LoadConfig) (LoadReport, error) {
	if cfg.Items <= 0 {
		cfg.Items = 2000
	}
	if cfg.Annotators <= 0 {
		cfg.Annotators = 20
	}
	if cfg.PerItem <= 0 {
		cfg.PerItem = 2
	}
	if cfg.SkipRate == 0 {
		cfg.SkipRate = 0.05
	}
	if cfg.UndoRate == 0 {
		cfg.UndoRate = 0.02
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	rep := LoadReport{Items: cfg.Items, Annotators: cfg.Annotators, PerItem: cfg.PerItem}
	itemsPath := filepath.Join(cfg.Dir, "items.jsonl")
	labels := filepath.Join(cfg.Dir, "labels.jsonl")
	rep.LabelsFile = labels
	for _, p := range []string{labels, TokensPath(labels)} {
		if _, err := os.Stat(p); err == nil {
			return rep, fmt.Errorf("%s exists: the load benchmark needs a fresh folder", p)
		}
	}
	if err := WriteSyntheticItems(itemsPath, cfg.Items); err != nil {
		return rep, err
	}
	addr, err := freePort()
	if err != nil {
		return rep, err
	}
	var names []string
	for i := 0; i < cfg.Annotators; i++ {
		names = append(names, fmt.Sprintf("a%02d", i+1))
	}
	args := []string{"--in", itemsPath, "--out", labels, "--addr", addr, "--annotators", strings.Join(names, ","),
		"--per-item", strconv.Itoa(cfg.PerItem)}
	var serverLog syncBuffer
	srv, err := startServer(ctx, &cfg, args, names, &serverLog)
	if err != nil {
		return rep, fmt.Errorf("%w\n%s", err, serverLog.String())
	}
	var cur atomic.Pointer[serverProc]
	cur.Store(srv)
	defer func() {
		if p := cur.Load(); p != nil {
			p.kill()
		}
	}()

	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c6f6164))
	total := int64(cfg.Items * cfg.PerItem)
	killAt := int64(-1)
	if cfg.Kill {
		killAt = int64(float64(total) * (0.1 + 0.7*rng.Float64()))
	}
	var labelsN, undos, conflicts, retries, waits, late atomic.Int64
	var mu sync.Mutex
	var labelLat, nextLat []float64
	acks := map[[2]string]string{} // (annotator, item) -> choice standing per the client
	killed := make(chan struct{})
	var killOnce sync.Once
	var restartErr error
	restart := func() {
		killOnce.Do(func() {
			p := cur.Load()
			rep.KilledAt = labelsN.Load()
			t0 := time.Now()
			p.kill()
			fmt.Fprintf(cfg.Log, "annotate bench: killed the server (SIGKILL) after %d labels; restarting\n", rep.KilledAt)
			np, err := startServer(ctx, &cfg, args, names, &serverLog)
			if err != nil {
				restartErr = err
				cancel()
				close(killed)
				return
			}
			rep.RestartMS = float64(time.Since(t0).Microseconds()) / 1000
			cur.Store(np)
			close(killed)
		})
	}

	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Annotators, MaxConnsPerHost: 4 * cfg.Annotators}}
	// do sends one request until it gets an answer below 500; it returns
	// the status, the body and the latency of the answered attempt.
	do := func(method, url, token string, body []byte) (int, []byte, float64, http.Header, error) {
		for attempt := 0; ; attempt++ {
			if ctx.Err() != nil {
				return 0, nil, 0, nil, ctx.Err()
			}
			var rd io.Reader
			if body != nil {
				rd = bytes.NewReader(body)
			}
			req, _ := http.NewRequestWithContext(ctx, method, url, rd)
			req.Header.Set("Authorization", "Bearer "+token)
			if body != nil {
				req.Header.Set("Content-Type", "application/json")
			}
			t0 := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				lat := float64(time.Since(t0).Microseconds()) / 1000
				if rerr == nil && resp.StatusCode < 500 {
					return resp.StatusCode, b, lat, resp.Header, nil
				}
			}
			retries.Add(1)
			time.Sleep(time.Duration(min(attempt+1, 20)) * 10 * time.Millisecond)
		}
	}
	base := "http://" + addr
	var wg sync.WaitGroup
	errc := make(chan error, cfg.Annotators)
	t0 := time.Now()
	// work is one simulated annotator: it labels what /api/next gives it
	// until it is told nothing is left. In the closing sweep (final) it
	// makes no skips or undos and stops at any 204.
	work := func(name, token string, arng *rand.Rand, final bool) {
		for {
			code, b, lat, h, err := do("GET", base+"/api/next", token, nil)
			if err != nil {
				errc <- err
				return
			}
			mu.Lock()
			nextLat = append(nextLat, lat)
			mu.Unlock()
			if code == http.StatusNoContent {
				if final || h.Get("Retry-After") == "" {
					return // nothing left for this annotator
				}
				// Others hold items this annotator may still get (they
				// may skip them): ask again soon (the page waits
				// Retry-After seconds; a simulated annotator need not).
				waits.Add(1)
				select {
				case <-time.After(20 * time.Millisecond):
				case <-ctx.Done():
					errc <- ctx.Err()
					return
				}
				continue
			}
			if code != http.StatusOK {
				errc <- fmt.Errorf("%s: GET /api/next: %d %s", name, code, b)
				return
			}
			var v ItemView
			if err := json.Unmarshal(b, &v); err != nil {
				errc <- fmt.Errorf("%s: GET /api/next: %w", name, err)
				return
			}
			choice := ChoiceSkip
			if r := arng.Float64(); final || r >= cfg.SkipRate {
				choice = []string{ChoiceA, ChoiceA, ChoiceB, ChoiceB, ChoiceTie}[arng.IntN(5)]
			}
			body, _ := json.Marshal(LabelRequest{ItemID: v.ItemID, Choice: choice})
			code, b, lat, _, err = do("POST", base+"/api/label", token, body)
			if err != nil {
				errc <- err
				return
			}
			switch code {
			case http.StatusOK:
				n := labelsN.Add(1)
				if final {
					late.Add(1)
				}
				mu.Lock()
				labelLat = append(labelLat, lat)
				acks[[2]string{name, v.ItemID}] = choice
				mu.Unlock()
				if killAt >= 0 && n == killAt {
					go restart()
				}
			case http.StatusConflict:
				conflicts.Add(1)
				continue
			default:
				errc <- fmt.Errorf("%s: POST /api/label %s: %d %s", name, body, code, b)
				return
			}
			if !final && arng.Float64() < cfg.UndoRate {
				ub, _ := json.Marshal(UndoRequest{ItemID: v.ItemID})
				code, b, _, _, err = do("POST", base+"/api/undo", token, ub)
				if err != nil {
					errc <- err
					return
				}
				if code != http.StatusOK {
					errc <- fmt.Errorf("%s: POST /api/undo: %d %s", name, code, b)
					return
				}
				undos.Add(1)
				mu.Lock()
				delete(acks, [2]string{name, v.ItemID})
				mu.Unlock()
			}
		}
	}
	tokens := map[string]string{}
	for k, name := range names {
		token := strings.TrimPrefix(srv.urls[name][strings.Index(srv.urls[name], "?token="):], "?token=")
		tokens[name] = token
		arng := rand.New(rand.NewPCG(cfg.Seed, uint64(k+1)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			work(name, token, arng, false)
		}()
	}
	wg.Wait()
	// An undo reopens an item after others may have finished; when its
	// annotator then skips it, nobody is left to label it. A person would
	// open the page again; the closing sweep asks each annotator in turn
	// until a whole round finds nothing.
	for round := 0; ctx.Err() == nil; round++ {
		before := labelsN.Load()
		for k, name := range names {
			work(name, tokens[name], rand.New(rand.NewPCG(cfg.Seed, uint64(1000*(round+1)+k))), true)
		}
		if labelsN.Load() == before {
			break
		}
	}
	rep.Seconds = time.Since(t0).Seconds()
	if killAt >= 0 {
		select {
		case <-killed:
		default:
			return rep, fmt.Errorf("the kill at label %d never happened (%d labels)", killAt, labelsN.Load())
		}
	}
	if restartErr != nil {
		return rep, fmt.Errorf("restart: %w\n%s", restartErr, serverLog.String())
	}
	select {
	case err := <-errc:
		return rep, err
	default:
	}
	p := cur.Swap(nil)
	if err := p.stop(); err != nil {
		return rep, fmt.Errorf("stopping the server: %w\n%s", err, serverLog.String())
	}
	rep.Labels, rep.Undos, rep.Conflicts, rep.Retries, rep.Waits, rep.Late = labelsN.Load(), undos.Load(), conflicts.Load(), retries.Load(), waits.Load(), late.Load()
	rep.LabelsPerS = float64(rep.Labels) / rep.Seconds
	rep.LabelP50MS, rep.LabelP99MS = percentile(labelLat, 0.50), percentile(labelLat, 0.99)
	rep.NextP50MS, rep.NextP99MS = percentile(nextLat, 0.50), percentile(nextLat, 0.99)
	return rep, CheckLabels(labels, cfg.Items, cfg.PerItem, cfg.Annotators, acks)
}

// CheckLabels checks a load run's labels file: every one of n items
// ("c000000"...) has exactly k standing labels that are not skips, from k
// different annotators (fewer only where every one of the annotators who
// did not label it skipped it), and the standing labels are exactly acks.
func CheckLabels(path string, n, k, annotators int, acks map[[2]string]string) error {
	g, err := ReadLabels(path)
	if err != nil {
		return err
	}
	per := map[string]map[string]bool{}
	skips := map[string]int{}
	var problems []string
	standing := map[[2]string]string{}
	for _, l := range g.standing() {
		standing[[2]string{l.Annotator, l.ItemID}] = l.Choice
		if l.Choice == ChoiceSkip {
			skips[l.ItemID]++
			continue
		}
		if per[l.ItemID] == nil {
			per[l.ItemID] = map[string]bool{}
		}
		per[l.ItemID][l.Annotator] = true
	}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("c%06d", i)
		got := len(per[id])
		if got > k || got < k && got+skips[id] < annotators {
			problems = append(problems, fmt.Sprintf("item %s: %d labels from different annotators and %d skips, want %d labels", id, got, skips[id], k))
		}
	}
	for key, c := range acks {
		if got, ok := standing[key]; !ok {
			problems = append(problems, fmt.Sprintf("lost: %s's label %q of %s was acknowledged but is not in the file", key[0], c, key[1]))
		} else if got != c {
			problems = append(problems, fmt.Sprintf("%s's label of %s: file says %q, client was told %q", key[0], key[1], got, c))
		}
	}
	for key, c := range standing {
		if _, ok := acks[key]; !ok {
			problems = append(problems, fmt.Sprintf("extra: %s's label %q of %s is in the file but was never acknowledged", key[0], c, key[1]))
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		if len(problems) > 10 {
			problems = append(problems[:10], fmt.Sprintf("... and %d more", len(problems)-10))
		}
		return fmt.Errorf("labels check failed:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
