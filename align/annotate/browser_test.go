package annotate

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/align-dev/align/align/testgate"
)

func chromium(t *testing.T) string { return testgate.Chromium(t) }

// browser starts headless Chromium with a quiet profile of its own.
func browser(t *testing.T) context.Context {
	t.Helper()
	bin := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "profile")),
		chromedp.WindowSize(1280, 900),
	}
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, tcancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { tcancel(); cancel(); acancel() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a time limit, failing the test with what
// was being done.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pageState is what the page shows.
type pageState struct {
	State   string `json:"state"`
	Renders int    `json:"renders"`
	Item    string `json:"item"`
	A       string `json:"a"`
	B       string `json:"b"`
	Status  string `json:"status"`
}

const stateJS = `(() => ({state: document.body.dataset.state, renders: Number(document.body.dataset.renders),
  item: document.body.dataset.item || "", a: document.getElementById('text-a').textContent,
  b: document.getElementById('text-b').textContent, status: document.getElementById('status').textContent}))()`

func readState(t *testing.T, ctx context.Context) pageState {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(sctx, chromedp.Evaluate[pageState](stateJS))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls the page until cond holds (20 s at most).
func waitFor(t *testing.T, ctx context.Context, what string, cond func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		s := readState(t, ctx)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: page is %+v", what, s)
		}
		time.Sleep(40 * time.Millisecond)
	}
}

// press sends one key and waits until the page has rendered what follows.
func press(t *testing.T, ctx context.Context, key string) pageState {
	t.Helper()
	before := readState(t, ctx)
	do(t, ctx, "key "+key, chromedp.KeyEvent(key))
	return waitFor(t, ctx, "the page after key "+key, func(s pageState) bool {
		return s.Renders > before.Renders && (s.State == "ready" || s.State == "done")
	})
}

