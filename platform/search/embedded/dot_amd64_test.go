package embedded

import (
	"math"
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/cpu"
)

// Each kernel this CPU has, called directly (dot dispatches to only the widest one).
func TestDotKernelsMatchGeneric(t *testing.T) {
	kernels := map[string]struct {
		has  bool
		step int
		fn   func(a, b []float32) float32
	}{
		"avx2":   {useAVX2, 8, dotAVX2},
		"avx512": {useAVX2 && cpu.X86.HasAVX512F, 16, dotAVX512},
	}
	r := rand.New(rand.NewPCG(7, 8))
	for name, k := range kernels {
		if !k.has {
			t.Logf("%s: not on this CPU", name)
			continue
		}
		for _, n := range []int{0, 8, 16, 32, 48, 64, 80, 128, 384, 1024} {
			n = n / k.step * k.step
			a, b := make([]float32, n), make([]float32, n)
			var want float64
			for i := range a {
				a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64())
				want += float64(a[i]) * float64(b[i])
			}
			if got := k.fn(a, b); math.Abs(float64(got)-want) > 1e-3*math.Max(1, math.Abs(want)) {
				t.Fatalf("%s n=%d: %v, want %v", name, n, got, want)
			}
		}
	}
}

func BenchmarkDotKernels384(b *testing.B) {
	x, y := make([]float32, 384), make([]float32, 384)
	for i := range x {
		x[i], y[i] = float32(i), float32(384-i)
	}
	var s float32
	b.Run("avx2", func(b *testing.B) {
		if !useAVX2 {
			b.Skip("no AVX2")
		}
		for range b.N {
			s += dotAVX2(x, y)
		}
	})
	b.Run("avx512", func(b *testing.B) {
		if !useAVX512 {
			b.Skip("no AVX-512")
		}
		for range b.N {
			s += dotAVX512(x, y)
		}
	})
	_ = s
}
