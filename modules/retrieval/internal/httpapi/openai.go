package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/danielgtaylor/huma/v2"

	"github.com/crispy-enigma/crispy/modules/retrieval/internal/app"
	"github.com/crispy-enigma/crispy/platform/apperr"
	"github.com/crispy-enigma/crispy/platform/metering"
	"github.com/crispy-enigma/crispy/platform/tenant"
)

// EmbeddingsInput is POST /v1/embeddings (OpenAI's embeddings API).
type EmbeddingsInput struct {
	Body struct {
		Model          string `json:"model" maxLength:"240" doc:"The tenant's embeddings model: \"default\", its provider:model, or its bare name; another model is refused (400 model_not_available), as one tenant embeds with one model" example:"default"`
		Input          any    `json:"input" doc:"A string or an array of up to 2048 strings (token arrays are refused: 400 unsupported_field)"`
		EncodingFormat string `json:"encoding_format,omitempty" enum:"float,base64" doc:"float (default) or base64 (little-endian float32)"`
		Dimensions     int    `json:"dimensions,omitempty" minimum:"1" doc:"Refused unless it is the model's own size (no model here shortens its vectors)"`
		User           string `json:"user,omitempty" maxLength:"256"`
	}
}

// OAIEmbedding is one vector of the answer: a list of floats, or their base64.
type OAIEmbedding struct {
	Object    string `json:"object" enum:"embedding"`
	Index     int    `json:"index"`
	Embedding any    `json:"embedding" doc:"An array of numbers, or a base64 string with encoding_format base64"`
}

// EmbeddingsOutput is OpenAI's embeddings answer.
type EmbeddingsOutput struct {
	Body struct {
		Object string         `json:"object" enum:"list"`
		Data   []OAIEmbedding `json:"data"`
		Model  string         `json:"model" example:"builtin:hashed-ngram"`
		Usage  struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		} `json:"usage"`
	}
}

const maxEmbedInputs = 2048

func registerOpenAI(api huma.API, svc *app.Service) {
	huma.Register(api, huma.Operation{OperationID: "create-embeddings", Method: http.MethodPost, Path: "/v1/embeddings", Tags: []string{"openai"},
		Summary: "OpenAI-compatible embeddings",
		Description: "Embeds the input with the tenant's embeddings model (models.embeddings, else the server's), as OpenAI's embeddings API answers. " +
			"The call is metered like a chat call (booked against the token budget, recorded as usage with purpose embeddings; the built-in hashed " +
			"embedder costs nothing and is not metered). Errors are OpenAI's {error: {message, type, param, code}}."},
		func(ctx context.Context, in *EmbeddingsInput) (*EmbeddingsOutput, error) {
			t, _ := tenant.FromContext(ctx)
			texts, err := embedInputs(in.Body.Input)
			if err != nil {
				return nil, err
			}
			e, err := svc.Embedder(ctx, t)
			if err != nil {
				return nil, err
			}
			if !sameModel(in.Body.Model, e.Model()) {
				return nil, apperr.Invalid("model_not_available", "body.model", "this tenant embeds with "+e.Model()+" (send it, its bare name, or \"default\")")
			}
			vs, model, err := svc.Embed(ctx, t, metering.PurposeEmbeddings, texts)
			if err != nil {
				return nil, err
			}
			if d := in.Body.Dimensions; d != 0 && len(vs) > 0 && d != len(vs[0]) {
				return nil, apperr.Invalid("unsupported_field", "body.dimensions", "model "+model+" answers "+strconv.Itoa(len(vs[0]))+" dimensions only")
			}
			out := &EmbeddingsOutput{}
			out.Body.Object, out.Body.Model = "list", model
			out.Body.Data = make([]OAIEmbedding, len(vs))
			for i, v := range vs {
				var emb any = v
				if in.Body.EncodingFormat == "base64" {
					b := make([]byte, 4*len(v))
					for j, f := range v {
						binary.LittleEndian.PutUint32(b[4*j:], math.Float32bits(f))
					}
					emb = base64.StdEncoding.EncodeToString(b)
				}
				out.Body.Data[i] = OAIEmbedding{Object: "embedding", Index: i, Embedding: emb}
			}
			out.Body.Usage.PromptTokens = metering.EstimateTokens(texts...)
			out.Body.Usage.TotalTokens = out.Body.Usage.PromptTokens
			return out, nil
		})
}

// sameModel: the client named the tenant's embeddings model ("default", provider:model or its bare name).
func sameModel(asked, model string) bool {
	if asked == "" || asked == "default" || asked == model {
		return true
	}
	_, bare, _ := strings.Cut(model, ":")
	return asked == bare
}

// embedInputs reads input: a string or an array of strings; token arrays are refused.
func embedInputs(v any) ([]string, error) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return nil, apperr.Invalid("invalid_input", "body.input", "input must not be empty")
		}
		return []string{x}, nil
	case []any:
		if len(x) == 0 || len(x) > maxEmbedInputs {
			return nil, apperr.Invalid("invalid_input", "body.input", "input is 1 to 2048 strings")
		}
		out := make([]string, len(x))
		for i, it := range x {
			s, ok := it.(string)
			if !ok {
				if _, num := it.(json.Number); num || isNumberOrList(it) {
					return nil, apperr.Invalid("unsupported_field", "body.input", "token arrays are not supported: send text")
				}
				return nil, apperr.Invalid("invalid_input", "body.input["+strconv.Itoa(i)+"]", "each input is a string")
			}
			if s == "" {
				return nil, apperr.Invalid("invalid_input", "body.input["+strconv.Itoa(i)+"]", "an input must not be empty")
			}
			out[i] = s
		}
		return out, nil
	default:
		return nil, apperr.Invalid("invalid_input", "body.input", "input is a string or an array of strings")
	}
}

func isNumberOrList(v any) bool {
	switch v.(type) {
	case float64, int, int64, []any:
		return true
	}
	return false
}
