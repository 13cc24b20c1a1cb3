package bindings

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/align-dev/align/align/mergefile"
	"github.com/align-dev/align/align/testgate"
)

var fixtureDir string

// fixture returns the path of a generated tiny model, writing it once.
func fixture(t testing.TB, arch, typ string) string {
	t.Helper()
	p := filepath.Join(fixtureDir, arch+"-"+typ+".gguf")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	if err := WriteFixture(p, FixtureParams{Arch: arch, Type: typ, Size: "tiny", Seed: 7}); err != nil {
		t.Fatalf("WriteFixture(%s, %s): %v", arch, typ, err)
	}
	return p
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "align-bindings-test-")
	if err != nil {
		panic(err)
	}
	fixtureDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func load(t testing.TB, path string) *Model {
	t.Helper()
	m, err := LoadModel(path, ModelOptions{Threads: 2})
	if err != nil {
		t.Fatalf("LoadModel(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func session(t testing.TB, m *Model, opt SessionOptions) *Session {
	t.Helper()
	s, err := NewSession(m, opt)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestFixtureDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.gguf"), filepath.Join(dir, "b.gguf")
	c := filepath.Join(dir, "c.gguf")
	for _, p := range []string{a, b} {
		if err := WriteFixture(p, FixtureParams{Arch: "llama", Type: "q4_k", Size: "tiny", Seed: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteFixture(c, FixtureParams{Arch: "llama", Type: "q4_k", Size: "tiny", Seed: 4}); err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	bc, _ := os.ReadFile(c)
	if string(ba) != string(bb) {
		t.Errorf("same seed gave different files")
	}
	if string(ba) == string(bc) {
		t.Errorf("different seeds gave the same file")
	}
}

func TestFixturesLoad(t *testing.T) {
	for _, arch := range []string{"llama", "qwen2"} {
		for _, typ := range []string{"f32", "f16", "q8_0", "q4_0", "q4_k"} {
			t.Run(arch+"-"+typ, func(t *testing.T) {
				m := load(t, fixture(t, arch, typ))
				info, err := m.Info()
				if err != nil {
					t.Fatal(err)
				}
				if info.Arch != arch || info.NLayer != 2 || info.NEmbd != 256 || !info.HasChatTemplate {
					t.Errorf("info = %+v", info)
				}
				// the vocabulary round-trips plain text
				const text = "Hello! Is the Naruto manga complete? It has 72 volumes."
				toks, err := m.Tokenize(text, false, false)
				if err != nil {
					t.Fatal(err)
				}
				if len(toks) >= len(text)/2 {
					t.Errorf("tokenizer barely merges: %d tokens for %d bytes", len(toks), len(text))
				}
				back, err := m.Detokenize(toks, false)
				if err != nil {
					t.Fatal(err)
				}
				if strings.TrimSpace(back) != text {
					t.Errorf("round trip = %q", back)
				}
			})
		}
	}
}

func TestChatTemplate(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	got, err := m.ChatApply("", []Message{{Role: "system", Content: "Be kind."}, {Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nBe kind.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Errorf("ChatApply = %q, want %q", got, want)
	}
	toks, err := m.Tokenize(got, true, true)
	if err != nil {
		t.Fatal(err)
	}
	start, _ := m.Tokenize("<|im_start|>", false, true)
	if len(start) != 1 || toks[1] != start[0] {
		t.Errorf("<|im_start|> is not one control token: %v (prompt %v)", start, toks[:3])
	}
	end, _ := m.Tokenize("<|im_end|>", false, true)
	if len(end) != 1 || !m.IsEOG(end[0]) {
		t.Errorf("<|im_end|> should end generation: %v", end)
	}
}

func generate(t *testing.T, s *Session, prompt []int32, sp SamplerParams) (string, GenerateResult) {
	t.Helper()
	var sb strings.Builder
	res, err := s.Generate(context.Background(), prompt, sp, func(x string) bool { sb.WriteString(x); return true })
	if err != nil {
		t.Fatal(err)
	}
	return sb.String(), res
}

func TestGenerateDeterministic(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 256})
	prompt, _ := m.Tokenize("hello there", true, false)
	sp := SamplerParams{Temperature: 0.9, TopP: 0.95, TopK: 40, MinP: 0.05, Seed: 42, MaxTokens: 24}
	a, ra := generate(t, s, prompt, sp)
	b, _ := generate(t, s, prompt, sp)
	if a != b {
		t.Errorf("same seed, different text:\n%q\n%q", a, b)
	}
	if ra.GeneratedTokens == 0 || a == "" {
		t.Errorf("nothing generated: %+v", ra)
	}
	// a fresh session gives the same text too
	s2 := session(t, m, SessionOptions{NCtx: 256})
	c, _ := generate(t, s2, prompt, sp)
	if c != a {
		t.Errorf("fresh session differs:\n%q\n%q", a, c)
	}
	// different seeds should (almost surely) differ on a random model
	sp.Seed = 43
	d, _ := generate(t, s, prompt, sp)
	if d == a {
		t.Errorf("seeds 42 and 43 gave the same %d-token text", ra.GeneratedTokens)
	}
}

func TestGenerateStopString(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 256})
	prompt, _ := m.Tokenize("hello", true, false)
	sp := SamplerParams{Temperature: 0, MaxTokens: 40}
	full, _ := generate(t, s, prompt, sp)
	if len(full) < 12 {
		t.Skipf("greedy output too short to pick a stop string: %q", full)
	}
	stop := full[6:9]
	i := strings.Index(full, stop)
	sp.Stop = []string{stop}
	cut, res := generate(t, s, prompt, sp)
	if cut != full[:i] || res.StopReason != StopString {
		t.Errorf("stop %q: got %q (reason %d), want %q", stop, cut, res.StopReason, full[:i])
	}
}

// Log-probs from one batched decode agree with the logits of an incremental,
// token-by-token decode through the KV cache (two different llama.cpp paths).
func TestLogProbsMatchIncrementalLogits(t *testing.T) {
	for _, typ := range []string{"f32", "q8_0", "q4_k"} {
		t.Run(typ, func(t *testing.T) {
			m := load(t, fixture(t, "llama", typ))
			info, _ := m.Info()
			s := session(t, m, SessionOptions{NCtx: 128, NBatch: 16})
			toks, _ := m.Tokenize("Naruto has 72 volumes, and the author is Masashi Kishimoto. Thanks!", true, false)
			lp, logits, err := s.LogProbsAndLogits(context.Background(), toks)
			if err != nil {
				t.Fatal(err)
			}
			if len(lp) != len(toks)-1 || len(logits) != len(toks)*info.NVocab {
				t.Fatalf("lengths %d, %d", len(lp), len(logits))
			}
			inc := session(t, m, SessionOptions{NCtx: 128})
			var maxDiff float64
			for i := 0; i+1 < len(toks); i++ {
				row, err := inc.Decode(toks[i : i+1])
				if err != nil {
					t.Fatal(err)
				}
				want := logSoftmaxAt(row, int(toks[i+1]))
				// the batched raw logits give the same log-prob as the returned one
				if d := math.Abs(logSoftmaxAt(logits[i*info.NVocab:(i+1)*info.NVocab], int(toks[i+1])) - float64(lp[i])); d > 1e-4 {
					t.Errorf("pos %d: returned log-prob %.6f disagrees with its own logits by %.2g", i, lp[i], d)
				}
				maxDiff = math.Max(maxDiff, math.Abs(want-float64(lp[i])))
			}
			t.Logf("%s: max |batched - incremental| log-prob = %.3g over %d tokens", typ, maxDiff, len(lp))
			// ggml runs batched and single-token matmuls through different
			// kernels (GEMM on repacked weights vs vec_dot, activations
			// quantised per kernel), so 4-bit types agree less closely
			tol := 2e-3
			if strings.HasPrefix(typ, "q4") {
				tol = 5e-2
			}
			if maxDiff > tol {
				t.Errorf("batched and incremental log-probs differ by %.3g", maxDiff)
			}
		})
	}
}

func logSoftmaxAt(row []float32, k int) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var sum float64
	for _, v := range row {
		sum += math.Exp(float64(v) - mx)
	}
	return float64(row[k]) - mx - math.Log(sum)
}

func TestCancelStopsGeneration(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 2048})
	prompt, _ := m.Tokenize("tell me a long story", true, false)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	start := time.Now()
	_, err := s.Generate(ctx, prompt, SamplerParams{Temperature: 1, Seed: 1, MaxTokens: 2000, TopK: 0, TopP: 1},
		func(string) bool {
			n++
			if n == 5 {
				cancel()
			}
			return true
		})
	if !errors.Is(err, ErrCancelled) {
		t.Fatalf("err = %v, want cancelled", err)
	}
	// the callback that cancels stops the decode itself, so this does not
	// depend on when the watching goroutine runs (it failed at 11 under load)
	if n > 6 {
		t.Errorf("%d pieces arrived after cancelling at 5", n)
	}
	t.Logf("cancelled after %d pieces in %v", n, time.Since(start))
	// a cancelled context before the call fails at once
	if _, err := s.Generate(ctx, prompt, SamplerParams{MaxTokens: 5}, nil); !errors.Is(err, ErrCancelled) {
		t.Errorf("pre-cancelled: err = %v", err)
	}
	// the session still works afterwards
	if _, err := s.Generate(context.Background(), prompt, SamplerParams{MaxTokens: 3}, nil); err != nil {
		t.Errorf("after cancel: %v", err)
	}
}

