package rl

// rolloutObjective is an RL method over rollout batches (the "rollout
// group" layout: each prompt's sampled completions, response tokens
// scored): what is method-specific, as align/train's objectives are for
// datasets. The stepper (run.go) samples, scores and runs the forwards;
// update (update.go) runs the passes and mini-batches, each one optimiser
// step (run.Optimiser) over the objective's loss. A new method over
// rollouts is one objective, one entry of rolloutObjectives and one row of
// align/objective's registry.
type rolloutObjective interface {
	// needsReference: the loss or the metrics read Ref (a reference pass):
	// Config.needsRef, from the method's registry row.
	needsReference() bool
	// valueHead: the method trains a value set (PPO's critic; its clipped
	// value loss is valueCot).
	valueHead() bool
	// oldFromUpdate: the sampling policy's log-probs come from the first
	// forward of the update (one pass of one mini-batch: the policy has
	// not moved yet) instead of a forward of their own.
	oldFromUpdate() bool
	// advantages fills Adv (and Ret) of a scored rollout whose Old and
	// Ref (and Val) are set, adds its rollout metrics to row and returns
	// the sequences to train on.
	advantages(seqs []*Seq, row map[string]float64) []*Seq
	// norm is the divisor that makes one optimiser step's loss over part
	// a mean.
	norm(part []*Seq) float64
	// loss adds the policy loss of part, divided by norm, to st and
	// returns its derivative with respect to each token log-prob of logps
	// (Outputs order).
	loss(part []*Seq, logps []float32, norm float64, st *lossStats) []float32
	// after adds the method's metrics of the step to row once the update
	// is done (and moves the state it keeps across steps).
	after(seqs []*Seq, row map[string]float64)
}

// rolloutObjectives is the implementation of each method of kind
// objective.Rollout, by name (align/objective's registry holds what else
// is method-specific: layout, reference, help; registry_test.go checks
// that the two agree). klCoef is the run's adaptive KL coefficient
// (PPO's, kept in checkpoints by the stepper). The one objective.Online
// method, online DPO, is online.go's stepper.
var rolloutObjectives = map[string]func(cfg *Config, klCoef *float64) rolloutObjective{
	PPO:  func(cfg *Config, klCoef *float64) rolloutObjective { return &ppoObjective{cfg: cfg, coef: klCoef} },
	GRPO: func(cfg *Config, _ *float64) rolloutObjective { return grpoObjective{cfg: cfg} },
}

// ppoObjective is PPO: per-token rewards −kl_coef·(old − ref) plus the
// score at the last token, GAE from the value head, advantages whitened
// over the batch, the clipped surrogate on each token's advantage, and
// the adaptive KL controller after each step.
type ppoObjective struct {
	cfg  *Config
	coef *float64
	kl   float64 // the step's mean Σ_t (old − ref) per completion
}

func (o *ppoObjective) needsReference() bool { return o.cfg.needsRef() }
func (*ppoObjective) valueHead() bool        { return true }
func (*ppoObjective) oldFromUpdate() bool    { return false }

func (o *ppoObjective) advantages(seqs []*Seq, row map[string]float64) []*Seq {
	o.kl = 0
	for _, q := range seqs {
		o.kl += seqKL(q)
	}
	o.kl /= float64(len(seqs))
	var flat []float64
	for _, s := range seqs {
		n := len(s.Resp)
		rw := make([]float64, n)
		for t := 0; t < n; t++ {
			rw[t] = -*o.coef * (s.Old[t] - s.Ref[t])
		}
		rw[n-1] += s.Score
		s.Adv, s.Ret = GAE(rw, s.Val, o.cfg.Gamma, o.cfg.Lambda)
		flat = append(flat, s.Adv...)
	}
	w := Whiten(flat)
	off := 0
	for _, s := range seqs {
		copy(s.Adv, w[off:off+len(s.Adv)])
		off += len(s.Adv)
	}
	row["kl"] = o.kl
	row["kl_coef"] = *o.coef
	row["score_mean"] = row["reward"]
	return seqs
}

func (o *ppoObjective) norm(part []*Seq) float64 { return float64(max(1, tokensOf(part))) }

func (o *ppoObjective) loss(part []*Seq, logps []float32, norm float64, st *lossStats) []float32 {
	return surrogate(o.cfg.ClipEps, part, logps, norm, st, func(s *Seq, t int) float64 { return s.Adv[t] }, nil)
}

