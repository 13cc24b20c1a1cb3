package bindings

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A set exported and loaded into a fresh trainer scores exactly as it did:
// LoRA through the adapter file, heads through the heads file.
func TestLoadSetRoundTrip(t *testing.T) {
	path := fixture(t, "llama", "f32")
	opt := TrainerOptions{Rank: 4, Alpha: 8, Targets: TargetQ | TargetV | TargetDown, Seed: 9}
	tr := newTrainer(t, path, opt)
	b := fullBatch(t, tr.Model(), sampleText, "Two short lines.")
	sftSteps(t, tr, b, 3)
	heads := []HeadSpec{{Name: "score", Dim: 1}, {Name: "pair", Dim: 2}}
	hs, err := tr.AddSet(SetOptions{Name: "reward", Heads: heads, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	b.HeadAt = make([]uint8, b.NSeq*b.NTok)
	for i := 0; i < b.NSeq; i++ {
		b.HeadAt[i*b.NTok+int(b.Lengths[i])-1] = 1
	}
	want, err := tr.Set(0).Forward(b, 1)
	if err != nil {
		t.Fatal(err)
	}
	wantHeads, err := hs.Forward(b, 1)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ad, hd := filepath.Join(dir, "adapter.gguf"), filepath.Join(dir, "head.gguf")
	if err := tr.Set(0).Export(ad); err != nil {
		t.Fatal(err)
	}
	if err := hs.ExportHeads(hd); err != nil {
		t.Fatal(err)
	}
	fa, err := ReadAdapterFile(ad)
	if err != nil {
		t.Fatal(err)
	}
	if fa.Kind != "lora" || fa.Arch != "llama" || fa.Rank != 4 || fa.Alpha != 8 || fa.Targets != opt.Targets {
		t.Fatalf("adapter file described as %+v", fa)
	}
	fh, err := ReadAdapterFile(hd)
	if err != nil {
		t.Fatal(err)
	}
	if fh.Kind != "heads" || len(fh.Heads) != 2 || fh.Heads[0] != heads[0] || fh.Heads[1] != heads[1] {
		t.Fatalf("heads file described as %+v", fh)
	}

	opt.Seed = 77 // a different initialisation, overwritten by the load
	tr2 := newTrainer(t, path, opt)
	if err := tr2.Set(0).Load(ad); err != nil {
		t.Fatal(err)
	}
	hs2, err := tr2.AddSet(SetOptions{Name: "reward", Heads: fh.Heads, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs2.Load(hd); err != nil {
		t.Fatal(err)
	}
	got, err := tr2.Set(0).Forward(b, 1)
	if err != nil {
		t.Fatal(err)
	}
	gotHeads, err := hs2.Forward(b, 1)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want.Sums {
		if got.Sums[i] != want.Sums[i] {
			t.Errorf("sequence %d: log-prob %.9g after the load, %.9g before", i, got.Sums[i], want.Sums[i])
		}
	}
	if len(gotHeads.Heads) != 2*3 || len(gotHeads.Heads) != len(wantHeads.Heads) {
		t.Fatalf("%d head values, want 6", len(gotHeads.Heads))
	}
	for i := range wantHeads.Heads {
		if gotHeads.Heads[i] != wantHeads.Heads[i] {
			t.Errorf("head value %d: %.9g after the load, %.9g before", i, gotHeads.Heads[i], wantHeads.Heads[i])
		}
	}
	st, err := tr2.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range st.M {
		if x != 0 {
			t.Fatal("loaded parameters kept Adam moments")
		}
	}
}

func TestLoadSetRefusesMismatches(t *testing.T) {
	path := fixture(t, "llama", "f32")
	tr := newTrainer(t, path, TrainerOptions{Rank: 4, Alpha: 8, Targets: TargetQ | TargetV, Seed: 9})
	dir := t.TempDir()
	ad := filepath.Join(dir, "adapter.gguf")
	if err := tr.Set(0).Export(ad); err != nil {
		t.Fatal(err)
	}
	before, err := tr.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	junk := filepath.Join(dir, "junk.gguf")
	if err := os.WriteFile(junk, []byte("not a gguf"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opt  TrainerOptions
		file string
		want string
	}{
		{"rank", TrainerOptions{Rank: 8, Alpha: 8, Targets: TargetQ | TargetV}, ad, "rank 8"},
		{"alpha", TrainerOptions{Rank: 4, Alpha: 16, Targets: TargetQ | TargetV}, ad, "alpha"},
		{"targets", TrainerOptions{Rank: 4, Alpha: 8, Targets: TargetQ}, ad, "targets differ"},
		{"junk", TrainerOptions{Rank: 4, Alpha: 8, Targets: TargetQ | TargetV}, junk, "not a GGUF"},
		{"missing", TrainerOptions{Rank: 4, Alpha: 8, Targets: TargetQ | TargetV}, filepath.Join(dir, "nope.gguf"), "nope.gguf"},
		{"model", TrainerOptions{Rank: 4, Alpha: 8, Targets: TargetQ | TargetV}, path, "not a LoRA adapter or heads file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tr2 := newTrainer(t, path, c.opt)
			err := tr2.Set(0).Load(c.file)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("LoadSet: %v, want an error containing %q", err, c.want)
			}
		})
	}
	// heads into a set without heads, and a LoRA file into a heads-only set
	if err := tr.Set(0).ExportHeads(filepath.Join(dir, "h.gguf")); err == nil || !strings.Contains(err.Error(), "no heads") {
		t.Fatalf("ExportHeads of a set without heads: %v", err)
	}
	hs, err := tr.AddSet(SetOptions{Name: "value", Heads: []HeadSpec{{Name: "value", Dim: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := hs.Load(ad); err == nil || !strings.Contains(err.Error(), "targets differ") {
		t.Fatalf("LoadSet of a LoRA file into a heads-only set: %v", err)
	}
	after, err := tr.Set(0).GetState()
	if err != nil {
		t.Fatal(err)
	}
	for i := range before.Params {
		if before.Params[i] != after.Params[i] {
			t.Fatal("a failed load changed the set")
		}
	}
}
