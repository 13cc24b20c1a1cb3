package standin

import (
	"encoding/json"
	"net/url"
	"strings"
)

var pathUnescape = url.PathUnescape

func errBody(status int, typ, msg string) (int, []byte) {
	b, _ := json.Marshal(map[string]string{"__type": typ, "message": msg})
	return status, b
}

func estimate(s string) int { return max(1, (len(s)+3)/4) }

func (s *Server) callModel(req Request) Response {
	s.mu.Lock()
	m := s.model
	s.mu.Unlock()
	return m(req)
}

type converseRequest struct {
	Messages []struct {
		Role    string            `json:"role"`
		Content []json.RawMessage `json:"content"`
	} `json:"messages"`
	System []struct {
		Text string `json:"text"`
	} `json:"system"`
	InferenceConfig *struct {
		MaxTokens   int      `json:"maxTokens"`
		Temperature *float64 `json:"temperature"`
		TopP        *float64 `json:"topP"`
	} `json:"inferenceConfig"`
	ToolConfig *struct {
		Tools []struct {
			ToolSpec *struct {
				Name        string `json:"name"`
				InputSchema struct {
					JSON json.RawMessage `json:"json"`
				} `json:"inputSchema"`
			} `json:"toolSpec"`
		} `json:"tools"`
		ToolChoice map[string]json.RawMessage `json:"toolChoice"`
	} `json:"toolConfig"`
}

func (s *Server) converse(modelID string, body []byte) (int, []byte) {
	var cr converseRequest
	if err := json.Unmarshal(body, &cr); err != nil {
		return errBody(400, "ValidationException", "malformed converse request: "+err.Error())
	}
	if len(cr.Messages) == 0 {
		return errBody(400, "ValidationException", "messages: at least one message is required")
	}
	req := Request{Route: "converse", ModelID: modelID, Body: body}
	var in strings.Builder
	for _, sb := range cr.System {
		req.System += sb.Text
	}
	in.WriteString(req.System)
	for _, m := range cr.Messages {
		var text strings.Builder
		for _, c := range m.Content {
			var blk struct {
				Text *string `json:"text"`
			}
			if json.Unmarshal(c, &blk) == nil && blk.Text != nil {
				text.WriteString(*blk.Text)
			}
		}
		req.Messages = append(req.Messages, Message{Role: m.Role, Text: text.String()})
		in.WriteString(text.String())
	}
	if ic := cr.InferenceConfig; ic != nil {
		req.MaxTokens, req.Temperature, req.TopP = ic.MaxTokens, ic.Temperature, ic.TopP
	}
	if tc := cr.ToolConfig; tc != nil {
		schemas := map[string]json.RawMessage{}
		for _, t := range tc.Tools {
			if t.ToolSpec != nil {
				req.Tools = append(req.Tools, t.ToolSpec.Name)
				schemas[t.ToolSpec.Name] = t.ToolSpec.InputSchema.JSON
			}
		}
		if raw, ok := tc.ToolChoice["tool"]; ok {
			var st struct {
				Name string `json:"name"`
			}
			json.Unmarshal(raw, &st)
			if _, known := schemas[st.Name]; !known {
				return errBody(400, "ValidationException", "toolChoice names a tool that is not in tools")
			}
			req.ToolName = st.Name
		} else if _, ok := tc.ToolChoice["any"]; ok && len(req.Tools) > 0 {
			req.ToolName = req.Tools[0]
		}
		if req.ToolName != "" {
			req.ToolSchema = schemas[req.ToolName]
		} else if len(req.Tools) > 0 {
			req.ToolSchema = schemas[req.Tools[0]]
		}
	}
	resp := s.callModel(req)
	if resp.Err != nil {
		return errBody(resp.Err.Status, resp.Err.Type, resp.Err.Message)
	}
	var content []any
	if resp.Text != "" {
		content = append(content, map[string]any{"text": resp.Text})
	}
	outText := resp.Text
	stop := resp.StopReason
	if resp.ToolInput != nil {
		name := resp.ToolName
		if name == "" {
			name = req.ToolName
		}
		content = append(content, map[string]any{"toolUse": map[string]any{"toolUseId": "tooluse_standin", "name": name, "input": resp.ToolInput}})
		outText += string(resp.ToolInput)
		if stop == "" {
			stop = "tool_use"
		}
	}
	if stop == "" {
		stop = "end_turn"
	}
	if content == nil {
		content = []any{}
	}
	inTok, outTok := resp.InputTokens, resp.OutputTokens
	if inTok == 0 {
		inTok = estimate(in.String())
	}
	if outTok == 0 {
		outTok = estimate(outText)
	}
	b, _ := json.Marshal(map[string]any{
		"output":     map[string]any{"message": map[string]any{"role": "assistant", "content": content}},
		"stopReason": stop,
		"usage":      map[string]any{"inputTokens": inTok, "outputTokens": outTok, "totalTokens": inTok + outTok},
		"metrics":    map[string]any{"latencyMs": 1},
	})
	return 200, b
}