func TestCallbackStops(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 256})
	prompt, _ := m.Tokenize("hi", true, false)
	n := 0
	res, err := s.Generate(context.Background(), prompt, SamplerParams{Temperature: 1, TopP: 1, Seed: 1, MaxTokens: 100},
		func(string) bool { n++; return n < 3 })
	if err != nil || res.StopReason != StopCallback || n != 3 {
		t.Errorf("err %v, reason %d, n %d", err, res.StopReason, n)
	}
}

func TestBadModelFiles(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile(fixture(t, "llama", "q8_0"))
	cases := []struct {
		name string
		data []byte
		path string
		code Status
	}{
		{"missing", nil, filepath.Join(dir, "nope.gguf"), StatusIO},
		{"directory", nil, dir, StatusIO},
		{"text", []byte("just some text\n"), "", StatusFormat},
		{"empty", []byte{}, "", StatusFormat},
		{"header only", good[:24], "", StatusFormat},
		{"half", good[:len(good)/2], "", StatusFormat},
		{"last tensor cut", good[:len(good)-100], "", StatusFormat},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := c.path
			if p == "" {
				p = filepath.Join(dir, "case"+string(rune('a'+i))+".gguf")
				if err := os.WriteFile(p, c.data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			m, err := LoadModel(p, ModelOptions{})
			if err == nil {
				m.Close()
				t.Fatal("loaded a bad file")
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != c.code {
				t.Fatalf("err = %v (%T), want code %v", err, err, c.code)
			}
			if !strings.Contains(err.Error(), filepath.Base(p)) || strings.Contains(err.Error(), "\n") {
				t.Errorf("message should name the file on one line: %q", err.Error())
			}
		})
	}
}

// FuzzLoadModel truncates and corrupts a valid model; loading must fail
// cleanly or succeed, never crash.
func FuzzLoadModel(f *testing.F) {
	f.Add(uint32(100), uint32(0), byte(0))
	f.Add(uint32(1<<30), uint32(40), byte(0xff))
	f.Add(uint32(1<<30), uint32(9), byte(0x7f))
	f.Add(uint32(5000), uint32(300), byte(1))
	dir := f.TempDir()
	good, err := os.ReadFile(fixture(f, "llama", "q4_0"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, cut uint32, at uint32, val byte) {
		b := append([]byte(nil), good[:min(int(cut), len(good))]...)
		if int(at) < len(b) {
			b[at] = val
		}
		p := filepath.Join(dir, "fuzz.gguf")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := LoadModel(p, ModelOptions{Threads: 1})
		if err == nil {
			m.Close()
		}
	})
}

func randomAdapter(t *testing.T, path, arch string, rank int, layers []string, nIn, nOut int, seed uint64) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 1))
	var ts []AdapterTensor
	for _, name := range layers {
		a := make([]float32, nIn*rank)
		b := make([]float32, rank*nOut)
		for i := range a {
			a[i] = float32(r.NormFloat64() * 0.1)
		}
		for i := range b {
			b[i] = float32(r.NormFloat64() * 0.1)
		}
		ts = append(ts, AdapterTensor{BaseName: name, NIn: nIn, NOut: nOut, Rank: rank, A: a, B: b})
	}
	if err := WriteAdapter(path, arch, float32(rank), ts); err != nil {
		t.Fatal(err)
	}
}

