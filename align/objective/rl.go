package objective

import "math"

// The math of PPO and GRPO on per-token arrays, free of the engine so it
// can be checked on hand numbers. Every loss returns its value and its
// derivative with respect to the inputs the engine produced (token
// log-probs of the current policy, value-head outputs); the caller feeds
// those derivatives to Trainer.Backward / BackwardHeads.
//
// Formulas: DESIGN.md §4.4. PPO follows Schulman et al. 2017 (clipped
// surrogate), the value clipping and per-token KL penalty of Ziegler et al.
// 2019 / Ouyang et al. 2022 (InstructGPT) as TRL's PPOTrainer does; GRPO
// follows Shao et al. 2024 (DeepSeekMath) with the k3 estimator of
// Schulman's "Approximating KL divergence" note, and Liu et al. 2025
// (Dr. GRPO) for the variant without std division.

// GAE computes generalised advantage estimates over one response: rewards
// r_t, values V_t (the value of the state before token t), discount gamma
// and lambda; the value after the last token is 0 (the episode ends).
//
//	δ_t = r_t + γ V_{t+1} − V_t,  A_t = δ_t + γ λ A_{t+1},  R_t = A_t + V_t
func GAE(rewards, values []float64, gamma, lambda float64) (adv, returns []float64) {
	n := len(rewards)
	adv, returns = make([]float64, n), make([]float64, n)
	last := 0.0
	for t := n - 1; t >= 0; t-- {
		next := 0.0
		if t+1 < n {
			next = values[t+1]
		}
		delta := rewards[t] + gamma*next - values[t]
		last = delta + gamma*lambda*last
		adv[t] = last
		returns[t] = adv[t] + values[t]
	}
	return adv, returns
}

// Whiten returns (x − mean) / (std + 1e-8) with the population standard
// deviation (a single value whitens to 0).
func Whiten(x []float64) []float64 {
	out := make([]float64, len(x))
	if len(x) == 0 {
		return out
	}
	mean, std := MeanStd(x, false)
	for i, v := range x {
		out[i] = (v - mean) / (std + 1e-8)
	}
	return out
}

// MeanStd is the mean and standard deviation of x (unbiased: divided by
// n − 1, as torch.std, which TRL's GRPO uses).
func MeanStd(x []float64, unbiased bool) (mean, std float64) {
	if len(x) == 0 {
		return 0, 0
	}
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	var ss float64
	for _, v := range x {
		ss += (v - mean) * (v - mean)
	}
	d := float64(len(x))
	if unbiased {
		if len(x) < 2 {
			return mean, 0
		}
		d--
	}
	return mean, math.Sqrt(ss / d)
}

// groupEps keeps the std division finite (TRL's GRPO uses 1e-4).
const groupEps = 1e-4

// GroupAdvantages normalises rewards within consecutive groups of size g:
// A_i = (r_i − mean) / (std + 1e-4) with the unbiased std, or r_i − mean
// with noStd (Dr. GRPO). degenerate[k] reports that group k's rewards are
// all equal: it carries no signal (its advantages are 0) and is skipped.
func GroupAdvantages(rewards []float64, g int, noStd bool) (adv []float64, degenerate []bool) {
	adv = make([]float64, len(rewards))
	for k := 0; k*g < len(rewards); k++ {
		grp := rewards[k*g : min(len(rewards), (k+1)*g)]
		mean, std := MeanStd(grp, true)
		same := true
		for _, r := range grp {
			if r != grp[0] {
				same = false
			}
		}
		degenerate = append(degenerate, same)
		if same {
			continue
		}
		for i, r := range grp {
			a := r - mean
			if !noStd {
				a /= std + groupEps
			}
			adv[k*g+i] = a
		}
	}
	return adv, degenerate
}

// Surrogate is the clipped policy objective of one token, as a loss:
//
//	ρ = exp(logp − old),  loss = max(−A ρ, −A clip(ρ, 1−ε, 1+ε))
//
// dlogp is d loss / d logp: −A ρ where the unclipped term is the max, 0
// where the clipped one is (it is constant in logp there). clipped reports
// the latter.
func Surrogate(logp, old, adv, eps float64) (loss, dlogp float64, clipped bool) {
	ratio := math.Exp(logp - old)
	pg1 := -adv * ratio
	pg2 := -adv * math.Max(1-eps, math.Min(1+eps, ratio))
	if pg2 > pg1 {
		return pg2, 0, true
	}
	return pg1, -adv * ratio, false
}

// ValueLoss is the clipped value loss of one token:
//
//	Vc = old + clip(v − old, −ε, ε),  loss = ½ max((v − R)², (Vc − R)²)
//
// dv is d loss / d v; clipped reports that the clipped term was the max
// (then dv is 0).
func ValueLoss(v, old, ret, eps float64) (loss, dv float64, clipped bool) {
	vc := old + math.Max(-eps, math.Min(eps, v-old))
	l1 := (v - ret) * (v - ret)
	l2 := (vc - ret) * (vc - ret)
	if l2 > l1 {
		return 0.5 * l2, 0, true
	}
	return 0.5 * l1, v - ret, false
}

// K3 is the k3 estimator of KL(π ‖ π_ref) at one sampled token and its
// derivative with respect to logp:
//
//	k3 = exp(ref − logp) − (ref − logp) − 1,  dk3/dlogp = 1 − exp(ref − logp)
func K3(logp, ref float64) (k3, dlogp float64) {
	d := ref - logp
	e := math.Exp(d)
	return e - d - 1, 1 - e
}

// KLController is the adaptive KL coefficient of Ziegler et al. 2019:
// after each batch of n sequences with mean KL kl, coef is multiplied by
// 1 + clip(kl/target − 1, ±0.2) · n / horizon. Target 0: fixed.
type KLController struct {
	Coef, Target, Horizon float64
}

// Update applies one batch.
func (c *KLController) Update(kl float64, n int) {
	if c.Target <= 0 || c.Horizon <= 0 {
		return
	}
	e := math.Max(-0.2, math.Min(0.2, kl/c.Target-1))
	c.Coef *= 1 + e*float64(n)/c.Horizon
}
