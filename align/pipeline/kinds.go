package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/align-dev/align/align/jsonl"
)

// recordKind names what one line of a stage's file holds. A stage appends
// only to a file that holds its own kind of record (or nothing yet), so a
// mistyped --out never turns someone's pairs or prompts into a mix.
type recordKind string

const (
	kindCandidate  recordKind = "collect candidates"
	kindRankedPair recordKind = "ranked pairs"
	kindScreened   recordKind = "screened pairs"
	kindTie        recordKind = "rank ties"
	kindPair       recordKind = "preference pairs"
	kindPrompt     recordKind = "prompts"
	kindLedger     recordKind = "cost ledger entries"
	kindBatchJob   recordKind = "batch job records"
	kindUnknown    recordKind = "records align did not write"
)

func deadKind(stage string) recordKind { return recordKind(stage + " dead letters") }

// kindOf tells what raw (one JSON object) is, from its fields.
func kindOf(raw json.RawMessage) recordKind {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return kindUnknown
	}
	has := func(ks ...string) bool {
		for _, k := range ks {
			if _, ok := m[k]; !ok {
				return false
			}
		}
		return true
	}
	switch {
	case has("arn", "items", "model"):
		return kindBatchJob
	case has("stage", "kind", "input", "error"):
		var stage string
		json.Unmarshal(m["stage"], &stage)
		return deadKind(stage)
	case has("responses", "prompt_id", "generator"):
		return kindCandidate
	case has("kind", "verdicts", "candidates_id"):
		return kindTie
	case has("chosen", "rejected", "screen"):
		return kindScreened
	case has("chosen", "rejected", "candidates_id", "judge"):
		return kindRankedPair
	case has("chosen", "rejected"):
		return kindPair
	case has("time", "model", "usd"):
		return kindLedger
	case has("prompt") || has("messages"):
		return kindPrompt
	}
	return kindUnknown
}

// checkOutput returns an error naming path and line when path exists and
// holds a record that is not of kind want; flag names the option that chose
// the file. It reads only: a torn or corrupt line stops the check and is
// left to OpenAppend.
func checkOutput(path, flag string, want recordKind) error {
	if path == "-" || path == "" {
		return nil
	}
	rc, err := jsonl.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	jr := jsonl.NewReader(rc, path)
	for {
		raw, line, err := jr.NextRaw()
		if err == io.EOF || err != nil {
			return nil
		}
		if !json.Valid(raw) {
			continue // torn (the last line, which OpenAppend drops) or damaged (which it reports)
		}
		if got := kindOf(raw); got != want {
			return fmt.Errorf("%s:%d: holds %s, not %s: refusing to add to it (name another %s)", path, line, got, want, flag)
		}
	}
}

// checkInput returns an error when in ("-": standard input) cannot be
// opened, so a stage fails before it creates any file.
func checkInput(in string) error {
	if in == "-" {
		return nil
	}
	rc, err := jsonl.Open(in)
	if err != nil {
		return err
	}
	return rc.Close()
}