func TestAdapters(t *testing.T) {
	dir := t.TempDir()
	llama := load(t, fixture(t, "llama", "q8_0"))
	qwen := load(t, fixture(t, "qwen2", "q8_0"))
	good := filepath.Join(dir, "llama-lora.gguf")
	randomAdapter(t, good, "llama", 4, []string{"blk.0.attn_q.weight", "blk.1.attn_v.weight"}, 256, 256, 1)
	// blk.1.attn_v is 256 -> 128 (GQA); writing 256 out is a shape mismatch
	wrongShape := filepath.Join(dir, "wrong-shape.gguf")
	randomAdapter(t, wrongShape, "llama", 4, []string{"blk.0.attn_q.weight", "blk.1.attn_v.weight"}, 256, 256, 1)
	randomAdapter(t, good, "llama", 4, []string{"blk.0.attn_q.weight", "blk.1.attn_q.weight"}, 256, 256, 1)

	l, err := LoadLoRA(llama, good)
	if err != nil {
		t.Fatalf("LoadLoRA: %v", err)
	}
	// registered before the sessions, so it runs after they are closed
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("LoRA.Close after its sessions: %v", err)
		}
	})
	if err := llama.Close(); err == nil {
		t.Fatal("model closed while an adapter is open")
	}

	// the adapter changes log-probs, and scale 0 restores the base exactly
	toks, _ := llama.Tokenize("Is Berserk finished? I am frustrated.", true, false)
	base := session(t, llama, SessionOptions{NCtx: 128})
	with := session(t, llama, SessionOptions{NCtx: 128, Adapters: []LoRAScale{{LoRA: l, Scale: 1}}})
	zero := session(t, llama, SessionOptions{NCtx: 128, Adapters: []LoRAScale{{LoRA: l, Scale: 0}}})
	lb, err := base.LogProbs(context.Background(), toks)
	if err != nil {
		t.Fatal(err)
	}
	lw, _ := with.LogProbs(context.Background(), toks)
	lz, _ := zero.LogProbs(context.Background(), toks)
	var dw, dz float64
	for i := range lb {
		dw = math.Max(dw, math.Abs(float64(lw[i]-lb[i])))
		dz = math.Max(dz, math.Abs(float64(lz[i]-lb[i])))
	}
	if dw < 1e-3 {
		t.Errorf("adapter at scale 1 changed log-probs by only %.3g", dw)
	}
	if dz > 1e-5 {
		t.Errorf("adapter at scale 0 changed log-probs by %.3g", dz)
	}

	for _, c := range []struct {
		name  string
		model *Model
		path  string
		want  string
	}{
		{"other architecture", qwen, good, "mismatch"},
		{"wrong shape", llama, wrongShape, "shape"},
		{"model file as adapter", llama, fixture(t, "llama", "f32"), "adapter"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := LoadLoRA(c.model, c.path)
			if err == nil {
				a.Close()
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestSessionValidation(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 32})
	info, _ := m.Info()
	ctx := context.Background()
	// each is refused by the native argument checks (invalid argument), not
	// by a later failure that happens to return an error too
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"out-of-range token", func() error { _, err := s.LogProbs(ctx, []int32{1, int32(info.NVocab)}); return err }},
		{"sequence longer than the context", func() error { _, err := s.LogProbs(ctx, make([]int32, 40)); return err }},
		{"negative token", func() error {
			_, err := s.Generate(ctx, []int32{1, -5}, SamplerParams{MaxTokens: 1}, nil)
			return err
		}},
		{"top_p 2", func() error {
			_, err := s.Generate(ctx, []int32{1}, SamplerParams{MaxTokens: 1, TopP: 2}, nil)
			return err
		}},
		{"broken grammar", func() error {
			_, err := s.Generate(ctx, []int32{1}, SamplerParams{MaxTokens: 1, Grammar: "root ::= ("}, nil)
			return err
		}},
	} {
		err := c.call()
		var e *Error
		if !errors.As(err, &e) || e.Code != StatusInvalidArgument {
			t.Errorf("%s: %v, want status %s", c.name, err, StatusInvalidArgument)
		}
	}
}

