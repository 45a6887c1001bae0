package domain

import "time"

// ToolStats is one tool's figures over a period.
type ToolStats struct {
	Tool           string
	Executions     int
	Successes      int
	Errors         int
	MeanDurationMs float64
}

// Period parses SPEC §2's period: 1h, 24h (default when empty), 7d or 30d.
func Period(p string) (time.Duration, bool) {
	switch p {
	case "1h":
		return time.Hour, true
	case "", "24h":
		return 24 * time.Hour, true
	case "7d":
		return 7 * 24 * time.Hour, true
	case "30d":
		return 30 * 24 * time.Hour, true
	}
	return 0, false
}
