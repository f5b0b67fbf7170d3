package deploy_test

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// deployed is what a source (deploy/kubernetes or a chart rendering) ships, decoded.
type deployed struct {
	deployment *appsv1.Deployment
	redis      *appsv1.Deployment // the chart's Redis (redis.enabled), with redisSvc
	redisSvc   *corev1.Service
	daemonSets []*appsv1.DaemonSet
	service    *corev1.Service
	pdb        *policyv1.PodDisruptionBudget
	configMaps map[string]*corev1.ConfigMap
	secrets    map[string]*corev1.Secret
}

func decodeAll(t *testing.T, docs []doc) deployed {
	t.Helper()
	d := deployed{configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	for _, doc := range docs {
		obj, err := decodeStrict(doc.raw)
		if err != nil {
			t.Fatalf("%s: %v", doc.source, err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			if strings.HasSuffix(o.Name, "-redis") {
				d.redis = o
				continue
			}
			if d.deployment != nil {
				t.Fatalf("%s: a second Deployment", doc.source)
			}
			d.deployment = o
		case *appsv1.DaemonSet:
			d.daemonSets = append(d.daemonSets, o)
		case *corev1.Service:
			if strings.HasSuffix(o.Name, "-redis") {
				d.redisSvc = o
				continue
			}
			d.service = o
		case *policyv1.PodDisruptionBudget:
			d.pdb = o
		case *corev1.ConfigMap:
			d.configMaps[o.Name] = o
		case *corev1.Secret:
			d.secrets[o.Name] = o
		}
	}
	if d.deployment == nil || d.service == nil || d.pdb == nil {
		t.Fatal("want a Deployment, a Service and a PodDisruptionBudget")
	}
	return d
}

// sources are deploy/kubernetes and the chart rendered with each value set, decoded.
func sources(t *testing.T) map[string]func(*testing.T) deployed {
	out := map[string]func(*testing.T) deployed{
		"deploy/kubernetes": func(t *testing.T) deployed { return decodeAll(t, manifests(t)) },
	}
	for _, c := range chartCases {
		out["chart: "+c.name] = func(t *testing.T) deployed { return decodeAll(t, rendered(t, c)) }
	}
	return out
}

// TestWorkloadsAreHardened: every pod runs with the RuntimeDefault seccomp profile, and every
// container without privilege escalation, on a read-only root filesystem, with all
// capabilities dropped, with CPU and memory requests and a memory limit; portcullis's own
// containers as non-root.
func TestWorkloadsAreHardened(t *testing.T) {
	for name, load := range sources(t) {
		t.Run(name, func(t *testing.T) {
			d := load(t)
			pods := map[string]corev1.PodSpec{"Deployment " + d.deployment.Name: d.deployment.Spec.Template.Spec}
			for _, ds := range d.daemonSets {
				pods["DaemonSet "+ds.Name] = ds.Spec.Template.Spec
			}
			if d.redis != nil {
				pods["Deployment "+d.redis.Name] = d.redis.Spec.Template.Spec
			}
			for pod, spec := range pods {
				checkHardened(t, pod, spec)
			}
			psc := d.deployment.Spec.Template.Spec.SecurityContext
			if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
				t.Errorf("portcullis does not run as non-root: %+v", psc)
			}
		})
	}
}

// checkHardened reports what pod's spec lacks of the hardening TestWorkloadsAreHardened names.
func checkHardened(t *testing.T, pod string, spec corev1.PodSpec) {
	t.Helper()
	if sc := spec.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: pod seccompProfile is not RuntimeDefault", pod)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: mounts a service account token it does not use", pod)
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("%s/%s: no securityContext", pod, c.Name)
			continue
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("%s/%s: allowPrivilegeEscalation is not false", pod, c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("%s/%s: root filesystem is not read-only", pod, c.Name)
		case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) > 0:
			t.Errorf("%s/%s: capabilities are not drop [ALL]", pod, c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s/%s: resources %v lack a cpu or memory request or a memory limit", pod, c.Name, c.Resources)
		}
	}
}