// The types align merge promises (mergefile.Types) are exactly those the
// native merge accepts: each passes the type check (and fails later, on
// the missing base), and others are refused as invalid arguments.
func TestMergeTypes(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-base.gguf")
	out := filepath.Join(t.TempDir(), "out.gguf")
	for _, typ := range append(append([]string{}, mergefile.Types...), "Q4_K", "iq2_xxs", "q9", "f8") {
		_, err := Merge(context.Background(), missing, nil, out, MergeOptions{Type: typ})
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("--type %s: %v", typ, err)
		}
		refused := e.Code == StatusInvalidArgument && strings.Contains(e.Msg, "output type")
		if want := !mergefile.ValidType(typ); refused != want {
			t.Errorf("--type %s: %v; refused %v, want %v", typ, err, refused, want)
		}
	}
}

func TestGrammar(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 256})
	prompt, _ := m.Tokenize("Which is better?", true, false)
	var sb strings.Builder
	_, err := s.Generate(context.Background(), prompt, SamplerParams{Temperature: 1, TopP: 1, Seed: 3, MaxTokens: 40,
		Grammar: `root ::= "{\"winner\": \"" ("A" | "B") "\"}"`}, func(x string) bool { sb.WriteString(x); return true })
	if err != nil {
		t.Fatal(err)
	}
	if got := sb.String(); got != `{"winner": "A"}` && got != `{"winner": "B"}` {
		t.Errorf("grammar output = %q", got)
	}
}

