package objective

import "strings"

// Methods whose losses live outside this package's files or have no file
// of their own here: SFT's token negative log-likelihood (align/train), the
// reward model's Bradley–Terry loss (RewardLoss), PPO's and GRPO's
// surrogates (rl.go) and online DPO (PreferenceLoss on pairs the policy
// samples, align/rl). The others are named beside their losses: DPO, IPO,
// CDPO, Hinge (preference.go), ORPO, SimPO, KTO.
const (
	SFT       = "sft"
	RM        = "rm"
	PPO       = "ppo"
	GRPO      = "grpo"
	OnlineDPO = "online-dpo"
)

// Kind is which driver runs a method.
type Kind int

const (
	// Dataset: a loss over a dataset's examples, run by align/train.
	Dataset Kind = iota + 1
	// Rollout: a loss over completions sampled from the live policy and
	// scored by a reward, run by align/rl (its rolloutObjectives).
	Rollout
	// Online: DPO on pairs sampled from the live policy and ranked as it
	// trains, run by align/rl's online stepper.
	Online
)

func (k Kind) String() string {
	switch k {
	case Dataset:
		return "dataset"
	case Rollout:
		return "rollout"
	case Online:
		return "online"
	}
	return "unknown"
}

// Layout is how a training micro-batch's examples become sequences.
type Layout int

const (
	// LayoutPair: each example is two sequences, prompt + chosen and
	// prompt + rejected.
	LayoutPair Layout = iota
	// LayoutSingle: each example is one sequence, prompt + chosen.
	LayoutSingle
	// LayoutUnpaired: each example is one sequence, prompt + its labelled
	// completion (desirable or not).
	LayoutUnpaired
	// LayoutRolloutGroup: each prompt's sampled completions, response
	// tokens scored.
	LayoutRolloutGroup
)

func (l Layout) String() string {
	switch l {
	case LayoutPair:
		return "pair"
	case LayoutSingle:
		return "single"
	case LayoutUnpaired:
		return "unpaired"
	case LayoutRolloutGroup:
		return "rollout group"
	}
	return "unknown"
}

// Reference is whether a method reads the frozen reference's log-probs
// (a reference pass).
type Reference int

const (
	RefNever Reference = iota
	RefAlways
	// RefOptional: with some settings only (GRPO: β > 0 or --max-kl).
	RefOptional
)

func (r Reference) String() string {
	switch r {
	case RefNever:
		return "never"
	case RefAlways:
		return "always"
	case RefOptional:
		return "optional"
	}
	return "unknown"
}

// Method is what is method-specific about a training method and the same
// for every driver and command: align/train and align/rl hold only the
// implementations, looked up by Name (each has a test that they match
// these rows), and the command line derives its method lists, flag
// applicability and help from them.
type Method struct {
	Name  string // --method
	Title string // in prose ("cDPO", "reward model")
	// Summary is one line for --help.
	Summary   string
	Kind      Kind
	Layout    Layout // of a training micro-batch (KTO scores held-out pairs as pairs)
	Reference Reference
	// Preference: the DPO family, PreferenceLoss(Name, …) of a pair
	// against the reference.
	Preference bool
	// Beta is what --beta is to the method ("": it takes none).
	Beta string
	// BetaTable: β comes per objective of the data (DefaultBetas,
	// --beta-table) unless --beta overrides it.
	BetaTable bool
	// Score is the held-out metric early stopping (--patience) watches.
	Score Score
}

// Score is a held-out metric early stopping watches.
type Score string

const (
	ScoreMargin Score = "margin" // rewards/margins, higher is better
	ScoreLoss   Score = "loss"   // loss, lower is better
	ScoreReward Score = "reward" // the reward's mean, higher is better
)

// NeedsReference reports whether the method reads the reference's
// log-probs; optional says whether an optional reference is in use.
func (m Method) NeedsReference(optional bool) bool {
	return m.Reference == RefAlways || m.Reference == RefOptional && optional
}

const betaTable = "β for every objective (overrides the table)"

