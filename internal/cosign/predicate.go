package cosign

import (
	"fmt"
	"net/url"
)

// Predicate types of the attestations cosign writes, by the URI their statements carry.
const (
	// PredicateTypeCustom is what "cosign attest --type custom" (its default) writes.
	PredicateTypeCustom = "https://cosign.sigstore.dev/attestation/v1"
	// PredicateTypeSLSAProvenance02 is SLSA provenance v0.2 (slsaprovenance, slsaprovenance02).
	PredicateTypeSLSAProvenance02 = "https://slsa.dev/provenance/v0.2"
	// PredicateTypeSLSAProvenance1 is SLSA provenance v1 (slsaprovenance1).
	PredicateTypeSLSAProvenance1 = "https://slsa.dev/provenance/v1"
	// PredicateTypeLink is an in-toto link (link).
	PredicateTypeLink = "https://in-toto.io/Link/v1"
	// PredicateTypeSPDX is an SPDX document (spdx, spdxjson).
	PredicateTypeSPDX = "https://spdx.dev/Document"
	// PredicateTypeCycloneDX is a CycloneDX BOM (cyclonedx).
	PredicateTypeCycloneDX = "https://cyclonedx.org/bom"
	// PredicateTypeVuln is cosign's vulnerability scan predicate (vuln).
	PredicateTypeVuln = "https://cosign.sigstore.dev/attestation/vuln/v1"
	// PredicateTypeOpenVEX is an OpenVEX document (openvex).
	PredicateTypeOpenVEX = "https://openvex.dev/ns"
)

// predicateTypes maps cosign's short names (the values of "cosign attest --type") to their
// URIs, as cosign's options.PredicateTypeMap does. slsaprovenance is v0.2, not v1.
var predicateTypes = map[string]string{
	"custom":           PredicateTypeCustom,
	"slsaprovenance":   PredicateTypeSLSAProvenance02,
	"slsaprovenance02": PredicateTypeSLSAProvenance02,
	"slsaprovenance1":  PredicateTypeSLSAProvenance1,
	"link":             PredicateTypeLink,
	"spdx":             PredicateTypeSPDX,
	"spdxjson":         PredicateTypeSPDX,
	"cyclonedx":        PredicateTypeCycloneDX,
	"vuln":             PredicateTypeVuln,
	"openvex":          PredicateTypeOpenVEX,
}

// PredicateType returns the predicate type URI that cosign's --type nameOrURI stands for: the
// URI of one of cosign's short names (custom, slsaprovenance, slsaprovenance02,
// slsaprovenance1, link, spdx, spdxjson, cyclonedx, vuln, openvex; exact spelling), or
// nameOrURI itself when it is an absolute URI (with a scheme). Anything else is an error.
// Unlike cosign, which accepts any request URI, a bare path such as "/x" is refused: an
// in-toto predicateType is a type URI.
func PredicateType(nameOrURI string) (string, error) {
	if uri, ok := predicateTypes[nameOrURI]; ok {
		return uri, nil
	}
	u, err := url.ParseRequestURI(nameOrURI)
	if err != nil || u.Scheme == "" {
		return "", fmt.Errorf("predicate type %q is neither one of cosign's names (custom, slsaprovenance, slsaprovenance02, slsaprovenance1, link, spdx, spdxjson, cyclonedx, vuln, openvex) nor an absolute URI", nameOrURI)
	}
	return nameOrURI, nil
}
