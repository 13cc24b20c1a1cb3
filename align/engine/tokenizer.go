package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Vocabulary is a real model's tokenizer as a GGUF stores it: what
// ReadHFTokenizer reads from a Hugging Face tokenizer folder and
// InitModel writes into a fixture.
type Vocabulary struct {
	Model  string // tokenizer.ggml.model: "gpt2" (byte-level BPE) or "llama" (SentencePiece-style BPE with byte fallback)
	Pre    string // tokenizer.ggml.pre (gpt2 only): "llama-bpe", "qwen2", "gpt-2"
	Tokens []string
	Scores []float32 // llama only: the merge order (higher merges first)
	Types  []int32   // llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte
	Merges []string  // gpt2 only: "left right", by rank

	BOS, EOS, EOT, UNK, PAD int32 // -1: none
	AddBOS, AddEOS          bool
	AddSpacePrefix          bool // llama only
	ChatTemplate            string
}

// token types as llama.cpp numbers them
const (
	ttNormal      = 1
	ttUnknown     = 2
	ttControl     = 3
	ttUserDefined = 4
	ttByte        = 6
)

// Pre-tokenizer patterns align recognises, by the name llama.cpp gives
// them (tokenizer.ggml.pre). A byte-level BPE without a Split pattern uses
// GPT-2's (ByteLevel with use_regex).
var prePatterns = map[string]string{
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`: "llama-bpe",
	`(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`:      "qwen2",
	`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`:                                          "gpt-2",
}

type hfTokenizer struct {
	Model struct {
		Type         string          `json:"type"`
		Vocab        map[string]int  `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		UnkToken     *string         `json:"unk_token"`
		ByteFallback bool            `json:"byte_fallback"`
	} `json:"model"`
	AddedTokens []struct {
		ID      int    `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
	} `json:"added_tokens"`
	Normalizer    json.RawMessage `json:"normalizer"`
	PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
	PostProcessor json.RawMessage `json:"post_processor"`
	Decoder       json.RawMessage `json:"decoder"`
}

// component is a normalizer, pre-tokenizer, post-processor or decoder of
// tokenizer.json: a type and, for sequences, its parts.
type component struct {
	Type    string          `json:"type"`
	Pattern json.RawMessage `json:"pattern"`
	Content string          `json:"content"`
	Prepend string          `json:"prepend"`
	Single  []struct {
		SpecialToken *struct {
			ID string `json:"id"`
		} `json:"SpecialToken"`
	} `json:"single"`
	Normalizers   []component `json:"normalizers"`
	Pretokenizers []component `json:"pretokenizers"`
	Processors    []component `json:"processors"`
	Decoders      []component `json:"decoders"`
	UseRegex      *bool       `json:"use_regex"`
}

// flatten lists c and the parts of its sequences, depth first.
func (c *component) flatten() []component {
	if c == nil || c.Type == "" {
		return nil
	}
	out := []component{*c}
	for _, list := range [][]component{c.Normalizers, c.Pretokenizers, c.Processors, c.Decoders} {
		for i := range list {
			out = append(out, list[i].flatten()...)
		}
	}
	return out
}

func parseComponent(file, field string, raw json.RawMessage) ([]component, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", file, field, err)
	}
	return c.flatten(), nil
}

// pattern returns a Split's pattern: {"Regex": ...} or {"String": ...}.
func (c component) pattern() (regex, str string) {
	var p struct {
		Regex  string `json:"Regex"`
		String string `json:"String"`
	}
	_ = json.Unmarshal(c.Pattern, &p)
	return p.Regex, p.String
}

// specialText reads a tokenizer_config.json special-token entry: a string,
// an {"content": ...} object or null.
func specialText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(raw, &o) == nil {
		return o.Content
	}
	return ""
}

// ReadHFTokenizer reads a Hugging Face tokenizer folder (tokenizer.json and
// tokenizer_config.json, as transformers saves them) into the vocabulary
// GGUF files carry: byte-level BPE as gpt2 with its merges and the
// pre-tokenizer's name, SentencePiece-style BPE with byte fallback (Gemma)
// as llama with scores from the merge order; the special tokens, the
// end-of-turn token and the chat template.
func ReadHFTokenizer(dir string) (*Vocabulary, error) {
	tokPath := filepath.Join(dir, "tokenizer.json")
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	raw, err := os.ReadFile(tokPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: no tokenizer.json (give the folder of a Hugging Face tokenizer)", dir)
		}
		return nil, err
	}
	var tj hfTokenizer
	if err := json.Unmarshal(raw, &tj); err != nil {
		return nil, fmt.Errorf("%s: %w", tokPath, err)
	}
	raw = nil
	var cfg map[string]json.RawMessage
	if b, err := os.ReadFile(cfgPath); err == nil {
		if err := json.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", cfgPath, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if tj.Model.Type != "BPE" {
		return nil, fmt.Errorf("%s: model type %q is not supported (align reads BPE tokenizers)", tokPath, tj.Model.Type)
	}
	if len(tj.Model.Vocab) == 0 {
		return nil, fmt.Errorf("%s: model.vocab is empty", tokPath)
	}

	// tokens by id: the model's vocabulary, then the added tokens
	n := 0
	for _, id := range tj.Model.Vocab {
		if id < 0 {
			return nil, fmt.Errorf("%s: model.vocab: negative id %d", tokPath, id)
		}
		n = max(n, id+1)
	}
	for _, a := range tj.AddedTokens {
		if a.ID < 0 {
			return nil, fmt.Errorf("%s: added_tokens: negative id %d", tokPath, a.ID)
		}
		n = max(n, a.ID+1)
	}
	if n > 1<<22 {
		return nil, fmt.Errorf("%s: %d tokens is more than align writes", tokPath, n)
	}
	v := &Vocabulary{Tokens: make([]string, n), Types: make([]int32, n), BOS: -1, EOS: -1, EOT: -1, UNK: -1, PAD: -1}
	set := make([]bool, n)
	ids := make(map[string]int32, n)
	for tok, id := range tj.Model.Vocab {
		v.Tokens[id], v.Types[id], set[id] = tok, ttNormal, true
		ids[tok] = int32(id)
	}
	for _, a := range tj.AddedTokens {
		typ := int32(ttUserDefined)
		if a.Special {
			typ = ttControl
		}
		v.Tokens[a.ID], v.Types[a.ID], set[a.ID] = a.Content, typ, true
		ids[a.Content] = int32(a.ID)
	}
	for i := range v.Tokens {
		if !set[i] { // a hole in the ids, as converters fill it
			v.Tokens[i], v.Types[i] = fmt.Sprintf("[PAD%d]", i), ttUserDefined
		}
	}

	norms, err := parseComponent(tokPath, "normalizer", tj.Normalizer)
	if err != nil {
		return nil, err
	}
	pres, err := parseComponent(tokPath, "pre_tokenizer", tj.PreTokenizer)
	if err != nil {
		return nil, err
	}
	posts, err := parseComponent(tokPath, "post_processor", tj.PostProcessor)
	if err != nil {
		return nil, err
	}
	decs, err := parseComponent(tokPath, "decoder", tj.Decoder)
	if err != nil {
		return nil, err
	}
	byteLevel, spaceToMeta, prependMeta := false, false, false
	var splitRegex string
	gpt2Regex := false
	for _, c := range pres {
		switch c.Type {
		case "ByteLevel":
			byteLevel = true
			if c.UseRegex == nil || *c.UseRegex {
				gpt2Regex = true
			}
		case "Split":
			if re, _ := c.pattern(); re != "" {
				splitRegex = re
			}
		}
	}
	for _, c := range decs {
		if c.Type == "ByteLevel" {
			byteLevel = true
		}
	}
	for _, c := range norms {
		switch c.Type {
		case "Replace":
			if _, s := c.pattern(); s == " " && c.Content == "\u2581" {
				spaceToMeta = true
			}
		case "Prepend":
			if c.Prepend == "\u2581" {
				prependMeta = true
			}
		}
	}

	merges, err := readMerges(tj.Model.Merges)
	if err != nil {
		return nil, fmt.Errorf("%s: model.merges: %w", tokPath, err)
	}
	switch {
	case byteLevel:
		v.Model = "gpt2"
		switch {
		case splitRegex != "":
			name, ok := prePatterns[splitRegex]
			if !ok {
				return nil, fmt.Errorf("%s: pre-tokenizer pattern %q is not one align knows (Llama 3, Qwen2/3, GPT-2)", tokPath, splitRegex)
			}
			v.Pre = name
		case gpt2Regex:
			v.Pre = "gpt-2"
		default:
			return nil, fmt.Errorf("%s: byte-level BPE without a pre-tokenizer pattern is not supported", tokPath)
		}
		v.Merges = merges
		if len(v.Merges) == 0 {
			return nil, fmt.Errorf("%s: byte-level BPE without merges", tokPath)
		}
	case tj.Model.ByteFallback && spaceToMeta:
		// SentencePiece's BPE as transformers converts it (Gemma, Llama 2):
		// GGUF keeps it as llama with scores; a merge's rank orders it, so
		// each token scores minus the rank of the first merge that makes it
		v.Model = "llama"
		v.AddSpacePrefix = prependMeta
		v.Scores = make([]float32, n)
		made := make([]bool, n)
		for i := range v.Scores {
			v.Scores[i] = -float32(len(merges) + 1) // made by no merge: after every merge
		}
		for rank, m := range merges {
			l, r, _ := strings.Cut(m, " ")
			if id, ok := ids[l+r]; ok && !made[id] {
				made[id], v.Scores[id] = true, -float32(rank)
			}
		}
		for i, t := range v.Tokens {
			if v.Types[i] == ttUserDefined {
				// user-defined pieces are matched and printed as they are,
				// before and after llama.cpp's space escaping: their
				// spaces are spaces (as llama.cpp's converter writes them)
				v.Tokens[i] = strings.ReplaceAll(t, "\u2581", " ")
			}
			if v.Types[i] != ttNormal {
				v.Scores[i] = 0
				continue
			}
			if len(t) == 6 && strings.HasPrefix(t, "<0x") && t[5] == '>' {
				if _, err := strconv.ParseUint(t[3:5], 16, 8); err == nil {
					v.Types[i] = ttByte
				}
			}
		}
	default:
		return nil, fmt.Errorf("%s: neither byte-level BPE nor BPE with byte fallback: not supported", tokPath)
	}
	if u := tj.Model.UnkToken; u != nil {
		if id, ok := ids[*u]; ok {
			v.UNK = id
			v.Types[id] = ttUnknown
		}
	}

	// special tokens: tokenizer_config.json's, else the post-processor's BOS
	lookup := func(key string) int32 {
		if t := specialText(cfg[key]); t != "" {
			if id, ok := ids[t]; ok {
				return id
			}
		}
		return -1
	}
	v.BOS, v.EOS, v.PAD = lookup("bos_token"), lookup("eos_token"), lookup("pad_token")
	var postBOS string
	for _, c := range posts {
		if c.Type == "TemplateProcessing" && len(c.Single) > 0 && c.Single[0].SpecialToken != nil {
			postBOS = c.Single[0].SpecialToken.ID
		}
	}
	if v.BOS < 0 && postBOS != "" {
		v.BOS = ids[postBOS]
	}
	if b, ok := cfg["add_bos_token"]; ok {
		_ = json.Unmarshal(b, &v.AddBOS)
	} else {
		v.AddBOS = postBOS != "" && v.BOS >= 0 && v.Tokens[v.BOS] == postBOS
	}
	if b, ok := cfg["add_eos_token"]; ok {
		_ = json.Unmarshal(b, &v.AddEOS)
	}
	if v.BOS < 0 { // llama.cpp reads a BOS id whether or not it is added
		v.BOS = v.PAD
		if v.BOS < 0 {
			v.BOS = v.EOS
		}
	}
	// the end-of-turn token: the chat formats llama.cpp knows, else EOS
	for _, t := range []string{"<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>", "<|endofturn|>", "<|end_of_turn|>"} {
		if id, ok := ids[t]; ok {
			v.EOT = id
			break
		}
	}
	if v.EOT < 0 {
		v.EOT = v.EOS
	}
	if v.EOS < 0 {
		v.EOS = v.EOT
	}
	v.ChatTemplate, err = configTemplate(cfg["chat_template"])
	if err != nil {
		return nil, fmt.Errorf("%s: chat_template: %w", cfgPath, err)
	}
	if v.ChatTemplate == "" { // newer transformers save it beside the config
		if b, err := os.ReadFile(filepath.Join(dir, "chat_template.jinja")); err == nil {
			v.ChatTemplate = string(b)
		}
	}
	return v, nil
}

// readMerges reads BPE merges in either form tokenizer.json uses: "a b"
// strings or [a, b] pairs.
func readMerges(raw json.RawMessage) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var strs []string
	if err := json.Unmarshal(raw, &strs); err == nil {
		return strs, nil
	}
	var pairs [][]string
	if err := json.Unmarshal(raw, &pairs); err != nil {
		return nil, errors.New("neither strings nor pairs")
	}
	out := make([]string, len(pairs))
	for i, p := range pairs {
		if len(p) != 2 {
			return nil, fmt.Errorf("merge %d has %d parts", i, len(p))
		}
		if strings.Contains(p[0], " ") || strings.Contains(p[1], " ") {
			return nil, fmt.Errorf("merge %d has a space inside a token, which GGUF cannot store", i)
		}
		out[i] = p[0] + " " + p[1]
	}
	return out, nil
}

// configTemplate reads tokenizer_config.json's chat_template: a string, or a
// list of named templates (the one named "default" is taken).
func configTemplate(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return "", errors.New("neither a string nor a list of named templates")
	}
	sort.SliceStable(named, func(i, j int) bool { return named[i].Name == "default" && named[j].Name != "default" })
	if len(named) == 0 {
		return "", nil
	}
	return named[0].Template, nil
}