// methods is every method, in the order help lists them: dataset methods,
// then online DPO, then the rollout methods.
var methods = []Method{
	{Name: SFT, Title: "SFT", Kind: Dataset, Layout: LayoutSingle, Reference: RefNever, Score: ScoreLoss,
		Summary: "supervised fine-tuning: token NLL of the chosen responses"},
	{Name: DPO, Title: "DPO", Kind: Dataset, Layout: LayoutPair, Reference: RefAlways, Preference: true, Beta: betaTable, BetaTable: true, Score: ScoreMargin,
		Summary: "direct preference optimisation on pairs, against a reference"},
	{Name: IPO, Title: "IPO", Kind: Dataset, Layout: LayoutPair, Reference: RefAlways, Preference: true, Beta: betaTable, BetaTable: true, Score: ScoreMargin,
		Summary: "identity preference optimisation: squared loss on the margin"},
	{Name: CDPO, Title: "cDPO", Kind: Dataset, Layout: LayoutPair, Reference: RefAlways, Preference: true, Beta: betaTable, BetaTable: true, Score: ScoreMargin,
		Summary: "conservative DPO: DPO with label smoothing (default 0.1)"},
	{Name: Hinge, Title: "hinge", Kind: Dataset, Layout: LayoutPair, Reference: RefAlways, Preference: true, Beta: betaTable, BetaTable: true, Score: ScoreMargin,
		Summary: "hinge loss on DPO's margin (SLiC)"},
	{Name: KTO, Title: "KTO", Kind: Dataset, Layout: LayoutUnpaired, Reference: RefAlways, Beta: betaTable, BetaTable: true, Score: ScoreMargin,
		Summary: "Kahneman–Tversky optimisation on unpaired feedback or pairs"},
	{Name: RM, Title: "reward model", Kind: Dataset, Layout: LayoutPair, Reference: RefNever, Score: ScoreMargin,
		Summary: "reward model: LoRA and a scalar head, Bradley–Terry loss"},
	{Name: ORPO, Title: "ORPO", Kind: Dataset, Layout: LayoutPair, Reference: RefNever, Score: ScoreLoss,
		Summary: "odds-ratio preference optimisation, one stage, no reference"},
	{Name: SimPO, Title: "SimPO", Kind: Dataset, Layout: LayoutPair, Reference: RefNever, Beta: "β of the length-normalised reward", Score: ScoreMargin,
		Summary: "length-normalised preference optimisation, no reference"},
	{Name: OnlineDPO, Title: "online DPO", Kind: Online, Layout: LayoutPair, Reference: RefAlways, Beta: "DPO's β", Score: ScoreReward,
		Summary: "DPO on pairs sampled from the policy, ranked as it trains"},
	{Name: PPO, Title: "PPO", Kind: Rollout, Layout: LayoutRolloutGroup, Reference: RefAlways, Score: ScoreReward,
		Summary: "PPO on prompts and a reward: value head, GAE, KL penalty"},
	{Name: GRPO, Title: "GRPO", Kind: Rollout, Layout: LayoutRolloutGroup, Reference: RefOptional, Beta: "weight of the k3 KL term", Score: ScoreReward,
		Summary: "GRPO on prompts and a reward: group-relative advantages"},
}

// byName indexes methods.
var byName = func() map[string]int {
	m := make(map[string]int, len(methods))
	for i, r := range methods {
		m[r.Name] = i
	}
	return m
}()

// Methods returns every method's row, in help order.
func Methods() []Method { return append([]Method(nil), methods...) }

// Lookup returns the row of the method named name.
func Lookup(name string) (Method, bool) {
	i, ok := byName[name]
	if !ok {
		return Method{}, false
	}
	return methods[i], true
}

// KindOf is the kind of the method named name (0 for none).
func KindOf(name string) Kind {
	m, _ := Lookup(name)
	return m.Kind
}

// Names lists the methods of the given kinds (none: every method), in
// help order.
func Names(kinds ...Kind) []string {
	return Where(func(m Method) bool {
		if len(kinds) == 0 {
			return true
		}
		for _, k := range kinds {
			if m.Kind == k {
				return true
			}
		}
		return false
	})
}

// Where lists the methods for which keep is true, in help order.
func Where(keep func(Method) bool) []string {
	var out []string
	for _, m := range methods {
		if keep(m) {
			out = append(out, m.Name)
		}
	}
	return out
}

// Titles is "SFT, DPO, …, PPO, GRPO": every method as prose names it.
func Titles() string {
	t := make([]string, len(methods))
	for i, m := range methods {
		t[i] = m.Title
	}
	return strings.Join(t, ", ")
}