func (o *ppoObjective) after(seqs []*Seq, _ map[string]float64) {
	c := KLController{Coef: *o.coef, Target: o.cfg.KLTarget, Horizon: o.cfg.KLHorizon}
	c.Update(o.kl, len(seqs))
	*o.coef = c.Coef
}

// grpoObjective is GRPO: each completion's advantage is its score
// normalised within its prompt's group (groups whose scores are all
// equal are left out), the clipped surrogate with that advantage on every
// token plus β·k3 to the reference; with --no-std (Dr. GRPO) the scores
// are only centred and the loss is divided by a constant.
type grpoObjective struct{ cfg *Config }

func (o grpoObjective) needsReference() bool { return o.cfg.needsRef() }
func (grpoObjective) valueHead() bool        { return false }

func (o grpoObjective) oldFromUpdate() bool {
	return o.cfg.PPOEpochs == 1 && o.cfg.MiniBatches == 1
}

func (o grpoObjective) advantages(seqs []*Seq, row map[string]float64) []*Seq {
	g := o.cfg.Group
	scores := make([]float64, len(seqs))
	for i, s := range seqs {
		scores[i] = s.Score
	}
	adv, deg := GroupAdvantages(scores, g, o.cfg.NoStd)
	var train []*Seq
	for i, s := range seqs {
		if deg[i/g] {
			continue
		}
		s.Adv = []float64{adv[i]}
		train = append(train, s)
	}
	zeroStd := 0
	for _, d := range deg {
		if d {
			zeroStd++
		}
	}
	row["frac_reward_zero_std"] = float64(zeroStd) / float64(len(seqs)/g)
	return train
}

// norm is the step's response tokens (a token mean), or with --no-std a
// constant, the sequences times --max-new-tokens, so a long answer is
// not down-weighted.
func (o grpoObjective) norm(part []*Seq) float64 {
	if o.cfg.NoStd {
		return float64(len(part) * o.cfg.MaxNewTokens)
	}
	return float64(max(1, tokensOf(part)))
}

func (o grpoObjective) loss(part []*Seq, logps []float32, norm float64, st *lossStats) []float32 {
	var k3 func(lp float64, s *Seq, t int) (float64, float64)
	if beta := o.cfg.Beta; beta > 0 {
		k3 = func(lp float64, s *Seq, t int) (float64, float64) {
			k, dk := K3(lp, s.Ref[t])
			st.k3 += k
			return beta * k, beta * dk
		}
	}
	return surrogate(o.cfg.ClipEps, part, logps, norm, st, func(s *Seq, _ int) float64 { return s.Adv[0] }, k3)
}

// after reports the mean per-token k3 of the trained-on policy at
// sampling (KL to the reference), when there is a reference.
func (o grpoObjective) after(seqs []*Seq, row map[string]float64) {
	if !o.needsReference() {
		return
	}
	var sub []*Seq
	for _, q := range seqs {
		if len(q.Old) > 0 {
			sub = append(sub, q)
		}
	}
	row["kl"] = tokenK3(sub)
}

// surrogate is the clipped surrogate loss of part divided by norm and
// its derivative with respect to each token log-prob of logps (Outputs
// order): adv is token t's advantage, extra (nil: none) a per-token term
// of the loss and its derivative.
func surrogate(clipEps float64, part []*Seq, logps []float32, norm float64, st *lossStats,
	adv func(s *Seq, t int) float64, extra func(lp float64, s *Seq, t int) (float64, float64)) []float32 {
	cot := make([]float32, len(logps))
	j := 0
	for _, s := range part {
		for t := range s.Resp {
			lp := float64(logps[j])
			l, d, clipped := Surrogate(lp, s.Old[t], adv(s, t), clipEps)
			if extra != nil {
				el, ed := extra(lp, s, t)
				l += el
				d += ed
			}
			cot[j] = float32(d / norm)
			st.policyLoss += l / norm
			if clipped {
				st.clipped++
			}
			st.approxKL += 0.5 * (lp - s.Old[t]) * (lp - s.Old[t])
			st.entropy -= s.Old[t]
			st.tokens++
			j++
		}
		st.seqs++
	}
	return cot
}
