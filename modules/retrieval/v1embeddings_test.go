package retrieval_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"testing"
)

// POST /v1/embeddings answers OpenAI's shape with the tenant's embeddings model (one vector per
// input, floats or base64), and refuses another model, token arrays and a bad input in OpenAI's
// error envelope with the request id.
func TestV1EmbeddingsAnswersOpenAIsShape(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opts{})
	r, h := serveJSON(e.h, http.MethodPost, "/v1/embeddings", "acme", map[string]any{"model": "default", "input": []string{"vacation days", "sick leave"}})
	var out struct {
		Object string
		Model  string
		Data   []struct {
			Object    string
			Index     int
			Embedding json.RawMessage
		}
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		}
	}
	if err := json.Unmarshal([]byte(r.raw), &out); err != nil || r.status != 200 || out.Object != "list" || len(out.Data) != 2 || out.Data[1].Index != 1 ||
		out.Data[0].Object != "embedding" || out.Usage.TotalTokens == 0 || out.Model == "" || h.Get("x-request-id") == "" {
		t.Fatalf("%d %.300s", r.status, r.raw)
	}
	var floats []float32
	if err := json.Unmarshal(out.Data[0].Embedding, &floats); err != nil || len(floats) == 0 {
		t.Fatalf("embedding %.100s: %v", out.Data[0].Embedding, err)
	}
	r, _ = serveJSON(e.h, http.MethodPost, "/v1/embeddings", "acme", map[string]any{"model": out.Model, "input": "vacation days", "encoding_format": "base64"})
	var b64 struct{ Data []struct{ Embedding string } }
	_ = json.Unmarshal([]byte(r.raw), &b64)
	if raw, err := base64.StdEncoding.DecodeString(b64.Data[0].Embedding); r.status != 200 || err != nil || len(raw) != 4*len(floats) {
		t.Fatalf("base64: %d %.200s", r.status, r.raw)
	}
	for _, bad := range []struct {
		body        map[string]any
		status      int
		code, param string
	}{
		{map[string]any{"model": "openai:text-embedding-3-small", "input": "x"}, 400, "model_not_available", "model"},
		{map[string]any{"model": "default", "input": []any{[]int{1, 2}}}, 400, "unsupported_field", "input"},
		{map[string]any{"model": "default", "input": []any{}}, 400, "invalid_input", "input"},
		{map[string]any{"model": "default", "input": "x", "dimensions": 3}, 400, "unsupported_field", "dimensions"},
	} {
		r, h := serveJSON(e.h, http.MethodPost, "/v1/embeddings", "acme", bad.body)
		var env struct {
			Error struct {
				Message, Type, Code string
				Param               *string
			}
		}
		_ = json.Unmarshal([]byte(r.raw), &env)
		if r.status != bad.status || env.Error.Code != bad.code || env.Error.Param == nil || *env.Error.Param != bad.param || env.Error.Message == "" || h.Get("x-request-id") == "" {
			t.Errorf("%v: %d %s", bad.body, r.status, r.raw)
		}
	}
}
