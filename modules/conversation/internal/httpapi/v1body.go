package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/platform/jsonwalk"
)

// The body of POST /v1/chat/completions is decoded and validated by the operation itself
// (SkipValidateBody), not by huma, which decoded every body twice: into map[string]any to
// validate it against the schema, then into the struct (then the pass-through split it a third
// time, into its fields). A proxied call spent about a tenth of its server CPU there.
//
// decodeFast reads the bodies clients send in one walk over the bytes, checking exactly what the
// schema says of each field it accepts; it gives up on anything it is not sure of (a field in a
// shape it does not read, an escape in a key, a number that is not plain, a key that
// encoding/json would match to a field regardless of case), and the body then takes bodyCheck's
// way: huma's own validator against the same schema, then the struct decode, so the answer to a
// bad body (its status, its error list and their order) is the one huma gave. The fast path can
// only cost speed, never let through what the schema refuses.

// bodyCheckKey is the operation's Metadata entry holding its bodyCheck.
const bodyCheckKey = "crispy.v1.bodyCheck"

// bodyCheck validates and decodes a body as huma would have: the schema, the API (its formats and
// schema registry).
type bodyCheck struct {
	api    huma.API
	schema *huma.Schema
}

// decode validates in.RawBody against the schema and decodes it into in.body, returning huma's
// errors for it: a body that is not JSON (400) or not of a known content type (415) as
// validateBody words it, the schema's violations (422), or the struct decode's failure on a body
// the schema passed.
func (c *bodyCheck) decode(contentType string, in *CompletionsInput) []error {
	if contentType == "" {
		contentType = "application/json" // huma's fallback: the operation's JSON content
	}
	var parsed any
	if err := c.api.Unmarshal(contentType, in.RawBody, &parsed); err != nil {
		status := 400
		if errors.Is(err, huma.ErrUnknownContentType) {
			status = 415
		}
		return []error{&statusDetail{ErrorDetail: &huma.ErrorDetail{Location: "body", Message: err.Error(), Value: string(in.RawBody)}, status: status}}
	}
	pb := huma.NewPathBuffer(make([]byte, 0, 128), 0)
	pb.Push("body")
	res := &huma.ValidateResult{}
	huma.Validate(c.api.OpenAPI().Components.Schemas, c.schema, pb, huma.ModeWriteToServer, parsed, res)
	valid := len(res.Errors) == 0
	if err := c.api.Unmarshal(contentType, in.RawBody, &in.body); err != nil && valid {
		res.Errors = append(res.Errors, &huma.ErrorDetail{Location: "body", Message: err.Error(), Value: string(in.RawBody)})
	}
	return res.Errors
}

// statusDetail is an error detail that sets the answer's status (huma takes it from the last
// error that has one), for the 400 and 415 that huma's validation answered.
type statusDetail struct {
	*huma.ErrorDetail
	status int
}

func (d *statusDetail) GetStatus() int { return d.status }

// completionKeys are the body's documented fields.
var completionKeys = []string{"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature", "top_p", "n",
	"stop", "seed", "user", "tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs", "top_logprobs", "frequency_penalty",
	"presence_penalty", "logit_bias"}

// messageKeys are OAIMessage's fields.
var messageKeys = []string{"role", "content", "name"}

// foldsInto reports whether key is not one of keys but encoding/json would decode it into one of
// them (it matches field names regardless of case).
func foldsInto(key []byte, keys []string) bool {
	for _, k := range keys {
		if len(k) == len(key) && string(key) != k && bytes.EqualFold(key, []byte(k)) {
			return true
		}
	}
	return false
}

