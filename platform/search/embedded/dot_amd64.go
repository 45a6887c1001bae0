package embedded

import "golang.org/x/sys/cpu"

// useAVX2 and useAVX512 are read-only after package initialisation: they describe the CPU, not
// program state.
var (
	useAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	useAVX512 = useAVX2 && cpu.X86.HasAVX512F
)

// dotAVX512 sums a[i]*b[i] for the first len(a)&^15 elements with AVX-512 FMA (dot_amd64.s).
//
//go:noescape
func dotAVX512(a, b []float32) float32

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
	var m int
	var s float32
	if useAVX512 {
		m = n &^ 15
		s = dotAVX512(a[:m], b[:m])
	} else {
		m = n &^ 7
		s = dotAVX2(a[:m], b[:m])
	}
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
