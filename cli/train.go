package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/urfave/cli/v2"

	"github.com/align-dev/align/align/objective"
	"github.com/align-dev/align/align/train"
)

func init() { register(trainCommand) }

func trainCommand() *cli.Command {
	return &cli.Command{
		Name:      "train",
		Usage:     "train a LoRA adapter on a frozen GGUF model (" + objective.Titles() + ")",
		ArgsUsage: " ",
		Description: `Trains LoRA adapters on preference pairs (JSON Lines, plain or TRL
conversational form, .zst allowed) with the model's chat template, and
writes OUT/metrics.jsonl (one JSON object per step; held-out rows carry
"split": "eval"), OUT/adapter.gguf (llama.cpp's LoRA format), checkpoints
and OUT/summary.json.

` + methodsHelp() + `
DPO β comes from each pair's objective (safety 0.05, tone 0.1, escalation
0.1, accuracy 0.3; other objectives 0.1); --beta overrides all, and
--beta-table reads {"objective": β, ...} from a JSON file and overrides those
entries ("default" sets the β of unnamed objectives). Reference
log-probs (adapter off) are computed once and cached in OUT.

--out must be a new or empty folder: an existing run is continued with
--resume or replaced with --force (which removes only the files align wrote
there). Paths are stored absolute and the model and data are hashed, so
--resume DIR works from any directory and refuses inputs that changed;
with --resume only --epochs, --max-steps, --threads, --device and --recompute may change
(repeating a setting with the run's own value, e.g. --model or an exported
ALIGN_* variable, is no change). --data - reads standard input and keeps a
copy in the run. A flag the method does not use (--beta with --method sft,
--grad-accum with ppo, --kl-coef with grpo, ...) is refused with exit 2.

Two stages (SFT, then DPO against the SFT model): train SFT, then pass its
adapter as --ref-adapter to the DPO run. The reference is then base + that
adapter (frozen), the policy starts from it (step 0's margins are exactly 0)
with its rank, alpha and targets, and OUT/adapter.gguf is one adapter that
llama.cpp loads alone: the SFT update and the DPO update together.
--init-adapter FILE starts the policy from FILE instead (with --ref-adapter:
from another adapter; without: against the plain base). Both files are
hashed like the model, for --resume.

--method kto trains on unpaired feedback (Kahneman–Tversky optimisation,
Ethayarajh et al. 2024; TRL's KTOTrainer, loss "kto"): TRL's unpaired
format, {"prompt" (or "messages"), "completion", "label": true|false}
(align import --unpaired writes it from thumbs up/down logs), and pair
files too (each pair is one desirable and one undesirable example; the
two forms may be mixed). Each example's loss is λ_D(1 − σ(β(r − z₀))) if
desirable, λ_U(1 − σ(β(z₀ − r))) if not, with r = log π(y|x) −
log π_ref(y|x) and z₀ the policy's KL from the reference estimated on
mismatched sequences (each prompt with another example's completion, as
TRL shifts completions within a batch), without gradient, clamped at 0,
over each step's examples. --desirable-weight and --undesirable-weight
set λ_D and λ_U (1 and 1); when λ_D·n_D / (λ_U·n_U) is outside the
paper's [1, 4/3] align prints the ranges that bring it there and a
suggested weight. Rows log TRL's names (loss, kl, rewards/chosen_sum,
logps/chosen_sum, count/chosen, the same for rejected, and their means);
held-out pairs (--eval-data) also log rewards/accuracies and
rewards/margins per pair.

--method rm trains a reward model: LoRA plus a scalar head on the final
hidden state of each response's last token, with the Bradley–Terry loss
−log σ(r_chosen − r_rejected − m) (+ --center-coef × (r_chosen +
r_rejected)²); held-out rows log rewards/accuracies and rewards/margins.
--margin-from scores takes m from the judge's scores align rank records
(mean criterion score of chosen − rejected), --margin-from margin from a
numeric "margin" field. It writes OUT/adapter.gguf (llama.cpp LoRA) and
OUT/head.gguf (align's heads GGUF: general.type "align.heads", tensors
heads.weight [n_embd, 1] and heads.bias [1], F32); align score --reward OUT
and the rm:OUT reward of PPO and GRPO load both.

--method orpo (Hong et al. 2024) is SFT and preference in one stage, with
no reference model and no reference pass: the chosen response's mean token
NLL plus --orpo-lambda λ (default 0.1, TRL's) × −log σ(log odds(chosen) −
log odds(rejected)), where a response's odds are p/(1−p) of its mean
per-token probability p. Rows add TRL's nll_loss, log_odds_ratio and
log_odds_chosen; the rewards are λ × the mean token log-probs, and
--patience watches the held-out loss.

--method simpo (Meng et al. 2024) rewards a response with β × its mean
token log-prob, with no reference: −log σ(β·(mean log π(chosen) − mean log
π(rejected)) − γ). --beta is β (default 2), --simpo-gamma the target margin
γ in reward units (default 0.5, TRL's simpo_gamma; gamma_beta_ratio is
γ/β); --label-smoothing and --rpo-alpha (CPO-SimPO) apply. ORPO and SimPO
refuse --ref-adapter and --beta-table; --init-adapter works.

--method ppo|grpo trains on prompts (--prompts) against a reward spec
(--reward rm:DIR, rules:CATALOG.json, contains:PHRASE, a judge): PPO with a
value head and a per-token KL penalty (--kl-coef), GRPO with group-relative
advantages over --group completions per prompt and a k3 KL term (--beta).
--init-adapter and --ref-adapter work as for DPO (SFT, then GRPO against the
SFT model). The reward spec is stored with absolute paths and the files it
reads (rm: runs, rules catalogs) are hashed like the model: a resume
refuses one that changed.

--method online-dpo makes its pairs from the policy as it trains: each step
samples --samples completions (default 2) of --rollout-batch prompts, ranks
them with a pairwise --judge (both orders, as align rank; ties and
disagreeing orders are skipped and counted) or a scalar --reward, and takes
a DPO step (--beta, default 0.1) on the best against the worst, against the
initial policy. --rounds N (iterative DPO) moves the reference to the policy
at the start of each of N rounds. Samples and verdicts are appended to
OUT/judged.jsonl before each step trains, so a resume never pays for a
verdict twice; the pairs go to OUT/pairs.jsonl (usable as --data). PPO, GRPO
and online DPO record paid judge calls in OUT/ledger.jsonl; --max-usd stops
with a checkpoint and exit 3 (resume with a higher --max-usd).

Ctrl-C saves a checkpoint and exits with code 4; --resume OUT continues and
ends with the same adapter as an uninterrupted run. Bad flag values exit
with code 2 before anything is read or written.

Example:
   align train --method dpo --model models/tiny-q8_0.gguf --data testdata/pairs/train.jsonl \
      --eval-data testdata/pairs/eval.jsonl --out runs/dpo --epochs 3
   align train --resume runs/dpo
   align train --method sft --model M --data pairs.jsonl --out runs/sft
   align import --feedback thumbs.jsonl --unpaired --out-train kto.jsonl --out-eval kto-eval.jsonl
   align train --method kto --model M --data kto.jsonl --eval-data testdata/pairs/eval.jsonl \
      --out runs/kto --undesirable-weight 1.2
   align train --method dpo --model M --data pairs.jsonl --out runs/dpo2 \
      --ref-adapter runs/sft/adapter.gguf
   align train --method rm --model models/tiny-q8_0.gguf --data testdata/pairs/train.jsonl \
      --eval-data testdata/pairs/eval.jsonl --out runs/rm
   align train --method orpo --model M --data pairs.jsonl --eval-data eval.jsonl --out runs/orpo
   align train --method simpo --model M --data pairs.jsonl --beta 2.5 --simpo-gamma 1.25 --out runs/simpo
   align train --method grpo --model M --prompts testdata/prompts/rl-toy.jsonl \
      --reward rules:testdata/catalog.json --ref-adapter runs/sft/adapter.gguf --out runs/grpo
   align train --method online-dpo --model M --prompts testdata/prompts/rl-toy.jsonl \
      --judge rules:testdata/catalog.json --samples 4 --rounds 3 --out runs/odpo`,
		Flags:  cliFlags(trainFlags()),
		Action: runTrain,
	}
}