// nativeRequest reads the common parts of model-native bodies: Anthropic
// Messages ({"messages", "system", "max_tokens"}) and Llama ({"prompt",
// "max_gen_len"}).
func nativeRequest(route, modelID string, body []byte) (Request, error) {
	var nb struct {
		Prompt   string `json:"prompt"`
		System   any    `json:"system"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		ToolChoice *struct {
			Name string `json:"name"`
		} `json:"tool_choice"`
		MaxTokens   int      `json:"max_tokens"`
		MaxGenLen   int      `json:"max_gen_len"`
		Temperature *float64 `json:"temperature"`
		TopP        *float64 `json:"top_p"`
	}
	if err := json.Unmarshal(body, &nb); err != nil {
		return Request{}, err
	}
	req := Request{Route: route, ModelID: modelID, Body: body, MaxTokens: max(nb.MaxTokens, nb.MaxGenLen), Temperature: nb.Temperature, TopP: nb.TopP}
	if nb.ToolChoice != nil {
		req.ToolName = nb.ToolChoice.Name
	}
	if sys, ok := nb.System.(string); ok {
		req.System = sys
	}
	if nb.Prompt != "" {
		req.Messages = append(req.Messages, Message{Role: "user", Text: nb.Prompt})
	}
	for _, m := range nb.Messages {
		var text string
		if json.Unmarshal(m.Content, &text) != nil {
			var blocks []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			}
			json.Unmarshal(m.Content, &blocks)
			for _, b := range blocks {
				text += b.Text
			}
		}
		req.Messages = append(req.Messages, Message{Role: m.Role, Text: text})
	}
	return req, nil
}

// nativeResponse builds a model-native response body for resp.
func nativeResponse(req Request, resp Response) []byte {
	if resp.Body != nil {
		return resp.Body
	}
	inTok, outTok := resp.InputTokens, resp.OutputTokens
	if inTok == 0 {
		n := len(req.System)
		for _, m := range req.Messages {
			n += len(m.Text)
		}
		inTok = max(1, (n+3)/4)
	}
	if outTok == 0 {
		outTok = estimate(resp.Text + string(resp.ToolInput))
	}
	var b []byte
	if strings.Contains(req.ModelID, "anthropic.") {
		content := []any{}
		if resp.Text != "" {
			content = append(content, map[string]any{"type": "text", "text": resp.Text})
		}
		stop := resp.StopReason
		if resp.ToolInput != nil {
			name := resp.ToolName
			if name == "" {
				name = req.ToolName
			}
			content = append(content, map[string]any{"type": "tool_use", "id": "toolu_standin", "name": name, "input": resp.ToolInput})
			if stop == "" {
				stop = "tool_use"
			}
		}
		if stop == "" {
			stop = "end_turn"
		}
		b, _ = json.Marshal(map[string]any{"id": "msg_standin", "type": "message", "role": "assistant", "model": req.ModelID,
			"content": content, "stop_reason": stop, "usage": map[string]any{"input_tokens": inTok, "output_tokens": outTok}})
	} else {
		stop := resp.StopReason
		if stop == "" {
			stop = "stop"
		}
		b, _ = json.Marshal(map[string]any{"generation": resp.Text, "prompt_token_count": inTok, "generation_token_count": outTok, "stop_reason": stop})
	}
	return b
}

func (s *Server) invoke(modelID string, body []byte) (int, []byte) {
	req, err := nativeRequest("invoke", modelID, body)
	if err != nil {
		return errBody(400, "ValidationException", "malformed model input: "+err.Error())
	}
	resp := s.callModel(req)
	if resp.Err != nil {
		return errBody(resp.Err.Status, resp.Err.Type, resp.Err.Message)
	}
	return 200, nativeResponse(req, resp)
}