// A cancel that lands before a call starts is not lost: the next call
// returns cancelled at once and consumes it; the call after runs. Today's
// engine cleared the flag at the start of each call.
func TestCancelIsSticky(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	s := session(t, m, SessionOptions{NCtx: 256})
	prompt, _ := m.Tokenize("tell me a story", true, false)
	sp := SamplerParams{Temperature: 1, TopP: 1, Seed: 1, MaxTokens: 4}
	ctx := context.Background()

	s.Cancel()
	if _, err := s.Generate(ctx, prompt, sp, nil); !errors.Is(err, ErrCancelled) {
		t.Fatalf("Generate after Cancel: err = %v, want cancelled", err)
	}
	if _, err := s.Generate(ctx, prompt, sp, nil); err != nil {
		t.Fatalf("the cancelled call consumes the request; next call: %v", err)
	}
	s.Cancel()
	if _, err := s.LogProbs(ctx, prompt); !errors.Is(err, ErrCancelled) {
		t.Errorf("LogProbs after Cancel: err = %v, want cancelled", err)
	}
	s.Cancel()
	if _, err := s.Decode(prompt); !errors.Is(err, ErrCancelled) {
		t.Errorf("Decode after Cancel: err = %v, want cancelled", err)
	}
	s.Cancel()
	s.ResetCancel()
	if _, err := s.Generate(ctx, prompt, sp, nil); err != nil {
		t.Errorf("after ResetCancel: %v", err)
	}
	// a context that ends after its call returned does not cancel the next call
	cctx, cancel := context.WithCancel(ctx)
	if _, err := s.Generate(cctx, prompt, sp, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := s.Generate(ctx, prompt, sp, nil); err != nil {
		t.Errorf("after an unrelated context ended: %v", err)
	}
}

// The native calls write the model's vocabulary size of logits per row; a
// buffer sized from a wrong vocabulary is refused before anything is
// written (it was a heap overflow when the size came from the caller).
func TestLogitsBufferCapacity(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	info, _ := m.Info()
	s := session(t, m, SessionOptions{NCtx: 128})
	toks, _ := m.Tokenize("Is Berserk finished?", true, false)
	ctx := context.Background()

	// Go API: sizes come from the model
	_, logits, err := s.LogProbsAndLogits(ctx, toks)
	if err != nil || len(logits) != len(toks)*info.NVocab {
		t.Fatalf("LogProbsAndLogits: %d logits, err %v; want %d", len(logits), err, len(toks)*info.NVocab)
	}
	row, err := s.Decode(toks)
	if err != nil || len(row) != info.NVocab {
		t.Fatalf("Decode: %d logits, err %v; want %d", len(row), err, info.NVocab)
	}

	// wrong sizes through the capacity: refused, and the canary past the
	// buffer's end stays untouched
	const canary = float32(-12345)
	small := info.NVocab / 2
	buf := make([]float32, small+1)
	buf[small] = canary
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	err = s.decodeInto(toks, buf[:small])
	if !errors.Is(err, &Error{Code: StatusBufferTooSmall}) {
		t.Errorf("decode into %d floats (vocab %d): err = %v, want buffer too small", small, info.NVocab, err)
	}
	if buf[small] != canary {
		t.Errorf("decode wrote past the buffer")
	}
	lbuf := make([]float32, len(toks)*small+1)
	lbuf[len(lbuf)-1] = canary
	_, _, err = s.logprobs(ctx, toks, lbuf[:len(lbuf)-1])
	if !errors.Is(err, &Error{Code: StatusBufferTooSmall}) {
		t.Errorf("logprobs into %d floats: err = %v, want buffer too small", len(lbuf)-1, err)
	}
	if lbuf[len(lbuf)-1] != canary {
		t.Errorf("logprobs wrote past the buffer")
	}
}

// An adapter cannot be freed under a session that uses it.
func TestLoRACloseRefusedWhileInUse(t *testing.T) {
	m := load(t, fixture(t, "llama", "q8_0"))
	path := filepath.Join(t.TempDir(), "lora.gguf")
	randomAdapter(t, path, "llama", 4, []string{"blk.0.attn_q.weight"}, 256, 256, 1)
	l, err := LoadLoRA(m, path)
	if err != nil {
		t.Fatal(err)
	}
	s1, err := NewSession(m, SessionOptions{NCtx: 64, Adapters: []LoRAScale{{LoRA: l, Scale: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := NewSession(m, SessionOptions{NCtx: 64, Adapters: []LoRAScale{{LoRA: l, Scale: 0.5}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err == nil || !strings.Contains(err.Error(), "session") {
		t.Fatalf("Close with two sessions open: err = %v, want a refusal", err)
	}
	toks, _ := m.Tokenize("hi there", true, false)
	if _, err := s1.LogProbs(context.Background(), toks); err != nil {
		t.Fatalf("session after the refused Close: %v", err)
	}
	s1.Close()
	if err := l.Close(); err == nil {
		t.Fatal("Close with one session open succeeded")
	}
	s2.Close()
	s2.Close() // idempotent: releases the adapter once
	if err := l.Close(); err != nil {
		t.Fatalf("Close after the sessions: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// Errors name the native call and the status besides the message.
func TestErrorPrintsOpAndCode(t *testing.T) {
	_, err := LoadModel(filepath.Join(t.TempDir(), "missing.gguf"), ModelOptions{})
	if err == nil {
		t.Fatal("loaded a missing file")
	}
	got := err.Error()
	for _, want := range []string{"missing.gguf", "align_model_load", StatusIO.String()} {
		if !strings.Contains(got, want) {
			t.Errorf("error %q lacks %q", got, want)
		}
	}
}

// noByteModel is a real model whose vocabulary has no byte-fallback tokens
// (issue 7 item 14); tests that need it skip when the shared models are
// not checked out next to the repository.
func noByteModel(t *testing.T) string {
	t.Helper()
	p := "../../shared/models/TinyStories-656K-Q8_0.gguf"
	if v := os.Getenv("ALIGN_NOBYTE_MODEL"); v != "" {
		p = v
	}
	if _, err := os.Stat(p); err != nil {
		testgate.Missing(t, "no model without byte fallback at %s (set ALIGN_NOBYTE_MODEL)", p)
	}
	return p
}

// Characters a vocabulary cannot spell become <unk> and are reported,
// instead of llama.cpp's "unordered_map::at" reaching the caller.
func TestTokenizeUnspellable(t *testing.T) {
	m := load(t, noByteModel(t))
	plain := "Once upon a time there was a cat."
	_, u, err := m.TokenizeReport(plain, true, false)
	if err != nil || u.Count != 0 || u.Offset != -1 {
		t.Fatalf("plain text: %v, %+v", err, u)
	}
	text := "Once upon a time {there} was a café ~ 😀."
	toks, u, err := m.TokenizeReport(text, true, false)
	if err != nil {
		t.Fatalf("TokenizeReport: %v", err) // today: unordered_map::at
	}
	if u.Count < 4 || u.First != "{" || u.Offset != strings.Index(text, "{") {
		t.Errorf("unspelled = %+v, want >= 4 starting with \"{\" at %d", u, strings.Index(text, "{"))
	}
	unk := 0
	for _, tk := range toks {
		if s, _ := m.Detokenize([]int32{tk}, true); strings.Contains(s, "unk") || s == "" {
			unk++
		}
	}
	if unk < u.Count {
		t.Errorf("%d tokens look unknown, %d characters reported", unk, u.Count)
	}
	// the text before the first unspellable character tokenizes as before
	prefix, _, _ := m.TokenizeReport("Once upon a time ", true, false)
	for i := 0; i+1 < len(prefix); i++ {
		if toks[i] != prefix[i] {
			t.Errorf("token %d = %d, want %d (the prefix alone)", i, toks[i], prefix[i])
		}
	}
	// plain Tokenize gives the same tokens
	again, err := m.Tokenize(text, true, false)
	if err != nil || len(again) != len(toks) {
		t.Errorf("Tokenize: %d tokens, %v; TokenizeReport gave %d", len(again), err, len(toks))
	}
}
