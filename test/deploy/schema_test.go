package deploy_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kinds are the API types deploy/ may ship, by apiVersion and kind.
var kinds = map[string]func() any{
	"v1/ConfigMap":                  func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                     func() any { return &corev1.Secret{} },
	"v1/Service":                    func() any { return &corev1.Service{} },
	"apps/v1/Deployment":            func() any { return &appsv1.Deployment{} },
	"apps/v1/DaemonSet":             func() any { return &appsv1.DaemonSet{} },
	"policy/v1/PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
}

// decodeStrict decodes one manifest into its Kubernetes API type as the API server's strict
// field validation does (sigs.k8s.io/json, case-sensitive): an unknown apiVersion/kind, an
// unknown or misspelled field anywhere in the object (a wrong case included), a duplicate
// field or a value of the wrong type (a quantity or an int-or-string included) is an error.
func decodeStrict(raw []byte) (any, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(raw, &head); err != nil {
		return nil, err
	}
	newObj, ok := kinds[head.APIVersion+"/"+head.Kind]
	if !ok {
		return nil, fmt.Errorf("apiVersion %q kind %q is not a type deploy/ may ship", head.APIVersion, head.Kind)
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	obj := newObj()
	strict, err := sigsjson.UnmarshalStrict(js, obj, sigsjson.DisallowDuplicateFields, sigsjson.DisallowUnknownFields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", head.Kind, err)
	}
	if len(strict) > 0 {
		return nil, fmt.Errorf("%s: %w", head.Kind, errors.Join(strict...))
	}
	return obj, nil
}

// TestManifestsMatchKubernetesAPI decodes every object of deploy/kubernetes and of the chart,
// rendered with each value set, strictly into the Kubernetes API types.
func TestManifestsMatchKubernetesAPI(t *testing.T) {
	sources := map[string]func(t *testing.T) []doc{"deploy/kubernetes": func(t *testing.T) []doc { return manifests(t) }}
	for _, c := range chartCases {
		sources["chart: "+c.name] = func(t *testing.T) []doc { return rendered(t, c) }
	}
	for name, docs := range sources {
		t.Run(name, func(t *testing.T) {
			ds := docs(t)
			for _, d := range ds {
				if _, err := decodeStrict(d.raw); err != nil {
					t.Errorf("%s (%s %s): %v", d.source, d.kind, d.name, err)
				}
			}
			have := map[string]bool{}
			for _, d := range ds {
				have[d.kind] = true
			}
			for _, k := range []string{"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"} {
				if !have[k] {
					t.Errorf("no %s", k)
				}
			}
		})
	}
}

// TestDecodeStrictRejects shows that the check fails on what a typo or a wrong type makes.
func TestDecodeStrictRejects(t *testing.T) {
	dep := string(find(t, manifests(t), "Deployment", "portcullis").raw)
	cases := []struct {
		name, old, new, want string
	}{
		{"misspelled probe", "readinessProbe:", "readinesProbe:", `unknown field "spec.template.spec.containers[0].readinesProbe"`},
		{"misspelled security field", "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true", "readOnlyRootFileSystem"},
		{"replicas not a number", "replicas: 2", "replicas: two", "replicas"},
		{"invalid quantity", "memory: 1Gi", "memory: 1 GB", "quantities must match"},
		{"unknown kind", "kind: Deployment", "kind: Deploymnet", "not a type deploy/ may ship"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(dep, c.old) {
				t.Fatalf("deployment.yaml has no %q", c.old)
			}
			_, err := decodeStrict([]byte(strings.Replace(dep, c.old, c.new, 1)))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
	if _, err := decodeStrict([]byte(dep)); err != nil {
		t.Fatalf("the unchanged deployment: %v", err)
	}
}

// TestChartRejectsUnknownValues: values.schema.json refuses a misspelled value, so a typo in
// a values file fails the install instead of being ignored.
func TestChartRejectsUnknownValues(t *testing.T) {
	cases := []struct {
		set, want string
	}{
		{"replicaCont=3", "replicaCont"},
		{"nodeConfig.adress=x:1", "adress"},
		{"defaultPolicy=maybe", "defaultPolicy"},
		{"config.listen=:80", "config"},
		{"storage.params.secretkey=inline", "propertyName 'secretkey'"},
		{"storage.params.SecretKey=inline", "propertyName 'SecretKey'"},
		{"storage.driver=gcs", "driver"},
		{"storage.driver=s3", "bucket"},
		{"redis.adress=r:6379", "adress"},
		{"redis.addr=redis", "/redis/addr"},
		{"redis.enabled=true,config.cache.redis.addr=r:6379", "config.cache.redis"},
	}
	for _, c := range cases {
		t.Run(c.set, func(t *testing.T) {
			_, err := helmTemplate(t, "--set", c.set)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error naming %q", err, c.want)
			}
		})
	}
}
