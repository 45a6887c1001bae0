package sdk

import (
	"context"
	"encoding/json"
)

// Func adapts a typed function to a Tool: params are decoded into In, the result encoded from Out.
// Decoding errors become an *Error with code "invalid_params" (the host has validated the params
// against the schema already, so this means the schema and In disagree).
func Func[In, Out any](d Description, fn func(ctx context.Context, in In, req Request, host Host) (Out, error)) Tool {
	return funcTool[In, Out]{d: d, fn: fn}
}

type funcTool[In, Out any] struct {
	d  Description
	fn func(ctx context.Context, in In, req Request, host Host) (Out, error)
}

func (f funcTool[In, Out]) Describe() Description { return f.d }

func (f funcTool[In, Out]) Execute(ctx context.Context, req Request, host Host) (json.RawMessage, error) {
	var in In
	if len(req.Params) > 0 {
		if err := json.Unmarshal(req.Params, &in); err != nil {
			return nil, Errorf("invalid_params", "params do not decode: %v", err)
		}
	}
	out, err := f.fn(ctx, in, req, host)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, Errorf("invalid_result", "result does not encode: %v", err)
	}
	return b, nil
}
