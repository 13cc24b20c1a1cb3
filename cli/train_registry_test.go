package cli

import (
	"regexp"
	"strings"
	"testing"

	"github.com/align-dev/align/align/objective"
)

// `align train` takes its methods from align/objective's registry: help
// lists each with its summary, --method accepts each, the driver is the
// row's kind's, and the flags keyed on the registry (--beta, --beta-table,
// --ref-adapter, --data, --prompts) apply as the row says and are refused
// with exit 2 otherwise.
func TestTrainMethodsFromRegistry(t *testing.T) {
	code, help, _ := run(t, "", "train", "--help")
	if code != 0 {
		t.Fatalf("train --help: exit %d", code)
	}
	rows := map[string]trainFlag{}
	for _, f := range trainFlags() {
		rows[f.name()] = f
	}
	for _, m := range objective.Methods() {
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(m.Name) + `\s+` + regexp.QuoteMeta(m.Summary) + `$`).MatchString(help) {
			t.Errorf("train --help does not list %s with its summary %q", m.Name, m.Summary)
		}
		if !strings.Contains(rows["method"].flag.(interface{ GetUsage() string }).GetUsage(), m.Name) {
			t.Errorf("--method's usage does not name %s", m.Name)
		}
		if got := newJob(m.Name).rl(); got != (m.Kind != objective.Dataset) {
			t.Errorf("%s (kind %v): align/rl runs it %v", m.Name, m.Kind, got)
		}
		for flag, want := range map[string]bool{
			"beta":        m.Beta != "",
			"beta-table":  m.BetaTable,
			"ref-adapter": m.Reference != objective.RefNever,
			"data":        m.Kind == objective.Dataset,
			"prompts":     m.Kind != objective.Dataset,
		} {
			if got := rows[flag].applies(m.Name); got != want {
				t.Errorf("--%s applies to --method %s: %v, want %v", flag, m.Name, got, want)
			}
			if want {
				continue
			}
			// refused before anything is read (online DPO first needs a
			// way to rank its samples)
			args := []string{"train", "--method", m.Name, "--" + flag, "1"}
			if m.Kind == objective.Online {
				args = append(args, "--reward", "contains:z")
			}
			code, stdout, errs := run(t, "", args...)
			if code != ExitUsage || stdout != "" || !strings.Contains(errs, "--"+flag+" does not apply to --method "+m.Name) {
				t.Errorf("--method %s --%s 1: exit %d, stderr %q; want exit 2 naming both", m.Name, flag, code, errs)
			}
		}
	}
	code, _, errs := run(t, "", "train", "--method", "bogus")
	if code != ExitUsage || !strings.Contains(errs, strings.Join(objective.Names(), ", ")) {
		t.Errorf("--method bogus: exit %d, %q; want exit 2 listing every method", code, errs)
	}
}
