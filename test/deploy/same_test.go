package deploy_test

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestChartRendersTheManifests: with its default values the chart deploys what
// deploy/kubernetes does — the same portcullis configuration and keys, replicas, budget,
// container (arguments, resources, security, probes, mounts), pod security and grace period —
// so that neither drifts from the other.
func TestChartRendersTheManifests(t *testing.T) {
	want := decodeAll(t, manifests(t))
	got := decodeAll(t, rendered(t, chartCases[0]))

	parse := func(d deployed) (map[string]any, map[string]string) {
		cm := configMapOf(t, d)
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(cm.Data["portcullis.yaml"]), &cfg); err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{}
		for k, v := range cm.Data {
			if k != "portcullis.yaml" {
				keys[k] = v
			}
		}
		return cfg, keys
	}
	wantCfg, wantKeys := parse(want)
	gotCfg, gotKeys := parse(got)
	if !reflect.DeepEqual(gotCfg, wantCfg) {
		t.Errorf("configuration:\n%v\nwant (deploy/kubernetes):\n%v", gotCfg, wantCfg)
	}
	if !reflect.DeepEqual(gotKeys, wantKeys) {
		t.Errorf("keys %v, want %v", gotKeys, wantKeys)
	}
	secret := func(d deployed) map[string]string {
		for _, s := range d.secrets {
			return s.StringData
		}
		return nil
	}
	if g, w := secret(got), secret(want); !reflect.DeepEqual(g, w) {
		t.Errorf("credentials %v, want %v", g, w)
	}

	if *got.deployment.Spec.Replicas != *want.deployment.Spec.Replicas {
		t.Errorf("replicas %d, want %d", *got.deployment.Spec.Replicas, *want.deployment.Spec.Replicas)
	}
	if got.pdb.Spec.MinAvailable.String() != want.pdb.Spec.MinAvailable.String() {
		t.Errorf("pdb minAvailable %s, want %s", got.pdb.Spec.MinAvailable, want.pdb.Spec.MinAvailable)
	}
	gs, ws := got.deployment.Spec.Template.Spec, want.deployment.Spec.Template.Spec
	if !reflect.DeepEqual(gs.SecurityContext, ws.SecurityContext) || !reflect.DeepEqual(*gs.TerminationGracePeriodSeconds, *ws.TerminationGracePeriodSeconds) {
		t.Errorf("pod security %+v grace %d, want %+v grace %d", gs.SecurityContext, *gs.TerminationGracePeriodSeconds, ws.SecurityContext, *ws.TerminationGracePeriodSeconds)
	}
	gc, wc := gs.Containers[0], ws.Containers[0]
	for what, pair := range map[string][2]any{
		"args":            {gc.Args, wc.Args},
		"env":             {gc.Env, wc.Env},
		"resources":       {gc.Resources, wc.Resources},
		"securityContext": {gc.SecurityContext, wc.SecurityContext},
		"lifecycle":       {gc.Lifecycle, wc.Lifecycle},
		"mount paths":     {mountPaths(gc), mountPaths(wc)},
		"probe paths":     {probePaths(gc), probePaths(wc)},
	} {
		if !reflect.DeepEqual(pair[0], pair[1]) {
			t.Errorf("container %s:\n%+v\nwant (deploy/kubernetes):\n%+v", what, pair[0], pair[1])
		}
	}
}

func mountPaths(c corev1.Container) map[string]bool {
	out := map[string]bool{}
	for _, m := range c.VolumeMounts {
		out[m.MountPath] = m.ReadOnly
	}
	return out
}

func probePaths(c corev1.Container) []string {
	return []string{string(c.ReadinessProbe.HTTPGet.Scheme), c.ReadinessProbe.HTTPGet.Path,
		string(c.LivenessProbe.HTTPGet.Scheme), c.LivenessProbe.HTTPGet.Path}
}
