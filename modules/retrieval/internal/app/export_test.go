package app

// Unprojected is how many recorded statistics appends Stats still keeps in memory because the read
// model did not reflect them when last asked.
func (s *Stats) Unprojected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.inflight)
}
