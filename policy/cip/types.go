package cip

// The document types mirror policy-controller's ClusterImagePolicy API
// (pkg/apis/policy/v1alpha1 and v1beta1, whose specs are the same), field for field, so that a
// strict decode refuses any key policy-controller does not know. Fields portcullis cannot
// honour are decoded too, so that their refusal names them.

// document is one ClusterImagePolicy.
type document struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   metadata `yaml:"metadata"`
	Spec       spec     `yaml:"spec"`
	// Status is written by the cluster (kubectl get -o yaml); it says nothing about the policy.
	Status any `yaml:"status"`
}

// metadata is the part of Kubernetes' ObjectMeta a ClusterImagePolicy file carries. Only the
// name means anything here; the rest is what the API server writes, accepted so that exported
// objects load.
type metadata struct {
	Name              string            `yaml:"name"`
	Namespace         string            `yaml:"namespace"`
	Labels            map[string]string `yaml:"labels"`
	Annotations       map[string]string `yaml:"annotations"`
	UID               string            `yaml:"uid"`
	ResourceVersion   string            `yaml:"resourceVersion"`
	Generation        int64             `yaml:"generation"`
	CreationTimestamp any               `yaml:"creationTimestamp"`
	ManagedFields     any               `yaml:"managedFields"`
}

type spec struct {
	Images      []imagePattern `yaml:"images"`
	Authorities []authority    `yaml:"authorities"`
	Policy      *cipPolicy     `yaml:"policy"`
	Mode        string         `yaml:"mode"`
	Match       []any          `yaml:"match"`
}

type imagePattern struct {
	Glob string `yaml:"glob"`
	// Regex existed in early v1alpha1 releases; it is decoded to be refused by name.
	Regex string `yaml:"regex"`
}

type authority struct {
	Name             string        `yaml:"name"`
	Key              *keyRef       `yaml:"key"`
	Keyless          *keylessRef   `yaml:"keyless"`
	Static           *staticRef    `yaml:"static"`
	Sources          []source      `yaml:"source"`
	CTLog            *tlog         `yaml:"ctlog"`
	Attestations     []attestation `yaml:"attestations"`
	RFC3161Timestamp *rfc3161      `yaml:"rfc3161timestamp"`
	SignatureFormat  string        `yaml:"signatureFormat"`
}

type keyRef struct {
	SecretRef     any    `yaml:"secretRef"`
	Data          string `yaml:"data"`
	KMS           string `yaml:"kms"`
	HashAlgorithm string `yaml:"hashAlgorithm"`
}

type staticRef struct {
	Action  string `yaml:"action"`
	Message string `yaml:"message"`
}

type source struct {
	OCI                  string  `yaml:"oci"`
	SignaturePullSecrets []any   `yaml:"signaturePullSecrets"`
	TagPrefix            *string `yaml:"tagPrefix"`
}

type tlog struct {
	URL          string `yaml:"url"`
	TrustRootRef string `yaml:"trustRootRef"`
}

type keylessRef struct {
	URL               string     `yaml:"url"`
	Identities        []identity `yaml:"identities"`
	CACert            *keyRef    `yaml:"ca-cert"`
	TrustRootRef      string     `yaml:"trustRootRef"`
	InsecureIgnoreSCT *bool      `yaml:"insecureIgnoreSCT"`
}

type identity struct {
	Issuer        string `yaml:"issuer"`
	Subject       string `yaml:"subject"`
	IssuerRegExp  string `yaml:"issuerRegExp"`
	SubjectRegExp string `yaml:"subjectRegExp"`
}

type attestation struct {
	Name          string     `yaml:"name"`
	PredicateType string     `yaml:"predicateType"`
	Policy        *cipPolicy `yaml:"policy"`
}

type cipPolicy struct {
	Type              string `yaml:"type"`
	Data              string `yaml:"data"`
	Remote            any    `yaml:"remote"`
	URL               any    `yaml:"url"`
	ConfigMapRef      any    `yaml:"configMapRef"`
	FetchConfigFile   *bool  `yaml:"fetchConfigFile"`
	IncludeSpec       *bool  `yaml:"includeSpec"`
	IncludeObjectMeta *bool  `yaml:"includeObjectMeta"`
	IncludeTypeMeta   *bool  `yaml:"includeTypeMeta"`
}

type rfc3161 struct {
	TrustRootRef string `yaml:"trustRootRef"`
}
