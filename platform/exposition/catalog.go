package exposition

import (
	"sort"
	"strings"
)

// Family is one metric family as Prometheus sees it: its name (no _bucket/_sum/_count), its type
// (counter, gauge, histogram, summary) and its help text.
type Family struct {
	Name, Type, Help string
}

// catalog documents every family crispy registers. A family missing here is still written, with
// a help text that says so; TestEveryExposedFamilyIsInTheCatalog (test/e2e) fails on it. Add the
// line in the same commit as the metric. Labels are listed in the help so a reader of /metrics
// knows what to aggregate by.
var catalog = []Family{
	// HTTP (modules/observability/internal/telemetry).
	{"crispy_http_requests_total", "counter", "HTTP requests answered, by route, status class and tenant (configured tenants up to --max-tenant-labels; others are \"other\")."},
	{"crispy_http_request_duration_seconds", "histogram", "HTTP request latency from the first byte read to the last byte written, by route and status."},

	// Model calls (platform/ai via cmd/crispy, modules/conversation).
	{"crispy_ai_upstream_duration_seconds", "histogram", "Latency of one upstream model attempt (each retry and fallback is its own attempt), by model and outcome (ok or the failure reason)."},
	{"crispy_ai_upstream_ttft_seconds", "histogram", "Time from sending a streamed upstream model attempt to its first token, by model."},
	{"crispy_ai_attempts_total", "counter", "Upstream model attempts, by model and outcome (ok or the failure reason: timeout, unavailable, rate_limited, breaker_open, bad_request, error, cancelled)."},
	{"crispy_ai_fallbacks_total", "counter", "Calls that moved on to the next model of their list, by the model that failed and why."},
	{"crispy_ai_breaker_state", "gauge", "Circuit breaker state of a model: 0 closed, 1 half-open, 2 open."},
	{"crispy_ai_breaker_transitions_total", "counter", "Circuit breaker state changes, by model and the state entered."},
	{"crispy_ai_tokens_total", "counter", "Model tokens used, by tenant (configured tenants, then other), model, purpose (chat, chat.completions, search.rewrite, search.answer, tool.complete, embeddings.*) and direction (in, out)."},
	{"crispy_ai_cost_usd_total", "counter", "Estimated model cost in US dollars from the price table (models without a price are not counted), by tenant, model and purpose."},
	{"crispy_chat_turns_total", "counter", "Chat turns ended, by the model that answered and outcome."},
	{"crispy_chat_ttft_seconds", "histogram", "Time from a chat turn's start to its first token streamed to the client, by model."},
	{"crispy_chat_tokens_total", "counter", "Chat tokens, by model and direction (in, out); per-tenant figures are in crispy_ai_tokens_total."},
	{"crispy_chat_fallbacks_total", "counter", "Chat turns that fell back from a model, by that model and the reason."},
	{"crispy_chat_turns_interrupted_total", "counter", "Chat turns found unfinished at start-up (the process stopped during them) and closed as failed."},
	{"crispy_chat_retention_sweeps_total", "counter", "Session retention sweeps run."},
	{"crispy_chat_append_conflicts_total", "counter", "Session appends that met a concurrent writer and were retried."},
	{"crispy_chat_session_snapshot_segments_total", "counter", "Session snapshot segments written."},
	{"crispy_chat_session_cache_evictions_total", "counter", "Sessions evicted from the fold cache."},
	{"crispy_chat_session_cache_bytes", "gauge", "Bytes held by the session fold cache."},
	{"crispy_chat_session_cache_sessions", "gauge", "Sessions held by the session fold cache."},
	{"crispy_chat_resume_buffer_evictions_total", "counter", "Turns evicted from the stream resume buffer."},
	{"crispy_chat_resume_buffer_bytes", "gauge", "Bytes held by the stream resume buffer."},
	{"crispy_chat_resume_buffer_turns", "gauge", "Turns held by the stream resume buffer."},

	// Retrieval and tools.
	{"crispy_retrieval_search_duration_seconds", "histogram", "Search latency, query to ranked hits (with the answer when one is asked for)."},
	{"crispy_retrieval_cache_hits_total", "counter", "Searches answered from the result cache, by tenant."},
	{"crispy_retrieval_cache_misses_total", "counter", "Searches not in the result cache, by tenant."},
	{"crispy_tool_executions_total", "counter", "Tool executions, by tenant, tool and result code."},
	{"crispy_tool_execution_duration_seconds", "histogram", "Tool execution latency, plugin call included, by tool."},
	{"crispy_tool_plugin_restarts_total", "counter", "Tool plugin processes restarted, by tool and reason."},

	// Tenancy.
	{"crispy_tenancy_auth_refusals_total", "counter", "Requests refused by authentication, by reason (and tenant where one was named and configured)."},
	{"crispy_tenancy_rate_limited_total", "counter", "Requests refused by the rate limiter, by tenant."},
	{"crispy_tenancy_limiter_errors_total", "counter", "Rate limiter back-end failures (Redis unreachable)."},
	{"crispy_tenancy_limiter_bypassed_total", "counter", "Requests let through without a limiter decision because the back end failed, by mode."},

	// Event store and pipeline.
	{"crispy_eventstore_appends_total", "counter", "Event store appends, by result (ok, conflict, error)."},
	{"crispy_eventstore_appended_events_total", "counter", "Events written by successful appends."},
	{"crispy_eventstore_append_call_seconds", "histogram", "Event store append latency as the caller sees it (any store)."},
	{"crispy_eventstore_append_duration_seconds", "histogram", "Embedded store append latency, queueing and group commit (fsync) included."},
	{"crispy_eventstore_commit_batch_size", "histogram", "Appends committed together by one fsync of the embedded store."},
	{"crispy_eventstore_write_faults_total", "counter", "Embedded store write or fsync failures."},
	{"crispy_eventstore_degraded", "gauge", "1 while the embedded store refuses writes after a write fault, else 0."},
	{"crispy_bus_lag_events", "gauge", "Events in the store not yet delivered to every consumer."},
	{"crispy_bus_published_events_total", "counter", "Events published to the bus."},
	{"crispy_bus_forward_errors_total", "counter", "Failures forwarding events to the NATS transport."},
	{"crispy_bus_handled_events_total", "counter", "Events handled by a processor, by consumer."},
	{"crispy_bus_projected_events_total", "counter", "Events applied to a read model, by consumer."},
	{"crispy_bus_duplicate_events_total", "counter", "Events a consumer had already seen and skipped, by consumer."},
	{"crispy_bus_failed_events_total", "counter", "Events a consumer failed to handle, by consumer."},
	{"crispy_sealing_unreadable_events_total", "counter", "Sealed events whose key is missing or whose content does not open."},

	// Build.
	{"crispy_build_info", "gauge", "Always 1; labels name the running build: version and vcs revision."},
}

var byName = func() map[string]Family {
	m := make(map[string]Family, len(catalog))
	for _, f := range catalog {
		m[f.Name] = f
	}
	return m
}()

// Catalog returns every documented family, sorted by name.
func Catalog() []Family {
	out := append([]Family(nil), catalog...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Documented reports whether name is in the catalog.
func Documented(name string) bool { _, ok := byName[name]; return ok }

// Describe returns the catalog's entry for a family, or one built from the inferred type: the Go
// runtime and process families the library writes get a help naming their source; an
// undocumented crispy family says it is undocumented.
func Describe(name, inferred string) Family {
	if f, ok := byName[name]; ok {
		return f
	}
	f := Family{Name: name, Type: inferred}
	switch {
	case strings.HasPrefix(name, "go_"):
		f.Help = "Go runtime metric " + name + " (as github.com/VictoriaMetrics/metrics reports it)."
	case strings.HasPrefix(name, "process_"):
		f.Help = "Process metric " + name + " from /proc (as github.com/VictoriaMetrics/metrics reports it)."
	default:
		f.Help = "Undocumented: " + name + " is missing from platform/exposition's catalog."
	}
	return f
}
