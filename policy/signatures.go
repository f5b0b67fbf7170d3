package policy

// WantsSignatures reports whether a decision about image, under the policy set in use now,
// may look up its signatures: a policy covers it, is not off and has an authority that is not
// static. The proxy asks before
// starting a signature lookup ahead of the decision, so that images no policy checks cost
// the upstream nothing more. A signature artifact is checked rather than verified, so it may
// want none all the same.
func (e *Engine) WantsSignatures(image string) bool {
	pol := e.set.Load().Match(image)
	return pol != nil && pol.mode != ModeOff && len(pol.authorities) > 0
}

// WantsAttestations reports whether a decision about image, under the policy set in use now,
// looks up attestations: its policy wants signatures and asks an authority for attestations.
// The proxy then starts the legacy ".att" lookup ahead of the decision too.
func (e *Engine) WantsAttestations(image string) bool {
	pol := e.set.Load().Match(image)
	return pol != nil && pol.mode != ModeOff && pol.WantsAttestations()
}
