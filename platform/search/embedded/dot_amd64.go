package embedded

import "golang.org/x/sys/cpu"

// useAVX2 is read-only after package initialisation: it describes the CPU, not program state.
var useAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// dotAVX2 sums a[i]*b[i] for the first len(a)&^7 elements with AVX2 FMA (dot_amd64.s).
//
//go:noescape
func dotAVX2(a, b []float32) float32

// dot is the inner product; distance computations are nearly all of the index's work.
func dot(a, b []float32) float32 {
	if !useAVX2 || len(a) < 16 {
		return dotGeneric(a, b)
	}
	n := len(a)
	b = b[:n]
	m := n &^ 7
	s := dotAVX2(a[:m], b[:m])
	for i := m; i < n; i++ {
		s += a[i] * b[i]
	}
	return s
}

// dotQ8AVX2 sums a[i]*float32(b[i]) for the first len(a)&^7 elements with AVX2 FMA (dot_amd64.s).
//
//go:noescape
func dotQ8AVX2(a []float32, b []int8) float32

// dotQ8 is the inner product of a float query and an int8 code (the caller multiplies by the
// code's scale): the graph walk's distance.
func dotQ8(a []float32, b []int8) float32 {
	if !useAVX2 || len(a) < 16 {
		return dotQ8Generic(a, b)
	}
	n := len(a)
	b = b[:n]
	m := n &^ 7
	s := dotQ8AVX2(a[:m], b[:m])
	for i := m; i < n; i++ {
		s += a[i] * float32(b[i])
	}
	return s
}
