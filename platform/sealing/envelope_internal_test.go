package sealing

import (
	"bytes"
	"encoding/json"
	"testing"
)

// The hand-written envelope is byte for byte what encoding/json writes, and reads back whatever
// spelling of it encoding/json accepts.
func TestEnvelopeMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		k     string
		g     []byte // nil: an envelope sealed before key check values
		plain string
	}{
		{"session/0b0f6a52-6f7e-4c55-9a8e-3f3d2f1c9b10", nil, ""},
		{"session/x/17", []byte{9, 8, 7, 6, 5, 4, 3, 255}, `{"sessionId":"x","usage":{"totalTokens":3}}`},
		{`document/a"b\c<d>&e`, []byte("checkval"), `{"n":1}`},
		{"session/y", nil, `{"n":1}`},
	} {
		var env envelope
		env.Sealed.K, env.Sealed.G, env.Sealed.N, env.Sealed.C = c.k, c.g, []byte("0123456789ab"), []byte{0, 1, 2, 250, 251, 252, 253, 254, 255}
		if c.plain != "" {
			env.Plain = json.RawMessage(c.plain)
		}
		want, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		got := appendEnvelope(nil, env.Sealed.K, env.Sealed.G, env.Sealed.N, env.Sealed.C, env.Plain)
		if !bytes.Equal(got, want) {
			t.Fatalf("appendEnvelope:\n%s\nencoding/json:\n%s", got, want)
		}
		for _, spelling := range [][]byte{got, indent(t, got)} {
			back, err := parseEnvelope(spelling)
			if err != nil || back.Sealed.K != c.k || !bytes.Equal(back.Sealed.G, c.g) || !bytes.Equal(back.Sealed.N, env.Sealed.N) || !bytes.Equal(back.Sealed.C, env.Sealed.C) {
				t.Fatalf("parseEnvelope(%s) = %+v, %v", spelling, back, err)
			}
			var p1, p2 any
			_ = json.Unmarshal(back.Plain, &p1)
			_ = json.Unmarshal(env.Plain, &p2)
			if c.plain != "" && !jsonEqual(p1, p2) {
				t.Fatalf("plain %s, want %s", back.Plain, env.Plain)
			}
		}
	}
	if _, _, _, _, _, ok := scanEnvelope([]byte(`{"sealed":{"k":"a","n":"!!","c":"AA=="}}`)); ok {
		t.Fatal("a nonce that is not base64 scanned")
	}
}

func indent(t *testing.T, b []byte) []byte {
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
