package codec_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/crispy-enigma/crispy/platform/bus/codec"
)

type happened struct {
	N    int    `json:"n"`
	Name string `json:"name"`
}

type other struct {
	Why string `json:"why"`
}

func register(add func(string, any)) {
	add("test.Happened", happened{})
	add("test.Other", other{})
}

func TestRoundTripByRegisteredName(t *testing.T) {
	t.Parallel()
	c := codec.New()
	register(c.Add)
	register(c.Add) // a second module registering the same package is fine
	if err := c.Err(); err != nil {
		t.Fatal(err)
	}
	d, err := c.Encode(happened{N: 3, Name: "x"})
	if err != nil || d.Type != "test.Happened" {
		t.Fatalf("encode: %+v %v", d, err)
	}
	v, err := c.Decode(d.Type, d.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := v.(happened); !ok || got != (happened{N: 3, Name: "x"}) {
		t.Fatalf("decoded %#v", v)
	}
	if name, err := c.NameOf(reflect.TypeFor[other]()); err != nil || name != "test.Other" {
		t.Fatalf("NameOf: %q %v", name, err)
	}
	if !slices.Equal(c.Names(), []string{"test.Happened", "test.Other"}) || !c.Known("test.Other") || c.Known("test.Nope") {
		t.Fatalf("names %v", c.Names())
	}
}

func TestUnknownAndBadData(t *testing.T) {
	t.Parallel()
	c := codec.New()
	register(c.Add)
	if _, err := c.Decode("test.Nope", []byte(`{}`)); !errors.Is(err, codec.ErrUnknownType) {
		t.Fatalf("unknown type: %v", err)
	}
	if _, err := c.Decode("test.Happened", []byte(`{"n":"three"}`)); err == nil {
		t.Fatal("bad data decoded")
	}
	if _, err := c.Encode(struct{ X int }{}); !errors.Is(err, codec.ErrUnknownType) {
		t.Fatalf("encode of an unregistered type: %v", err)
	}
}

func TestRegistrationMistakesAreKept(t *testing.T) {
	t.Parallel()
	for name, add := range map[string]func(*codec.Registry){
		"name with two types": func(c *codec.Registry) { c.Add("test.Happened", other{}) },
		"type with two names": func(c *codec.Registry) { c.Add("test.Again", happened{}) },
		"pointer sample":      func(c *codec.Registry) { c.Add("test.Ptr", &struct{ A int }{}) },
		"empty name":          func(c *codec.Registry) { c.Add("", struct{ B int }{}) },
	} {
		t.Run(name, func(t *testing.T) {
			c := codec.New()
			register(c.Add)
			add(c)
			if c.Err() == nil {
				t.Fatal("mistake not reported")
			}
		})
	}
}

// happenedName is a view of happened: its name only.
type happenedName struct {
	Name string `json:"name"`
}

// A view decodes its fields as the full type does and skips the rest, even data the full type
// would refuse; a struct that is not a view is refused, naming why.
func TestViews(t *testing.T) {
	t.Parallel()
	c := codec.New()
	register(c.Add)
	view := reflect.TypeFor[happenedName]()
	if err := c.CheckView("test.Happened", view); err != nil {
		t.Fatal(err)
	}
	v, err := c.DecodeAs("test.Happened", view, []byte(`{"n":3,"name":"x"}`))
	if got, ok := v.(happenedName); err != nil || !ok || got.Name != "x" {
		t.Fatalf("DecodeAs view: %#v %v", v, err)
	}
	if err := c.CheckView("test.Happened", reflect.TypeFor[struct {
		N int `json:"n,omitempty"`
	}]()); err != nil {
		t.Errorf("omitempty, which only encoding heeds, made a view no view: %v", err)
	}
	if v, err := c.DecodeAs("test.Happened", reflect.TypeFor[happened](), []byte(`{"n":3,"name":"x"}`)); err != nil || v != (happened{N: 3, Name: "x"}) {
		t.Fatalf("DecodeAs the registered type: %#v %v", v, err)
	}
	if v, err := c.DecodeAs("test.Happened", view, []byte(`{"n":"three","name":"y"}`)); err != nil || v.(happenedName).Name != "y" {
		t.Fatalf("a field the view leaves out is not decoded: %#v %v", v, err)
	}
	if _, err := c.DecodeAs("test.Happened", view, []byte(`{"name":`)); err == nil {
		t.Fatal("truncated data decoded into a view")
	}
	type embeds struct{ happenedName }
	for name, bad := range map[string]reflect.Type{
		"another tag": reflect.TypeFor[struct{ Name string }](),
		"string option": reflect.TypeFor[struct {
			N int `json:"n,string"`
		}](),
		"another type": reflect.TypeFor[struct {
			N int64 `json:"n"`
		}](),
		"not a field": reflect.TypeFor[struct {
			Why string `json:"why"`
		}](),
		"embedded":     reflect.TypeFor[embeds](),
		"not a struct": reflect.TypeFor[string](),
	} {
		if err := c.CheckView("test.Happened", bad); err == nil {
			t.Errorf("%s: %v taken as a view of test.Happened", name, bad)
		}
		if _, err := c.DecodeAs("test.Happened", bad, []byte(`{}`)); err == nil {
			t.Errorf("%s: decoded into %v", name, bad)
		}
	}
	// A key that matches a left-out field exactly would match the view's field without regard to
	// case: not a view.
	type twoNames struct {
		Name  string `json:"name"`
		Upper string `json:"NAME"`
	}
	c.Add("test.TwoNames", twoNames{})
	if err := c.CheckView("test.TwoNames", view); err == nil {
		t.Error("a view whose field's JSON name differs only in case from a left-out field's was taken")
	}
	if err := c.CheckView("test.Nope", view); !errors.Is(err, codec.ErrUnknownType) {
		t.Fatalf("view of an unknown type: %v", err)
	}
}
