package objective

// Methods whose losses live outside this package's files: SFT's token
// negative log-likelihood (align/train) and the reward model's
// Bradley–Terry loss (RewardLoss).
const (
	SFT = "sft"
	RM  = "rm"
)
