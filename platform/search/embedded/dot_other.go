//go:build !amd64

package embedded

func dot(a, b []float32) float32 { return dotGeneric(a, b) }

func dotQ8(a []float32, b []int8) float32 { return dotQ8Generic(a, b) }
