package exposition

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Parsed is one family as read back from an exposition.
type Parsed struct {
	Type, Help string
	Samples    int
	// Series are the sample names seen (a histogram's _bucket, _sum and _count).
	Series map[string]bool
}

// Parse reads an exposition and checks what Annotate promises: every sample follows its family's
// HELP and TYPE, each family appears once, and a histogram's buckets carry le. Tests use it to
// compare what a live /metrics serves with what dashboards and rules query.
func Parse(exp []byte) (map[string]*Parsed, error) {
	fams := map[string]*Parsed{}
	var cur string
	sc := bufio.NewScanner(bytes.NewReader(exp))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if _, dup := fams[name]; dup {
				return nil, fmt.Errorf("line %d: family %s appears twice", n, name)
			}
			fams[name] = &Parsed{Help: help, Series: map[string]bool{}}
			cur = name
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			if name != cur || fams[cur].Type != "" {
				return nil, fmt.Errorf("line %d: TYPE of %s not right after its HELP", n, name)
			}
			fams[cur].Type = typ
		case strings.HasPrefix(line, "#"):
			continue
		default:
			name, labels := split(line)
			if cur == "" || !continues(cur, name, labels) {
				return nil, fmt.Errorf("line %d: sample %s outside its family's HELP/TYPE (in %q)", n, name, cur)
			}
			f := fams[cur]
			if f.Type == "histogram" && strings.HasSuffix(name, "_bucket") && !hasLabel(labels, "le") {
				return nil, fmt.Errorf("line %d: histogram bucket without le: %s", n, line)
			}
			f.Samples++
			f.Series[name] = true
		}
	}
	return fams, sc.Err()
}
