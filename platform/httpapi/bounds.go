package httpapi

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/validation"
)

// A problem body never repeats the request (issue 10). huma's validation errors carry the whole value
// at their location: for an unknown property that is the whole object, so n unknown properties gave
// n copies of the body, an answer that grew with the square of the request. What a client gets
// instead, per failing input: the location, the rule and a short excerpt; objects and arrays are
// described by their size. Everything a client chose (property names in locations, values quoted in
// messages, the path) is clipped, and the whole body stays under MaxProblemBytes.
const (
	// MaxProblemErrors is how many failing inputs a problem lists; the rest are counted in
	// omittedErrors.
	MaxProblemErrors = 20
	// MaxProblemBytes bounds the encoded problem body.
	MaxProblemBytes = 8 << 10
	// MaxExcerptChars bounds the excerpt of a value in an error.
	MaxExcerptChars = 100

	maxLocationChars = 160
	maxMessageChars  = 200
	maxDetailChars   = 400
	maxShortChars    = 200 // type, title, code, instance, request id
)

// addError lists d, bounded, or counts it when the list is full. d itself is not changed: huma's
// details may be shared with the caller.
func (p *Problem) addError(d *huma.ErrorDetail) {
	if d == nil {
		return
	}
	if len(p.Errors) >= MaxProblemErrors {
		p.OmittedErrors++
		return
	}
	out := &huma.ErrorDetail{Location: clip(d.Location, maxLocationChars), Message: clip(d.Message, maxMessageChars)}
	// huma gives an unknown property the object that holds it as its value: the location already
	// names the property, and the object says nothing more.
	if d.Message != validation.MsgUnexpectedProperty {
		out.Value = excerpt(d.Value)
	}
	p.Errors = append(p.Errors, out)
}

// bound makes p fit the problem promise, whoever built it, and returns it: at most
// MaxProblemErrors bounded errors and at most MaxProblemBytes encoded.
func (p *Problem) bound() *Problem {
	p.Type = clip(p.Type, maxShortChars)
	p.Title = clip(p.Title, maxShortChars)
	p.Code = clip(p.Code, maxShortChars)
	p.Instance = clip(p.Instance, maxShortChars)
	p.RequestID = clip(p.RequestID, maxShortChars)
	p.Detail = clip(p.Detail, maxDetailChars)
	// Re-list the errors through addError: a *Problem or an apperr built elsewhere may carry any
	// number of any size. A fresh slice, so a Problem shared by copy is not changed underneath.
	errs, omitted := p.Errors, p.OmittedErrors
	p.Errors, p.OmittedErrors = nil, 0
	for _, d := range errs {
		p.addError(d)
	}
	p.OmittedErrors += omitted
	// Escaping can make even clipped text six times longer (\u0001): drop errors from the end until
	// the body fits. The fields above alone stay far below the limit.
	for len(p.Errors) > 0 && encodedSize(p) > MaxProblemBytes {
		p.Errors = p.Errors[:len(p.Errors)-1]
		p.OmittedErrors++
	}
	if len(p.Errors) == 0 {
		p.Errors = nil
	}
	return p
}

func encodedSize(p *Problem) int {
	b, err := json.Marshal(p)
	if err != nil {
		return MaxProblemBytes + 1
	}
	return len(b)
}

// clip returns s cut to at most n characters, the last of them an ellipsis when it was cut. It
// reads at most n+1 characters of s, whatever its length.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut, count := 0, 0
	for i := range s {
		if count == n-1 {
			cut = i
		}
		if count == n {
			return s[:cut] + "…"
		}
		count++
	}
	return s
}

// excerpt is what an error shows of a value: scalars as they are, text clipped to
// MaxExcerptChars, objects and arrays by their size. It never encodes the value, so it costs the
// same for a 1 MB object as for an empty one.
func excerpt(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		return clip(x, MaxExcerptChars)
	case json.Number:
		return clip(string(x), MaxExcerptChars)
	case []byte:
		return fmt.Sprintf("%d bytes", len(x))
	case bool, float64, float32, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return x
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case map[string]any:
		return sized("object", len(x), "property", "properties")
	case []any:
		return sized("array", len(x), "item", "items")
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.String:
		return clip(rv.String(), MaxExcerptChars)
	case reflect.Bool:
		return rv.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return rv.Uint()
	case reflect.Float32, reflect.Float64:
		return rv.Float()
	case reflect.Struct:
		return "object"
	case reflect.Map:
		return sized("object", rv.Len(), "property", "properties")
	case reflect.Slice, reflect.Array:
		return sized("array", rv.Len(), "item", "items")
	default:
		return "a value of type " + rv.Type().String()
	}
}

func sized(what string, n int, one, many string) string {
	if n == 1 {
		return what + " of 1 " + one
	}
	return what + " of " + strconv.Itoa(n) + " " + many
}
