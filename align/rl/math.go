package rl

import "github.com/align-dev/align/align/objective"

// The math of PPO and GRPO is align/objective's (cgo-free); these are its
// names in this package.

// KLController is objective.KLController.
type KLController = objective.KLController

var (
	GAE             = objective.GAE
	Whiten          = objective.Whiten
	GroupAdvantages = objective.GroupAdvantages
	Surrogate       = objective.Surrogate
	ValueLoss       = objective.ValueLoss
	K3              = objective.K3
	MeanStd         = objective.MeanStd
)