// startHelper starts `annotate serve` (the test binary as a helper) and
// returns it with the URL of its first annotator.
func startHelper(t *testing.T, args []string) (*serverProc, string) {
	t.Helper()
	var log syncBuffer
	p, err := startServer(context.Background(), &LoadConfig{Command: helperCommand}, args, []string{DefaultName}, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Cleanup(p.kill)
	return p, p.urls[DefaultName]
}

// A session driven with the keyboard in headless Chromium: labels, a rubric
// score and a reason, undo, tie, skip, a kill -9 and restart of the server
// while a label is on its way, undo after the restart. The labels file must
// hold exactly the choices made, mapped back through the shown order.
func TestBrowserSession(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "cand.jsonl")
	var b strings.Builder
	b.WriteString(`{"id":"c0","prompt_id":"p0","system":"You are the Manga Corner assistant.","messages":[{"role":"user","content":"Hi! Is Berserk finished?"},{"role":"assistant","content":"Not yet: it continues."},{"role":"user","content":"How many volumes are out?"}],"objective":"accuracy","generator":"g","responses":[{"text":"42 volumes are out so far, and the series continues."},{"text":"It ended at volume 40.\nWant a box set?"}]}` + "\n")
	for i := 1; i < 7; i++ {
		fmt.Fprintf(&b, `{"id":"c%d","prompt_id":"p%d","prompt":"Question %d about volume %d?","generator":"g","responses":[{"text":"answer zero of c%d"},{"text":"answer one of c%d"}]}`+"\n", i, i, i, i, i, i)
	}
	os.WriteFile(in, []byte(b.String()), 0o644)
	labels := filepath.Join(dir, "labels.jsonl")
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--in", in, "--out", labels, "--addr", addr, "--rubric"}
	srv, url := startHelper(t, args)

	// expected standing labels: item -> the text chosen ("tie", "skip")
	want := map[string]string{}
	shown := map[string][2]string{}
	do(t, ctx, "opening the page", chromedp.Navigate(url))
	s := waitFor(t, ctx, "the first item", func(s pageState) bool { return s.State == "ready" })
	if s.Item != "c0" {
		t.Fatalf("first item %q, want c0", s.Item)
	}
	if shot := os.Getenv("ALIGN_ANNOTATE_SCREENSHOT"); shot != "" {
		// a score and a reason on screen for the picture
		do(t, ctx, "scoring for the screenshot", chromedp.Click(chromedp.CSS(`input[name="a-accuracy"][value="2"]`)), chromedp.Click(chromedp.CSS(`input[name="b-accuracy"][value="5"]`)),
			chromedp.Click(chromedp.CSS(`input[name="a-tone"][value="4"]`)), chromedp.Click(chromedp.CSS(`input[name="b-tone"][value="4"]`)),
			chromedp.SendKeys(chromedp.CSS("#reason"), "B has the right count (42, still running)"), chromedp.KeyEvent(kb.Escape))
		img, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(shot, img, 0o644)
		// clear what was set for the picture
		do(t, ctx, "clearing the screenshot scores", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('input[type=radio]').forEach(r => r.checked = false); document.getElementById('reason').value = ''`))
		t.Logf("screenshot in %s", shot)
	}
	// c0: a rubric score (click), a reason (typed, Esc leaves the box), key 1.
	do(t, ctx, "scoring and typing a reason", chromedp.Click(chromedp.CSS(`input[name="a-tone"][value="4"]`)), chromedp.Click(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "A is right"), chromedp.KeyEvent(kb.Escape))
	shown[s.Item] = [2]string{s.A, s.B}
	want[s.Item] = s.A
	s = press(t, ctx, "1")
	// c1: key 2, then undo: c1 comes back; then tie.
	first := s.Item
	shown[s.Item] = [2]string{s.A, s.B}
	s = press(t, ctx, "2")
	s = press(t, ctx, "u")
	if s.Item != first {
		t.Fatalf("after undo the page shows %q, want %q back", s.Item, first)
	}
	want[s.Item] = "tie"
	s = press(t, ctx, "3")
	// skip one
	want[s.Item] = "skip"
	shown[s.Item] = [2]string{s.A, s.B}
	s = press(t, ctx, "s")
	// kill -9 the server, press 1: the page keeps retrying; restart it.
	srv.kill()
	killedItem := s.Item
	shown[s.Item] = [2]string{s.A, s.B}
	do(t, ctx, "key 1 with the server down", chromedp.KeyEvent("1"))
	before := waitFor(t, ctx, "the page to notice the dead server", func(s pageState) bool { return s.State == "retrying" })
	if !strings.Contains(before.Status, "cannot reach the server") {
		t.Errorf("status while the server is down: %q", before.Status)
	}
	srv, _ = startHelper(t, args)
	s = waitFor(t, ctx, "the label to go through after the restart", func(s pageState) bool {
		return s.State == "ready" && s.Item != killedItem
	})
	// undo after the restart: the label sent during the outage comes back.
	s = press(t, ctx, "u")
	if s.Item != killedItem {
		t.Fatalf("undo after the restart shows %q, want %q", s.Item, killedItem)
	}
	want[s.Item] = s.B
	s = press(t, ctx, "2")
	want[s.Item] = s.A
	shown[s.Item] = [2]string{s.A, s.B}
	press(t, ctx, "1")
	if err := srv.stop(); err != nil {
		t.Fatal(err)
	}

	g, err := ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	items, _ := LoadItems(in)
	byID := map[string]Item{}
	for _, it := range items {
		byID[it.ID] = it
	}
	got := map[string]string{}
	for _, l := range g.standing() {
		it := byID[l.ItemID]
		text := func(idx int) string { return it.Responses[idx] } // candidates with two responses: index = position
		switch l.Choice {
		case ChoiceTie, ChoiceSkip:
			got[l.ItemID] = l.Choice
		default:
			got[l.ItemID] = text(*l.ChosenIndex)
		}
		if sh, ok := shown[l.ItemID]; ok && (text(l.ShownOrder[0]) != sh[0] || text(l.ShownOrder[1]) != sh[1]) {
			t.Errorf("%s: shown_order %v maps to %q | %q, the page showed %q | %q", l.ItemID, l.ShownOrder,
				text(l.ShownOrder[0]), text(l.ShownOrder[1]), sh[0], sh[1])
		}
		if l.ItemID == "c0" {
			k := 0
			if l.ShownOrder[0] != l.Indexes[0] {
				k = 1
			}
			if len(l.Scores) != 2 || l.Scores[k].Tone != 4 || l.Reason != "A is right" {
				t.Errorf("c0: scores %+v reason %q, want tone 4 for the response shown as A and the reason", l.Scores, l.Reason)
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("standing labels %v, want %v", got, want)
	}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("%s: labels file says %q, the keys chose %q", id, got[id], w)
		}
	}
	if g.Undone != 2 {
		t.Errorf("%d undos in the file, want 2", g.Undone)
	}
}

// Responses and prompts holding HTML and script are shown as text: the DOM
// holds no element made from them, no script runs, and the page triggers
// no Content-Security-Policy violation (nothing even tried to load).
func TestBrowserInjection(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	payloads := []string{
		`<script>window.__pwned = "script"</script>`,
		`<img src=x onerror="window.__pwned = 'img'">`,
		`<a href="javascript:window.__pwned = 'link'">click me</a>`,
		`<iframe src="javascript:window.__pwned = 'iframe'"></iframe><b onmouseover="window.__pwned='b'">bold</b>`,
	}
	rec := func(id, prompt string, a, b string) string {
		j, _ := json.Marshal(map[string]any{"id": id, "prompt": prompt, "generator": "g",
			"responses": []map[string]string{{"text": a}, {"text": b}}})
		return string(j) + "\n"
	}
	in := filepath.Join(dir, "cand.jsonl")
	os.WriteFile(in, []byte(rec("x0", payloads[3]+` <svg onload="window.__pwned='svg'">`, payloads[0], payloads[1])+
		rec("x1", `<style>body{display:none}</style>`, payloads[2], payloads[3])), 0o644)
	_, url := startHelper(t, []string{"--in", in, "--out", filepath.Join(dir, "labels.jsonl"), "--addr", "127.0.0.1:0"})

	watch := `window.__violations = []; document.addEventListener('securitypolicyviolation', (e) => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));`
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: watch}); err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "opening the page", chromedp.Navigate(url))
	check := func(s pageState, wantPrompt string, want [2]string) {
		t.Helper()
		if !(s.A == want[0] && s.B == want[1]) && !(s.A == want[1] && s.B == want[0]) {
			t.Errorf("%s: responses shown as %q | %q, want the text %q | %q", s.Item, s.A, s.B, want[0], want[1])
		}
		type result struct {
			Elements   int      `json:"elements"`
			Prompt     string   `json:"prompt"`
			Pwned      any      `json:"pwned"`
			Violations []string `json:"violations"`
			Hidden     bool     `json:"hidden"`
		}
		js := `(() => ({
		  elements: document.querySelectorAll('#conversation .content *, #responses .text *').length,
		  prompt: document.querySelector('#conversation .turn.user .content').textContent,
		  pwned: window.__pwned === undefined ? null : String(window.__pwned),
		  violations: window.__violations,
		  hidden: getComputedStyle(document.body).display === 'none'}))()`
		res, err := chromedp.Run(ctx, chromedp.Evaluate[result](js))
		if err != nil {
			t.Fatal(err)
		}
		if res.Elements != 0 || res.Prompt != wantPrompt || res.Pwned != nil || len(res.Violations) != 0 || res.Hidden {
			t.Errorf("%s: %+v; want no elements inside the texts, the prompt as text, nothing run, no CSP violation", s.Item, res)
		}
	}
	s := waitFor(t, ctx, "the first item", func(s pageState) bool { return s.State == "ready" })
	check(s, payloads[3]+` <svg onload="window.__pwned='svg'">`, [2]string{payloads[0], payloads[1]})
	// hover and click the text: a link made from it would run
	do(t, ctx, "clicking the texts", chromedp.Click(chromedp.CSS("#text-a")), chromedp.Click(chromedp.CSS("#text-b")))
	s = press(t, ctx, "1")
	check(s, `<style>body{display:none}</style>`, [2]string{payloads[2], payloads[3]})
	do(t, ctx, "clicking the texts", chromedp.Click(chromedp.CSS("#text-a")), chromedp.Click(chromedp.CSS("#text-b")))
	check(s, `<style>body{display:none}</style>`, [2]string{payloads[2], payloads[3]})

	// Control: the same checks see markup that is parsed as HTML.
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`(() => { const d = document.createElement('div');
	  d.innerHTML = '<img src=x onerror="window.__pwned=1">'; document.getElementById('text-a').append(d);
	  return document.querySelectorAll('#responses .text *').length })()`))
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("control: an element parsed from HTML is not seen by the check")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		v, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`window.__violations`))
		if len(v) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("control: an <img> parsed from HTML raised no CSP violation; the violation check sees nothing")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The screenshot is not blank (a page that failed to load or style would be).
func TestBrowserScreenshotNotBlank(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	in := writeCandidates(t, dir, 2)
	_, url := startHelper(t, []string{"--in", in, "--out", filepath.Join(dir, "labels.jsonl"), "--addr", "127.0.0.1:0"})
	do(t, ctx, "opening the page", chromedp.Navigate(url))
	waitFor(t, ctx, "the first item", func(s pageState) bool { return s.State == "ready" })
	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatal(err)
	}
	bd := img.Bounds()
	ink := 0
	for y := bd.Min.Y; y < bd.Max.Y; y += 2 {
		for x := bd.Min.X; x < bd.Max.X; x += 2 {
			r, g, b, _ := img.At(x, y).RGBA()
			if r>>8 < 200 || g>>8 < 200 || b>>8 < 200 {
				ink++
			}
		}
	}
	if share := float64(ink) / float64(bd.Dx()*bd.Dy()/4); share < 0.003 {
		t.Errorf("screenshot nearly blank (%.4f dark pixels)", share)
	}
}

// While the items an annotator could still get are held by others, the
// page says so and looks again after the server's Retry-After: when a
// holder skips the item, it appears without a key press.
func TestBrowserWaitsForHeldItem(t *testing.T) {
	ctx := browser(t)
	dir := t.TempDir()
	in := writeCandidates(t, dir, 1)
	ts := newTestServer(t, in, filepath.Join(dir, "labels.jsonl"), []string{"ana", "ben", "cat"}, 2, false)
	a, _ := ts.next("ana")
	ts.next("ben")
	do(t, ctx, "opening the page", chromedp.Navigate(ts.ts.URL+"/?token="+ts.tokens["cat"]))
	waitFor(t, ctx, "the waiting page", func(s pageState) bool { return s.State == "done" })
	title, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('done-title').textContent + ' | ' +
		(document.getElementById('done-wait').hidden ? 'hidden' : document.getElementById('done-wait').textContent)`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(title, "right now") || strings.Contains(title, "hidden") {
		t.Errorf("waiting page says %q, want that others hold the last items", title)
	}
	if c := ts.label("ben", a.ItemID, "skip"); c != 200 {
		t.Fatalf("ben's skip: %d", c)
	}
	s := waitFor(t, ctx, "the item after ben's skip", func(s pageState) bool { return s.State == "ready" })
	if s.Item != a.ItemID {
		t.Errorf("page shows %q, want %q", s.Item, a.ItemID)
	}
}