// TestPortcullisDeployment: replicas, probes, the port the configuration listens on, the
// Service and the PodDisruptionBudget reaching the pods, the store's volume where the
// configuration keeps content, and portcullis kept off the nodes that pull through it.
func TestPortcullisDeployment(t *testing.T) {
	for name, load := range sources(t) {
		t.Run(name, func(t *testing.T) {
			d := load(t)
			dep := d.deployment
			if dep.Spec.Replicas == nil || *dep.Spec.Replicas < 2 {
				t.Errorf("replicas %v, want at least 2", dep.Spec.Replicas)
			}
			if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
				t.Errorf("rolling update may take replicas down before new ones are ready: %+v", dep.Spec.Strategy)
			}
			podLabels := labels.Set(dep.Spec.Template.Labels)
			for what, sel := range map[string]map[string]string{"deployment": dep.Spec.Selector.MatchLabels,
				"service": d.service.Spec.Selector, "pdb": d.pdb.Spec.Selector.MatchLabels} {
				if len(sel) == 0 || !labels.SelectorFromSet(sel).Matches(podLabels) {
					t.Errorf("%s selector %v does not select the pods %v", what, sel, podLabels)
				}
			}
			for _, ds := range d.daemonSets {
				if labels.SelectorFromSet(d.service.Spec.Selector).Matches(labels.Set(ds.Spec.Template.Labels)) {
					t.Errorf("the service selects DaemonSet %s's pods", ds.Name)
				}
			}
			if d.pdb.Spec.MinAvailable == nil || d.pdb.Spec.MinAvailable.IntValue() < 1 || d.pdb.Spec.MinAvailable.IntValue() >= int(*dep.Spec.Replicas) {
				t.Errorf("pdb minAvailable %v: want at least 1 and fewer than the %d replicas", d.pdb.Spec.MinAvailable, *dep.Spec.Replicas)
			}
			if len(dep.Spec.Template.Spec.Containers) != 1 {
				t.Fatalf("%d containers, want portcullis alone", len(dep.Spec.Template.Spec.Containers))
			}
			c := dep.Spec.Template.Spec.Containers[0]
			cfg := podConfig(t, d)
			_, port, err := net.SplitHostPort(cfg.Listen)
			if err != nil {
				t.Fatalf("listen %q: %v", cfg.Listen, err)
			}
			var portName string
			for _, p := range c.Ports {
				if strconv.Itoa(int(p.ContainerPort)) == port {
					portName = p.Name
				}
			}
			if portName == "" {
				t.Fatalf("the configuration listens on %s; the container ports are %v", cfg.Listen, c.Ports)
			}
			scheme := corev1.URISchemeHTTP
			if cfg.TLS.Cert != "" {
				scheme = corev1.URISchemeHTTPS
			}
			for _, p := range []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/healthz"}} {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("no %s probe", p.name)
					continue
				}
				g := p.probe.HTTPGet
				if g.Path != p.path || (g.Port.String() != portName && g.Port.String() != port) || g.Scheme != scheme {
					t.Errorf("%s probe %s %s:%s, want %s on %s (%s)", p.name, g.Scheme, g.Path, g.Port.String(), p.path, portName, scheme)
				}
			}
			// portcullis turns unready on SIGTERM and keeps serving for server.shutdownDelay,
			// then drains for server.shutdownGrace twice at most: the grace period covers both,
			// and a preStop sleep would only add to the delay.
			if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
				t.Error("a preStop hook: portcullis's server.shutdownDelay already keeps it serving while the endpoints drop the pod")
			}
			if g, need := dep.Spec.Template.Spec.TerminationGracePeriodSeconds, cfg.shutdownSeconds(t); g == nil || *g <= need {
				t.Errorf("terminationGracePeriodSeconds %v does not cover server.shutdownDelay + 2 × server.shutdownGrace = %ds and a margin", g, need)
			}
			svcPort := d.service.Spec.Ports
			if len(svcPort) != 1 || (svcPort[0].TargetPort.String() != portName && svcPort[0].TargetPort.String() != port) {
				t.Errorf("service ports %v do not reach container port %s", svcPort, portName)
			}
			// The store's volume is mounted where the configuration keeps content.
			root, _ := cfg.Storage.Params["rootdirectory"].(string)
			if cfg.Storage.Driver == "filesystem" && !mountedAt(dep.Spec.Template.Spec, c, root, false) {
				t.Errorf("no writable volume at storage.params.rootdirectory %q", root)
			}
			// portcullis's own image must not be pulled through portcullis.
			aff := dep.Spec.Template.Spec.Affinity
			if aff == nil || aff.NodeAffinity == nil || aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution == nil {
				t.Fatal("no required node affinity keeping portcullis off the nodes that pull through it")
			}
			for _, ds := range d.daemonSets {
				key := aff.NodeAffinity.RequiredDuringSchedulingIgnoredDuringExecution.NodeSelectorTerms[0].MatchExpressions[0]
				if _, ok := ds.Spec.Template.Spec.NodeSelector[key.Key]; !ok || key.Operator != corev1.NodeSelectorOpDoesNotExist {
					t.Errorf("DaemonSet %s selects nodes by %v; portcullis avoids %v", ds.Name, ds.Spec.Template.Spec.NodeSelector, key)
				}
			}
		})
	}
}

