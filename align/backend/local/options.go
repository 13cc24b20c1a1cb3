package local

// Options configures a Backend. Zero values take the defaults noted.
type Options struct {
	Threads     int // CPU threads; 0: all cores
	NCtx        int // context per session; 0: the model's training context, at most 4096
	MaxTokens   int // output ceiling when a request sets none; default 512
	Parallel    int // sessions (calls run at once); default 1
	StringLimit int // longest free-text string in structured output; default 160
	GPULayers   int // layers to offload where a GPU backend is built in
	// Raw formats prompts in align/prompt's plain format even when the model
	// has a chat template: for a model trained with --raw.
	Raw bool
	// Template replaces the model's chat template (--chat-template FILE's
	// text); Kwargs are extra template variables (--chat-template-kwargs).
	Template string
	Kwargs   map[string]any
	// Warn receives, once per backend, a line worth telling the user (such
	// as prompt characters the vocabulary cannot spell); nil: dropped.
	Warn func(msg string)
}
