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
