package registrar

// KnowsDomainID reports whether the MASA audit-log check treats id as this
// domain's (RFC 8995 §5.8.2).
func (s *Service) KnowsDomainID(id []byte) bool { return s.ca().domainIDs[string(id)] }
