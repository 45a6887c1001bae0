package bus

import (
	"fmt"

	"github.com/VictoriaMetrics/metrics"
)

// meters holds the bus's metrics; every method is a no-op without a Set.
type meters struct {
	set                      *metrics.Set
	published, forwardErrors counter
}

type counter struct{ c *metrics.Counter }

func (c counter) Inc() { c.Add(1) }

func (c counter) Add(n int) {
	if c.c != nil {
		c.c.Add(n)
	}
}

func newMeters(set *metrics.Set, b *Bus) meters {
	if set == nil {
		return meters{}
	}
	set.GetOrCreateGauge("crispy_bus_lag_events", func() float64 { return float64(b.Lag()) })
	return meters{
		set:           set,
		published:     counter{set.GetOrCreateCounter("crispy_bus_published_events_total")},
		forwardErrors: counter{set.GetOrCreateCounter("crispy_bus_forward_errors_total")},
	}
}

// counter returns a per-consumer counter. Consumer names are code constants, never tenant data.
func (m meters) counter(name, consumer string) counter {
	if m.set == nil {
		return counter{}
	}
	return counter{m.set.GetOrCreateCounter(fmt.Sprintf(`%s{consumer=%q}`, name, consumer))}
}
