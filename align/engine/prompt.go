package engine

import (
	"fmt"

	"github.com/align-dev/align/align/prompt"
	"github.com/align-dev/align/bindings"
)

// promptModel lets align/prompt format for a loaded model.
type promptModel struct {
	m        *bindings.Model
	info     bindings.ModelInfo
	template string
}

var (
	_ prompt.Model = promptModel{}
	_ prompt.Vocab = promptModel{}
)

// PromptModel adapts a loaded model to prompt.Model (and prompt.Vocab, so
// its own Jinja template renders), so training, sample and the local
// backend format prompts the same way:
//
//	f := prompt.New(engine.PromptModel(m), raw)
//
// It reads the model's description once; it fails only if that does.
func PromptModel(m *bindings.Model) (prompt.Model, error) {
	info, err := m.Info()
	if err != nil {
		return nil, err
	}
	tmpl, _ := m.Meta("tokenizer.chat_template")
	return promptModel{m: m, info: info, template: tmpl}, nil
}

// Identity is the loaded model (prompt.Identity): formatters of one
// *bindings.Model share it.
func (p promptModel) Identity() string { return fmt.Sprintf("model@%p", p.m) }

func (p promptModel) HasChatTemplate() bool { return p.info.HasChatTemplate }
func (p promptModel) EOS() int32            { return p.info.EOS }
func (p promptModel) BOS() int32            { return p.info.BOS }
func (p promptModel) EOT() int32            { return p.info.EOT }
func (p promptModel) AddBOS() bool          { return p.info.AddBOS }
func (p promptModel) ChatTemplate() string  { return p.template }

func (p promptModel) TokenText(id int32) string {
	s, err := p.m.Detokenize([]int32{id}, true)
	if err != nil {
		return ""
	}
	return s
}

func (p promptModel) ChatApply(msgs []prompt.Message, addAssistant bool) (string, error) {
	return p.m.ChatApply("", msgs, addAssistant)
}

func (p promptModel) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, prompt.Unspelled, error) {
	toks, u, err := p.m.TokenizeReport(text, addSpecial, parseSpecial)
	return toks, prompt.Unspelled{Count: u.Count, First: u.First, Offset: u.Offset}, err
}
