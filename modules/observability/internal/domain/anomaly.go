package domain

import "math"

// MinHistory is how many recent points a metric needs before it can be called anomalous.
const MinHistory = 5

// Sigmas is how far from the recent mean (in standard deviations) a value must be to be anomalous.
const Sigmas = 3.0

// SeriesPoints is how many windows a period is split into for anomaly detection: the newest is judged
// against the ones before it.
const SeriesPoints = 12

// Anomaly is a metric whose latest value is more than Sigmas standard deviations from its history.
type Anomaly struct {
	Metric    string  `json:"metric"`
	Value     float64 `json:"value"`
	Mean      float64 `json:"mean"`
	StdDev    float64 `json:"stdDev"`
	ZScore    float64 `json:"zScore" doc:"(value - mean) / stdDev; ±Inf is reported as ±1e9 when the history was constant"`
	Points    int     `json:"points" doc:"history points the mean and deviation were computed from"`
	Direction string  `json:"direction" enum:"above,below"`
}

// Detect judges latest against history (population standard deviation). Fewer than MinHistory points:
// never anomalous. A constant history makes any different value anomalous.
func Detect(metric string, history []float64, latest float64) (Anomaly, bool) {
	if len(history) < MinHistory {
		return Anomaly{}, false
	}
	var sum float64
	for _, v := range history {
		sum += v
	}
	mean := sum / float64(len(history))
	var sq float64
	for _, v := range history {
		sq += (v - mean) * (v - mean)
	}
	sd := math.Sqrt(sq / float64(len(history)))
	dev := latest - mean
	a := Anomaly{Metric: metric, Value: latest, Mean: mean, StdDev: sd, Points: len(history), Direction: "above"}
	if dev < 0 {
		a.Direction = "below"
	}
	if sd == 0 {
		if dev == 0 {
			return Anomaly{}, false
		}
		a.ZScore = math.Copysign(1e9, dev)
		return a, true
	}
	a.ZScore = dev / sd
	return a, math.Abs(dev) > Sigmas*sd
}

// Anomalies judges every metric of the newest window against the earlier windows that had activity
// (a window in which the tenant did nothing is not a data point).
func Anomalies(series []SLIs, active []bool) []Anomaly {
	if len(series) < 2 {
		return nil
	}
	last := series[len(series)-1]
	var out []Anomaly
	for _, name := range MetricNames {
		var hist []float64
		for i := 0; i < len(series)-1; i++ {
			if active[i] {
				v, _ := series[i].Value(name)
				hist = append(hist, v)
			}
		}
		v, _ := last.Value(name)
		if a, ok := Detect(name, hist, v); ok {
			out = append(out, a)
		}
	}
	return out
}
