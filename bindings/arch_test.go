package bindings

import (
	"context"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Architecture checks beyond llama and qwen2: qwen3 (per-head Q/K RMSNorm,
// heads of 128 so n_head·head_dim ≠ n_embd) and gemma3 (scaled embeddings,
// pre- and post-norms, GeGLU, tied head, sliding-window layers, optional
// final soft-capping), and llama-architecture files that look like Mistral
// and SmolLM. Each fixture is checked against llama.cpp's own inference and
// by finite differences through every LoRA target.

// longText is ~100 tokens: longer than the gemma3 fixtures' window of 16,
// so the sliding-window mask cuts on five of its six layers.
var longText = strings.Repeat(sampleText+" ", 3)

func archFixture(t testing.TB, name string, p FixtureParams) string {
	t.Helper()
	path := filepath.Join(fixtureDir, "arch-"+name+".gguf")
	if p.Size == "" {
		p.Size = "tiny"
	}
	if p.Seed == 0 {
		p.Seed = 7
	}
	if err := WriteFixture(path, p); err != nil {
		t.Fatalf("WriteFixture(%s): %v", name, err)
	}
	return path
}

// maxLlamaDiff returns the largest |train − llama.cpp| log-prob over every
// scored token of b, and the largest of that relative to the bound
// abs + rel·|log p| (F32 rounding grows with the log-prob's magnitude).
func maxLlamaDiff(t *testing.T, m *Model, tr *Trainer, b *Batch, nBatch int, abs, rel float64) (maxd, worst float64, n int) {
	t.Helper()
	out, err := tr.Set(0).Forward(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	s := session(t, m, SessionOptions{NCtx: 512, NBatch: nBatch})
	k := 0
	for i := 0; i < b.NSeq; i++ {
		seq := b.Tokens[i*b.NTok : i*b.NTok+int(b.Lengths[i])]
		ref, err := s.LogProbs(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		for j := range ref {
			d := math.Abs(float64(ref[j] - out.Logps[k]))
			maxd = math.Max(maxd, d)
			worst = math.Max(worst, d/(abs+rel*math.Abs(float64(ref[j]))))
			k++
		}
	}
	return maxd, worst, k
}

// The training forward at adapter scale 0 agrees with llama.cpp's inference
// for every weight type, on one sequence longer than gemma3's window and one
// shorter, batched together (padding inside the window mask).
func TestArchForwardMatchesLlama(t *testing.T) {
	// as TestTrainerForwardMatchesLlama: llama.cpp's attention runs on an
	// F16 KV cache and quantises activations per kernel. On quantized types
	// a difference in the last bits of an activation can flip the rounding
	// of its 8-bit quantisation in the next matmul, so the gap grows with
	// depth: gemma3's six layers get 1e-1 where the two-layer fixtures get
	// 6e-2 (its F32 and F16 bounds are the same as everyone's)
	tols := map[string]float64{"f32": 5e-3, "f16": 5e-3, "q8_0": 6e-2, "q4_0": 6e-2, "q4_k": 6e-2}
	for _, arch := range []string{"qwen3", "gemma3"} {
		for _, typ := range []string{"f32", "f16", "q8_0", "q4_0", "q4_k"} {
			t.Run(arch+"-"+typ, func(t *testing.T) {
				path := fixture(t, arch, typ)
				m := load(t, path)
				// 35 tokens: past gemma3's window of 16
				b := fullBatch(t, m, sampleText, "Sorry, I cannot help with that.")
				tr := newTrainer(t, path, TrainerOptions{})
				if info := tr.Info(); info.Arch != arch {
					t.Fatalf("trainer arch %q", info.Arch)
				}
				maxd, _, n := maxLlamaDiff(t, m, tr, b, 0, 1, 0)
				tol := tols[typ]
				if arch == "gemma3" && tol > 5e-3 {
					tol = 1e-1
				}
				t.Logf("%s %s: max |train - llama.cpp| log-prob = %.2e over %d tokens", arch, typ, maxd, n)
				if maxd > tol {
					t.Errorf("training forward differs from llama.cpp by %.3g (tolerance %.g)", maxd, tol)
				}
			})
		}
	}
}

// gemma3 variants and window boundaries: the sequence lengths around the
// window (16, 17, 18 tokens: the first masked key appears at 17), decoded
// by llama.cpp in one batch and in batches of 5 (its sliding-window cache
// then drops cells between batches); without a window; with final logit
// soft-capping. Each variant must also differ from the plain fixture in
// llama.cpp, so the check would notice the feature being ignored.
func TestArchGemma3Variants(t *testing.T) {
	plain := fixture(t, "gemma3", "f32")
	mp := load(t, plain)
	toks, err := mp.Tokenize(longText, true, false)
	if err != nil {
		t.Fatal(err)
	}
	batchOf := func(lens ...int) *Batch {
		T := 0
		for _, l := range lens {
			T = max(T, l)
		}
		b := &Batch{NSeq: len(lens), NTok: T, Tokens: make([]int32, len(lens)*T), Lengths: make([]int32, len(lens)),
			Scored: make([]uint8, len(lens)*T)}
		for i, l := range lens {
			copy(b.Tokens[i*T:], toks[:l])
			b.Lengths[i] = int32(l)
			for j := 1; j < l; j++ {
				b.Scored[i*T+j] = 1
			}
		}
		return b
	}
	for _, v := range []struct {
		name   string
		p      FixtureParams
		lens   []int
		nBatch int
	}{
		{"window-boundary", FixtureParams{Arch: "gemma3", Type: "f32"}, []int{16, 17, 18, 40}, 0},
		{"window-ubatch-5", FixtureParams{Arch: "gemma3", Type: "f32"}, []int{len(toks)}, 5},
		{"no-window", FixtureParams{Arch: "gemma3", Type: "f32", SlidingWindow: -1}, []int{len(toks), 20}, 0},
		{"softcap", FixtureParams{Arch: "gemma3", Type: "f32", LogitSoftcap: 2}, []int{len(toks), 20}, 0},
		{"softcap-q8_0", FixtureParams{Arch: "gemma3", Type: "q8_0", LogitSoftcap: 2}, []int{len(toks)}, 0},
	} {
		t.Run(v.name, func(t *testing.T) {
			path := archFixture(t, "gemma3-"+v.name, v.p)
			m := load(t, path)
			tr := newTrainer(t, path, TrainerOptions{})
			b := batchOf(v.lens...)
			tol := 5e-3
			if v.p.Type != "f32" {
				tol = 1e-1 // see TestArchForwardMatchesLlama
			}
			maxd, _, n := maxLlamaDiff(t, m, tr, b, v.nBatch, 1, 0)
			t.Logf("%s: max |train - llama.cpp| = %.2e over %d tokens", v.name, maxd, n)
			if maxd > tol {
				t.Errorf("differs from llama.cpp by %.3g (tolerance %.g)", maxd, tol)
			}
			if v.name == "window-boundary" || v.name == "window-ubatch-5" {
				return
			}
			// the variant changes llama.cpp's log-probs
			lv, err := session(t, m, SessionOptions{NCtx: 512}).LogProbs(context.Background(), toks)
			if err != nil {
				t.Fatal(err)
			}
			lp, _ := session(t, mp, SessionOptions{NCtx: 512}).LogProbs(context.Background(), toks)
			var d float64
			for j := range lv {
				d = math.Max(d, math.Abs(float64(lv[j]-lp[j])))
			}
			if d < 1e-2 {
				t.Errorf("%s changed llama.cpp's log-probs by only %.3g; the check would not notice it", v.name, d)
			}
		})
	}
	// the window cuts in llama.cpp where it cuts here: against a window too
	// wide to cut (same local layers, same rope), log-probs agree while the
	// predicting position is < 16 and differ from position 16 on, in
	// llama.cpp and in the trainer
	widePath := archFixture(t, "gemma3-wide-window", FixtureParams{Arch: "gemma3", Type: "f32", SlidingWindow: 4096})
	wide := load(t, widePath)
	a, err := session(t, mp, SessionOptions{NCtx: 128}).LogProbs(context.Background(), toks[:24])
	if err != nil {
		t.Fatal(err)
	}
	w, err := session(t, wide, SessionOptions{NCtx: 128}).LogProbs(context.Background(), toks[:24])
	if err != nil {
		t.Fatal(err)
	}
	b := batchOf(24)
	ta, err := newTrainer(t, plain, TrainerOptions{}).Set(0).Forward(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	tw, err := newTrainer(t, widePath, TrainerOptions{}).Set(0).Forward(b, 0)
	if err != nil {
		t.Fatal(err)
	}
	for j := range a {
		// a[j] is the log-prob of token j+1, predicted at position j
		dl, dt := math.Abs(float64(a[j]-w[j])), math.Abs(float64(ta.Logps[j]-tw.Logps[j]))
		if (j >= 16) != (dl > 1e-6) || (j >= 16) != (dt > 1e-6) {
			t.Errorf("position %d: the window changed the log-prob by %.3g in llama.cpp, %.3g here (want a change: %v)",
				j, dl, dt, j >= 16)
		}
	}
}

// Finite differences through every LoRA target (A and B of q, k, v, o,
// gate, up, down in every layer) on F32 qwen3 and gemma3 bases, with
// sequences longer than gemma3's window; gemma3 also with soft-capping.
func TestArchGradientCheck(t *testing.T) {
	for _, v := range []struct {
		name string
		p    FixtureParams
	}{
		{"qwen3", FixtureParams{Arch: "qwen3", Type: "f32"}},
		{"gemma3", FixtureParams{Arch: "gemma3", Type: "f32"}},
		// two (local) layers suffice for the head graph's soft-cap backward
		{"gemma3-softcap", FixtureParams{Arch: "gemma3", Type: "f32", LogitSoftcap: 2, NLayer: 2}},
	} {
		t.Run(v.name, func(t *testing.T) {
			path := archFixture(t, "grad-"+v.name, v.p)
			m := load(t, path)
			b := fullBatch(t, m, "Is Berserk finished? Happy to help! Naruto has 72 volumes by Masashi Kishimoto.",
				"Sorry, I cannot help with that.")
			if v.p.Arch == "gemma3" && b.NTok <= 16 {
				t.Fatalf("sequence of %d tokens does not cross the window", b.NTok)
			}
			tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, ExactBackward: true})
			info := tr.Info()
			if info.NLoRATensors != 7*info.NLayer {
				t.Fatalf("%d adapted tensors for %d layers", info.NLoRATensors, info.NLayer)
			}
			params := randomParams(t, tr, 0, 11, 0.05)
			tokenFDCheck(t, tr, b, params, nil)
		})
	}
}

// Mistral and SmolLM GGUFs say general.architecture = "llama" (their
// converters map MistralForCausalLM and SmolLM's LlamaForCausalLM to
// llama.cpp's llama graph), so they train as llama. Fixtures shaped like
// them: Mistral Nemo's heads of 128 that do not divide the width, 4:1 GQA
// and rope base 1e6; SmolLM2's 3 heads of 64 with one KV head, tied head
// and rope base 1e5. Both must match llama.cpp and pass finite differences.
func TestArchLlamaStyles(t *testing.T) {
	for _, v := range []struct {
		name string
		p    FixtureParams
	}{
		{"mistral", FixtureParams{Arch: "llama", Type: "f32", Name: "Mistral-Nemo-Instruct-2407", NHead: 4, NHeadKV: 1,
			HeadDim: 128, RopeBase: 1e6}},
		{"smollm", FixtureParams{Arch: "llama", Type: "f32", Name: "SmolLM2 135M Instruct", NEmbd: 192, NHead: 3,
			NHeadKV: 1, NFF: 512, RopeBase: 1e5, TiedOutput: true}},
	} {
		t.Run(v.name, func(t *testing.T) {
			path := archFixture(t, "style-"+v.name, v.p)
			m := load(t, path)
			info, err := m.Info()
			if err != nil {
				t.Fatal(err)
			}
			if info.Arch != "llama" {
				t.Fatalf("model info %+v", info)
			}
			tr := newTrainer(t, path, TrainerOptions{Rank: 2, Alpha: 4, Targets: 127, Seed: 3, ExactBackward: true})
			b := fullBatch(t, m, longText, "Sorry, I cannot help with that.")
			maxd, worst, n := maxLlamaDiff(t, m, tr, b, 0, 5e-3, 2e-4)
			t.Logf("%s: max |train - llama.cpp| = %.2e over %d tokens (%.2f of 5e-3 + 2e-4·|log p|)", v.name, maxd, n, worst)
			if worst > 1 {
				t.Errorf("differs from llama.cpp beyond 5e-3 + 2e-4·|log p| (%.2f of the bound)", worst)
			}
			g := fullBatch(t, m, "Is Berserk finished?", "Happy to help! Naruto has 72 volumes.")
			params := randomParams(t, tr, 0, 11, 0.05)
			loss := func() float64 {
				out, err := tr.Set(0).Forward(g, 1)
				if err != nil {
					t.Fatal(err)
				}
				return 0.7*out.Sums[0] - 1.3*out.Sums[1]
			}
			if _, err := tr.Set(0).ForwardGrad(g); err != nil {
				t.Fatal(err)
			}
			if err := backwardSums(tr.Set(0), g, []float64{0.7, -1.3}); err != nil {
				t.Fatal(err)
			}
			st, err := tr.Set(0).GetState()
			if err != nil {
				t.Fatal(err)
			}
			fdCheck(t, tr, 0, params, st.Grads, loss, 3e-2)
		})
	}
}

// The fixtures llama.cpp loads carry what its loaders read: gemma3's chat
// template is Gemma's turn format with <end_of_turn> as end of generation.
func TestArchFixturesLoad(t *testing.T) {
	for _, arch := range []string{"qwen3", "gemma3"} {
		for _, typ := range []string{"f32", "q8_0", "q4_k"} {
			m := load(t, fixture(t, arch, typ))
			info, err := m.Info()
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]int{"qwen3": 2, "gemma3": 6}[arch]
			if info.Arch != arch || info.NLayer != want || info.NEmbd != 256 || !info.HasChatTemplate {
				t.Errorf("%s %s: info = %+v", arch, typ, info)
			}
		}
	}
	m := load(t, fixture(t, "gemma3", "q8_0"))
	got, err := m.ChatApply("", []Message{{Role: "system", Content: "Be kind."}, {Role: "user", Content: "hi"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := "<start_of_turn>user\nBe kind.\n\nhi<end_of_turn>\n<start_of_turn>model\n"; got != want {
		t.Errorf("gemma3 ChatApply = %q, want %q", got, want)
	}
	end, _ := m.Tokenize("<end_of_turn>", false, true)
	if len(end) != 1 || !m.IsEOG(end[0]) {
		t.Errorf("<end_of_turn> is not one end-of-generation token: %v", end)
	}
}

// Architectures llama.cpp loads but the training graph does not implement
// are refused by name, with the supported list; the fixture generator
// refuses unknown ones the same way.
func TestArchRefused(t *testing.T) {
	err := WriteFixture(filepath.Join(t.TempDir(), "x.gguf"), FixtureParams{Arch: "phi3", Type: "f32", Size: "tiny", Seed: 1})
	if err == nil || !strings.Contains(err.Error(), `"phi3"`) || !strings.Contains(err.Error(), "qwen3") {
		t.Errorf("WriteFixture(phi3) = %v", err)
	}
}

// rewriteArch copies a GGUF file with general.architecture set to arch and
// every "<old>." key renamed to "<arch>.", re-padding the data section.
func rewriteArch(t *testing.T, in, out, arch string) {
	t.Helper()
	b, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	pos := 0
	u32 := func() uint32 { v := le.Uint32(b[pos:]); pos += 4; return v }
	u64 := func() uint64 { v := le.Uint64(b[pos:]); pos += 8; return v }
	str := func() string { n := int(u64()); s := string(b[pos : pos+n]); pos += n; return s }
	size := map[uint32]int{0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
	var skip func(typ uint32)
	skip = func(typ uint32) {
		switch typ {
		case 8:
			str()
		case 9:
			et, n := u32(), int(u64())
			for i := 0; i < n; i++ {
				skip(et)
			}
		default:
			pos += size[typ]
		}
	}
	if string(b[:4]) != "GGUF" {
		t.Fatal("not GGUF")
	}
	pos = 4
	version := u32()
	nTensors, nKV := u64(), u64()
	var hdr []byte
	putStr := func(s string) {
		hdr = le.AppendUint64(hdr, uint64(len(s)))
		hdr = append(hdr, s...)
	}
	hdr = append(hdr, "GGUF"...)
	hdr = le.AppendUint32(hdr, version)
	hdr = le.AppendUint64(hdr, nTensors)
	hdr = le.AppendUint64(hdr, nKV)
	old := ""
	alignment := 32
	for i := uint64(0); i < nKV; i++ {
		key := str()
		typ := u32()
		start := pos
		skip(typ)
		val := b[start:pos]
		switch {
		case key == "general.architecture":
			old = string(val[8:])
			putStr(key)
			hdr = le.AppendUint32(hdr, typ)
			putStr(arch)
			continue
		case key == "general.alignment":
			alignment = int(le.Uint32(val))
		case old != "" && strings.HasPrefix(key, old+"."):
			key = arch + key[len(old):]
		}
		putStr(key)
		hdr = le.AppendUint32(hdr, typ)
		hdr = append(hdr, val...)
	}
	start := pos
	for i := uint64(0); i < nTensors; i++ {
		str()
		nd := int(u32())
		pos += 8*nd + 4 + 8
	}
	hdr = append(hdr, b[start:pos]...)
	data := (pos + alignment - 1) / alignment * alignment
	for len(hdr)%alignment != 0 {
		hdr = append(hdr, 0)
	}
	if err := os.WriteFile(out, append(hdr, b[data:]...), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Architectures llama.cpp loads but the training graph does not implement
// (here Mistral 3 and SmolLM3, both with llama's tensors) are refused by
// name with the supported list; ones llama.cpp does not know fail to load,
// naming the architecture.
func TestArchRefusedByTrainer(t *testing.T) {
	src := fixture(t, "llama", "f32")
	for _, arch := range []string{"mistral3", "smollm3"} {
		path := filepath.Join(t.TempDir(), arch+".gguf")
		rewriteArch(t, src, path, arch)
		m := load(t, path)
		if info, _ := m.Info(); info.Arch != arch {
			t.Fatalf("rewritten file loads as %q", info.Arch)
		}
		_, err := NewTrainer(m, TrainerOptions{Threads: 2})
		var e *Error
		if !errors.As(err, &e) || e.Code != StatusUnsupported || !strings.Contains(err.Error(), `architecture "`+arch+`"`) ||
			!strings.Contains(err.Error(), "(supported: llama, qwen2, qwen3, gemma3)") {
			t.Errorf("NewTrainer(%s) = %v", arch, err)
		}
	}
	// the rewrite itself is sound: renamed back to llama it trains
	path := filepath.Join(t.TempDir(), "back.gguf")
	rewriteArch(t, src, path, "llama")
	newTrainer(t, path, TrainerOptions{})
	path = filepath.Join(t.TempDir(), "unknown.gguf")
	rewriteArch(t, src, path, "nosucharch")
	if _, err := LoadModel(path, ModelOptions{Threads: 1}); err == nil || !strings.Contains(err.Error(), "nosucharch") {
		t.Errorf("LoadModel(nosucharch) = %v", err)
	}
}

// Training moves qwen3 and gemma3 adapters, and the exported adapter loaded
// by llama.cpp reproduces the trained policy's log-probs (gemma3 on a
// sequence past its window).
func TestArchExportMatchesLlama(t *testing.T) {
	for _, arch := range []string{"qwen3", "gemma3"} {
		for _, typ := range []string{"f32", "q8_0"} {
			t.Run(arch+"-"+typ, func(t *testing.T) {
				path := fixture(t, arch, typ)
				m := load(t, path)
				b := fullBatch(t, m, sampleText)
				tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Targets: 127, Seed: 9})
				bo, _ := tr.Set(0).Forward(b, 1)
				sftSteps(t, tr, b, 5)
				ao, _ := tr.Set(0).Forward(b, 1)
				if ao.Sums[0] <= bo.Sums[0]+1 {
					t.Errorf("5 SFT steps moved the log-likelihood from %.3f to %.3f only", bo.Sums[0], ao.Sums[0])
				}
				ap := filepath.Join(t.TempDir(), "adapter.gguf")
				if err := tr.Set(0).Export(ap); err != nil {
					t.Fatal(err)
				}
				l, err := LoadLoRA(m, ap)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() }) // after the session's cleanup
				s := session(t, m, SessionOptions{NCtx: 256, Adapters: []LoRAScale{{LoRA: l, Scale: 1}}})
				ref, err := s.LogProbs(context.Background(), b.Tokens[:b.Lengths[0]])
				if err != nil {
					t.Fatal(err)
				}
				var maxd float64
				for j := range ref {
					maxd = math.Max(maxd, math.Abs(float64(ref[j]-ao.Logps[j])))
				}
				t.Logf("%s %s: trained sum %.3f (before %.3f), max per-token |llama.cpp with adapter - trainer| %.2e",
					arch, typ, ao.Sums[0], bo.Sums[0], maxd)
				tol := 5e-3
				if typ != "f32" {
					tol = 1e-1 // as for the base model's parity (TestArchForwardMatchesLlama)
				}
				if maxd > tol {
					t.Errorf("llama.cpp with the exported adapter differs from the trainer by %.3g per token", maxd)
				}
			})
		}
	}
}