// decodeFast decodes and validates in.RawBody into in.body and in.fields when it can tell the body
// is valid by the schema; ok is false when it cannot (the body may still be valid: bodyCheck
// decides). It fills the fields the handlers read (model, messages, stream, stream_options,
// max_tokens, max_completion_tokens, user, tools, and the numbers it checks); stop, tool_choice,
// response_format and parallel_tool_calls are checked but not decoded: the pass-through sends
// the client's bytes of them.
func (in *CompletionsInput) decodeFast(contentType string) bool {
	if !jsonContent(contentType) {
		return false
	}
	body := in.RawBody
	if !json.Valid(body) || !utf8.Valid(body) {
		return false
	}
	b := &in.body
	fields := make(map[string]json.RawMessage, 8)
	end := jsonwalk.Object(body, jsonwalk.Space(body, 0), func(key []byte, vs, ve int) bool {
		v := body[vs:ve:ve] // capped: an append to one value never writes into the next
		if _, dup := fields[string(key)]; dup {
			return false // the last one wins in both decodes; not worth reading twice
		}
		fields[string(key)] = v
		switch string(key) {
		case "model":
			s, ok := plainString(v)
			b.Model = s
			return ok && utf8.RuneCountInString(s) <= 240
		case "user":
			s, ok := plainString(v)
			b.User = s
			return ok && utf8.RuneCountInString(s) <= 256
		case "messages":
			return in.fastMessages(v)
		case "stream":
			return boolValue(v, &b.Stream)
		case "logprobs":
			return boolValue(v, &b.Logprobs)
		case "parallel_tool_calls":
			var p bool
			return boolValue(v, &p)
		case "stream_options":
			b.StreamOptions = &StreamOptions{}
			return jsonwalk.Object(v, 0, func(key []byte, vs, ve int) bool {
				if string(key) == "include_usage" {
					return boolValue(v[vs:ve], &b.StreamOptions.IncludeUsage)
				}
				return !bytes.EqualFold(key, []byte("include_usage"))
			}) == len(v)
		case "max_tokens":
			return intIn(v, &b.MaxTokens, 0, 1<<53)
		case "max_completion_tokens":
			return intIn(v, &b.MaxCompletionTokens, 0, 1<<53)
		case "n":
			return intIn(v, &b.N, 1, 128)
		case "top_logprobs":
			return intIn(v, &b.TopLogprobs, 0, 20)
		case "seed":
			n, err := strconv.ParseInt(string(v), 10, 64)
			b.Seed = n
			return err == nil && n > -1<<53 && n < 1<<53
		case "temperature":
			return numberIn(v, &b.Temperature, 0, 2)
		case "top_p":
			return numberIn(v, &b.TopP, 0, 1)
		case "frequency_penalty":
			return numberIn(v, &b.FrequencyPenalty, -2, 2)
		case "presence_penalty":
			return numberIn(v, &b.PresencePenalty, -2, 2)
		case "stop", "tool_choice":
			return true // any JSON value
		case "response_format":
			return v[0] == '{'
		case "tools":
			// Rare and read whole by checkTools: decoded as the struct decode did.
			n := 0
			if jsonwalk.Array(v, 0, func(es, ee int) bool { n++; return v[es] == '{' }) != len(v) || n > 128 {
				return false
			}
			return json.Unmarshal(v, &b.Tools) == nil
		}
		// logit_bias (rare) and the documented fields' case variants go the slow way; other
		// fields are passed through as they are (additionalProperties).
		return string(key) != "logit_bias" && !foldsInto(key, completionKeys)
	})
	if end < 0 || jsonwalk.Space(body, end) != len(body) || fields["model"] == nil || fields["messages"] == nil {
		return false
	}
	in.fields = fields
	return true
}

// fastMessages reads the messages array: 1 to 1,000 objects, each with a role of the enum, a
// string name if any, any content.
func (in *CompletionsInput) fastMessages(v []byte) bool {
	if v[0] != '[' {
		return false
	}
	msgs := make([]OAIMessage, 0, 4)
	end := jsonwalk.Array(v, 0, func(es, ee int) bool {
		if v[es] != '{' || len(msgs) == 1000 {
			return false
		}
		var m OAIMessage
		seen := 0
		if jsonwalk.Object(v, es, func(key []byte, vs, ve int) bool {
			f := v[vs:ve:ve]
			switch string(key) {
			case "role":
				if seen&1 != 0 {
					return false
				}
				seen |= 1
				s, ok := plainString(f)
				m.Role = s
				return ok && validRole(s)
			case "content":
				if seen&2 != 0 {
					return false
				}
				seen |= 2
				if string(f) != "null" {
					m.Content = json.RawMessage(f)
				}
				return true
			case "name":
				if seen&4 != 0 {
					return false
				}
				seen |= 4
				s, ok := plainString(f)
				m.Name = s
				return ok
			}
			return !foldsInto(key, messageKeys)
		}) != ee || seen&1 == 0 {
			return false
		}
		msgs = append(msgs, m)
		return true
	})
	if end != len(v) || len(msgs) == 0 {
		return false
	}
	in.body.Messages = msgs
	return true
}

func validRole(s string) bool {
	switch s {
	case "system", "developer", "user", "assistant", "tool":
		return true
	}
	return false
}

// jsonContent reports whether huma decodes a body of this content type as JSON: none (huma
// falls back to the operation's application/json) or application/json itself.
func jsonContent(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "application/json")
}

// plainString is the JSON string v (valid JSON, valid UTF-8) without escapes; ok is false for
// any other value.
func plainString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return "", false
	}
	return string(v[1 : len(v)-1]), true
}

func boolValue(v []byte, dst *bool) bool {
	switch string(v) {
	case "true":
		*dst = true
		return true
	case "false":
		*dst = false
		return true
	}
	return false
}

// intIn reads a plain non-negative integer (digits only, as encoding/json decodes into an int)
// between lo and hi.
func intIn(v []byte, dst *int, lo, hi int) bool {
	if len(v) == 0 || len(v) > 16 || (v[0] == '0' && len(v) > 1) {
		return false
	}
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	*dst = n
	return n >= lo && n <= hi
}

// numberIn reads a JSON number between lo and hi.
func numberIn(v []byte, dst *float64, lo, hi float64) bool {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	*dst = f
	return err == nil && f >= lo && f <= hi
}