// mountedAt reports whether c mounts one of spec's volumes at path (read-only or not as
// asked).
func mountedAt(spec corev1.PodSpec, c corev1.Container, path string, readOnly bool) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath == path && m.ReadOnly == readOnly {
			for _, v := range spec.Volumes {
				if v.Name == m.Name {
					return true
				}
			}
		}
	}
	return false
}

// portcullisConfig is the part of portcullis's configuration the manifests must agree with
// (the whole is checked by portcullis itself in TestDeployedConfigServes).
type portcullisConfig struct {
	Listen string `json:"listen"`
	TLS    struct {
		Cert string `json:"cert"`
		Key  string `json:"key"`
	} `json:"tls"`
	Storage struct {
		Driver string         `json:"driver"`
		Params map[string]any `json:"params"`
	} `json:"storage"`
	Server struct {
		ShutdownDelay string `json:"shutdownDelay"`
		ShutdownGrace string `json:"shutdownGrace"`
	} `json:"server"`
}

// shutdownSeconds is how long portcullis may take to stop after SIGTERM: server.shutdownDelay
// and twice server.shutdownGrace (defaults 5s and 25s, as config/server.go).
func (c portcullisConfig) shutdownSeconds(t *testing.T) int64 {
	t.Helper()
	parse := func(key, s, def string) time.Duration {
		if s == "" {
			s = def
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("server.%s: %v", key, err)
		}
		return d
	}
	d := parse("shutdownDelay", c.Server.ShutdownDelay, "5s") + 2*parse("shutdownGrace", c.Server.ShutdownGrace, "25s")
	return int64(d.Round(time.Second) / time.Second)
}

// podConfig returns the configuration the Deployment's pods run with.
func podConfig(t *testing.T, d deployed) portcullisConfig {
	t.Helper()
	cm := configMapOf(t, d)
	var cfg portcullisConfig
	if err := yaml.Unmarshal([]byte(cm.Data["portcullis.yaml"]), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.Listen == "" {
		cfg.Listen = ":5000"
	}
	return cfg
}

// configMapOf returns the ConfigMap of the Deployment's config volume.
func configMapOf(t *testing.T, d deployed) *corev1.ConfigMap {
	t.Helper()
	for _, v := range d.deployment.Spec.Template.Spec.Volumes {
		if v.Name == "config" && v.ConfigMap != nil {
			if cm := d.configMaps[v.ConfigMap.Name]; cm != nil {
				return cm
			}
		}
	}
	t.Fatal("the Deployment's config volume is not a ConfigMap shipped beside it")
	return nil
}
