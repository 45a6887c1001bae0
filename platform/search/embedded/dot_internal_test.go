package embedded

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestDotMatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 384, 385, 1024} {
		a, b := make([]float32, n), make([]float32, n+3)
		var want float64
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
			want += float64(a[i]) * float64(b[i])
		}
		got := dot(a, b[:n])
		if math.Abs(float64(got)-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: dot %v, want %v", n, got, want)
		}
		if g := dotGeneric(a, b[:n]); math.Abs(float64(g)-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: generic %v, want %v", n, g, want)
		}
	}
}

func BenchmarkDot384(b *testing.B) {
	x, y := make([]float32, 384), make([]float32, 384)
	for i := range x {
		x[i], y[i] = float32(i), float32(384-i)
	}
	var s float32
	b.Run("dispatch", func(b *testing.B) {
		for range b.N {
			s += dot(x, y)
		}
	})
	b.Run("generic", func(b *testing.B) {
		for range b.N {
			s += dotGeneric(x, y)
		}
	})
	_ = s
}

func TestDotQ8MatchesGeneric(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{0, 1, 7, 8, 15, 16, 17, 31, 32, 33, 100, 384, 385, 1024} {
		a, b := make([]float32, n), make([]int8, n+3)
		var want float64
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), int8(r.IntN(255)-127)
			want += float64(a[i]) * float64(b[i])
		}
		got := dotQ8(a, b[:n])
		if math.Abs(float64(got)-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: dotQ8 %v, want %v", n, got, want)
		}
		if g := dotQ8Generic(a, b[:n]); math.Abs(float64(g)-want) > 1e-3*math.Max(1, math.Abs(want)) {
			t.Fatalf("n=%d: generic %v, want %v", n, g, want)
		}
	}
}

func BenchmarkDotQ8384(b *testing.B) {
	x, y := make([]float32, 384), make([]int8, 384)
	for i := range x {
		x[i], y[i] = float32(i), int8(i%255-127)
	}
	var s float32
	b.Run("dispatch", func(b *testing.B) {
		for range b.N {
			s += dotQ8(x, y)
		}
	})
	b.Run("generic", func(b *testing.B) {
		for range b.N {
			s += dotQ8Generic(x, y)
		}
	})
	_ = s
}
