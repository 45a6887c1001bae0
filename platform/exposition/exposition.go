// Package exposition writes the process's metrics in the Prometheus text format (version 0.0.4)
// with a `# HELP` and a `# TYPE` line before every family, and holds the bucket bounds every
// latency histogram uses, so histogram_quantile works on all of them with the same resolution.
//
// github.com/VictoriaMetrics/metrics (v1.44.0) only writes metadata behind a process-wide switch
// (metrics.ExposeMetadata) and then with an empty HELP, which `promtool check metrics` rejects; a
// few of its Go runtime families also break Prometheus naming rules. So the set is written as the
// library formats it and this package adds the metadata itself, family by family, from Catalog.
package exposition

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/VictoriaMetrics/metrics"
)

// ContentType is the media type of what Write produces.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// LatencyBuckets are the upper bounds (seconds) of every latency histogram: from a 1 ms store
// append to a 2 min model call. One set for all, so a dashboard can compare any two.
var LatencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120}

// SizeBuckets are the upper bounds of histograms of counts (events in a commit batch).
var SizeBuckets = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}

// dropped are Go runtime families the library writes under names Prometheus' rules refuse (a
// counter named _count, a gauge named _count); the same facts are in go_gomaxprocs and the
// go_gc_* families, so they are left out rather than renamed.
var dropped = map[string]bool{
	"go_cgo_calls_count": true,
	"go_gc_forced_count": true,
	"go_cpu_count":       true,
}

// Write writes every metric of set, then the Go runtime and process metrics, each family preceded
// by its HELP and TYPE lines.
func Write(w io.Writer, set *metrics.Set) error {
	var raw bytes.Buffer
	if set != nil {
		set.WritePrometheus(&raw)
	}
	metrics.WriteProcessMetrics(&raw)
	return Annotate(w, raw.Bytes())
}

// Annotate copies an exposition written without metadata to w, adding HELP and TYPE before each
// family. A family's samples must be contiguous (VictoriaMetrics sorts them by family). The help
// comes from Catalog; the type from Catalog too, else from the samples: le buckets make a
// histogram, quantiles a summary, a _total suffix a counter, anything else a gauge.
func Annotate(w io.Writer, raw []byte) error {
	bw := bufio.NewWriter(w)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	family, skip := "", false
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue // metadata the library may have written itself is replaced by ours
		}
		name, labels := split(line)
		if !continues(family, name, labels) {
			family = familyOf(name, labels)
			skip = dropped[family]
			if !skip {
				f := Describe(family, inferType(name, labels))
				fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", family, escapeHelp(f.Help), family, f.Type)
			}
		}
		if skip {
			continue
		}
		bw.WriteString(normalize(line))
		bw.WriteByte('\n')
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("exposition: %w", err)
	}
	return bw.Flush()
}

// split returns a sample's metric name and its label block ("" or "{…}").
func split(line string) (name, labels string) {
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return line, ""
	}
	if line[i] == ' ' {
		return line[:i], ""
	}
	j := strings.LastIndexByte(line, '}')
	if j < i {
		return line[:i], ""
	}
	return line[:i], line[i : j+1]
}

// continues tells whether a sample belongs to the family being written: a histogram's or summary's
// _bucket, _sum and _count lines, or another series of the same name.
func continues(family, name, labels string) bool {
	if family == "" {
		return false
	}
	if name == family {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if name == family+suffix {
			return true
		}
	}
	return false
}

func familyOf(name, labels string) string {
	if strings.HasSuffix(name, "_bucket") && hasLabel(labels, "le") {
		return strings.TrimSuffix(name, "_bucket")
	}
	return name
}

func inferType(name, labels string) string {
	switch {
	case strings.HasSuffix(name, "_bucket") && hasLabel(labels, "le"):
		return "histogram"
	case hasLabel(labels, "quantile"):
		return "summary"
	case strings.HasSuffix(name, "_total"):
		return "counter"
	}
	return "gauge"
}

func hasLabel(labels, label string) bool {
	return strings.HasPrefix(labels, "{"+label+"=") || strings.Contains(labels, ","+label+"=") || strings.Contains(labels, ", "+label+"=")
}

// normalize drops the blanks the library writes after commas in a few label sets (go_info_ext),
// which strict parsers refuse.
func normalize(line string) string {
	name, labels := split(line)
	if !strings.Contains(labels, ", ") {
		return line
	}
	return name + strings.ReplaceAll(labels, `", `, `",`) + line[len(name)+len(labels):]
}

func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
