package auditlog

import (
	"bytes"
	"encoding/json"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func trimSpace(b []byte) []byte { return bytes.TrimSpace(b) }