// methodsHelp is the help's table of methods, from align/objective's
// registry: each method's name and summary.
func methodsHelp() string {
	w := 0
	for _, m := range objective.Methods() {
		w = max(w, len(m.Name))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Methods (--method, default %s):\n", train.DPO)
	for _, m := range objective.Methods() {
		fmt.Fprintf(&b, "   %-*s  %s\n", w, m.Name, m.Summary)
	}
	return b.String()
}

func runTrain(c *cli.Context) error {
	j, err := trainJob(c, trainFlags())
	if err != nil {
		return err
	}
	if j.rl() {
		return runRL(c, &j.r)
	}
	env := envOf(c)
	cfg := j.t
	pr := &trainProgress{w: env.Stderr, tty: isTerminal(env.Stderr)}
	if pr.tty {
		pr.width = termWidth(env.Stderr)
	}
	res, err := train.Run(c.Context, cfg, pr.event)
	pr.end()
	if err != nil {
		return runError(err)
	}
	if c.Bool("json") {
		return json.NewEncoder(env.Stdout).Encode(res)
	}
	rate := fmt.Sprintf("%.0f tokens/s", res.TokensPerS)
	if res.TokensPerS == 0 { // a resume of a finished run trains no step: no rate to give
		rate = "nothing left to train"
	}
	counts := fmt.Sprintf("%d train / %d eval pairs", res.TrainPairs, res.EvalPairs)
	if j.method == train.KTO { // each pair of a pair file is two training examples
		counts = fmt.Sprintf("%d train examples / %d held out", res.TrainPairs, res.EvalPairs)
	}
	fmt.Fprintf(env.Stderr, "align: %s, %s, %s, %.1fs", plural(res.Steps, "step"), counts, rate, res.ElapsedS)
	if res.Device != "" && !strings.EqualFold(res.Device, "cpu") {
		fmt.Fprintf(env.Stderr, " on %s", res.Device)
	}
	if m, _ := objective.Lookup(j.method); res.StoppedEarly { // j.method: a resume's cfg.Method is empty
		fmt.Fprintf(env.Stderr, ", stopped early (the adapter of the best held-out %s kept)", m.Score)
	}
	if res.Truncation.PromptsCut+res.Truncation.ResponsesCut > 0 {
		fmt.Fprintf(env.Stderr, ", --max-length cut %s and %s", plural(res.Truncation.PromptsCut, "prompt"), plural(res.Truncation.ResponsesCut, "response"))
	}
	if res.Skipped > 0 {
		fmt.Fprintf(env.Stderr, ", %s skipped", plural(res.Skipped, "invalid pair"))
	}
	fmt.Fprintln(env.Stderr)
	printEval(env.Stdout, "held-out before", j.method, res.Before)
	printEval(env.Stdout, "held-out after ", j.method, res.After)
	fmt.Fprintf(env.Stdout, "adapter: %s\n", res.Adapter)
	if res.Head != "" {
		fmt.Fprintf(env.Stdout, "head: %s\n", res.Head)
	}
	return nil
}

// plural is "1 step", "2 steps".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// trainProgress draws train.Events on stderr: on a terminal one line
// redrawn in place and clipped to its width; otherwise a line when a pass
// starts or ends and at most every two seconds between.
type trainProgress struct {
	w         io.Writer
	tty       bool
	width     int
	last      time.Time
	lastPhase string
	drawn     bool // a terminal line is open
}

var phaseLabels = map[string]string{"reference": "reference log-probs", "train": "step", "eval": "held-out evaluation"}

func (p *trainProgress) event(ev train.Event) {
	if ev.Note != "" {
		if p.drawn {
			fmt.Fprint(p.w, "\r\033[K")
			p.drawn = false
		}
		fmt.Fprintf(p.w, "align: %s\n", ev.Note)
		return
	}
	if !p.tty {
		if ev.Phase == p.lastPhase && ev.Done != ev.Total && time.Since(p.last) < 2*time.Second {
			return
		}
		p.last, p.lastPhase = time.Now(), ev.Phase
		fmt.Fprintln(p.w, progressLine(ev, 0))
		return
	}
	fmt.Fprintf(p.w, "\r\033[K%s", progressLine(ev, p.width))
	p.drawn = true
}

// end closes an open terminal line.
func (p *trainProgress) end() {
	if p.drawn {
		fmt.Fprintln(p.w)
		p.drawn = false
	}
}

// progressLine formats ev; width > 0 clips it to a terminal of that many
// columns (the bar shrinks first, then the end is cut).
func progressLine(ev train.Event, width int) string {
	label := phaseLabels[ev.Phase]
	if label == "" {
		label = ev.Phase
	}
	head := fmt.Sprintf("%s %d/%d", label, ev.Done, ev.Total)
	tail := ""
	if ev.Stats != "" {
		tail = " " + ev.Stats
	}
	if eta := ev.ETA.Round(time.Second); eta > 0 {
		tail += " ETA " + eta.String()
	}
	bar := 24
	if width > 0 {
		bar = min(bar, width-1-utf8.RuneCountInString(head+tail)-3)
	}
	line := head
	if bar >= 5 {
		filled := bar * ev.Done / max(ev.Total, 1)
		line += " [" + strings.Repeat("#", filled) + strings.Repeat(".", bar-filled) + "]"
	}
	line += tail
	if width > 0 {
		if r := []rune(line); len(r) > width-1 {
			line = string(r[:max(width-1, 0)])
		}
	}
	return line
}

// termWidth is the column count of the terminal behind w (COLUMNS, or 80,
// when it cannot be read).
func termWidth(w any) int {
	if f, ok := w.(*os.File); ok {
		var ws struct{ Row, Col, X, Y uint16 }
		if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), uintptr(syscall.TIOCGWINSZ), uintptr(unsafe.Pointer(&ws))); e == 0 && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
}

func printEval(w interface{ Write([]byte) (int, error) }, label, method string, m map[string]float64) {
	if len(m) == 0 {
		return
	}
	fmt.Fprintf(w, "%s: %s\n", label, train.EvalLine(method, m))
}

func isTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// runError maps a training run's error to the CLI's exit codes: a bad
// setting is a usage error (2), an interrupted run is resumable (4). PPO and
// GRPO runs (align/rl) share train's ConfigError and ErrInterrupted.
func runError(err error) error {
	var ce *train.ConfigError
	switch {
	case errors.As(err, &ce):
		return &UsageError{Err: err}
	case errors.Is(err, train.ErrInterrupted):
		return &ExitCodeError{Code: ExitResumable, Err: err}
	}
	return err
}
