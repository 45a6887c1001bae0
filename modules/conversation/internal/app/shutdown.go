package app

import (
	"context"
	"fmt"
)

// Shutdown ends every turn still open in this process: new turns are refused (503 shutting_down),
// each open turn is cancelled with the shutting_down cause, records its outcome (failed, the partial
// answer discarded as cancelled, never complete) and sends its client an error event; Shutdown
// returns once all of that is done, or when ctx ends. The server calls it shortly before its
// shutdown deadline, while the store is still open. It may be called more than once.
func (s *Service) Shutdown(ctx context.Context) error {
	open := s.Running.drain()
	for _, t := range open {
		t.stop(errShuttingDown)
	}
	if n, err := s.Running.waitEmpty(ctx); err != nil {
		return fmt.Errorf("%d chat turns did not record their outcome in time: %w", n, err)
	}
	for _, t := range open {
		if err := t.WaitClosed(ctx); err != nil {
			return fmt.Errorf("the stream of turn %s did not end in time: %w", t.ID, err)
		}
	}
	return nil
}
