package httpapi

// Patterns returns the mux patterns the server registered ("GET
// /v1/agents", ..., and the catch-all "/"), for the tests that hold
// docs/openapi.yaml to the routes.
func (s *Server) Patterns() []string { return append([]string(nil), s.patterns...) }
