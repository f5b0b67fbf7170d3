package deploy_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// exported is what a /metrics scrape holds: for each metric name, its label names and the
// values each took.
type exported map[string]map[string]map[string]bool

var sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? \S+`)
var labelPair = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)

// parseMetrics reads the Prometheus text format.
func parseMetrics(text string) exported {
	out := exported{}
	for _, line := range strings.Split(text, "\n") {
		m := sampleLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		ls := out[m[1]]
		if ls == nil {
			ls = map[string]map[string]bool{}
			out[m[1]] = ls
		}
		for _, p := range labelPair.FindAllStringSubmatch(m[3], -1) {
			if ls[p[1]] == nil {
				ls[p[1]] = map[string]bool{}
			}
			ls[p[1]][p[2]] = true
		}
	}
	return out
}

// targetLabels are the labels Prometheus adds to every series it scrapes.
var targetLabels = []string{"job", "instance", "namespace", "pod", "container"}

// promQL keywords and functions the dashboard may use; any other identifier outside label
// matchers and grouping clauses is a metric name.
var promQLWords = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "rate": true, "irate": true,
	"increase": true, "histogram_quantile": true, "by": true, "without": true, "on": true,
	"ignoring": true, "group_left": true, "group_right": true, "and": true, "or": true, "unless": true,
	"topk": true, "bottomk": true, "clamp_min": true, "delta": true, "deriv": true, "label_values": true,
}

var (
	stringLit   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	rangeSel    = regexp.MustCompile(`\[[^\]]*\]`)
	grouping    = regexp.MustCompile(`\b(by|without|on|ignoring)\s*\(([^)]*)\)`)
	selector    = regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)?\{([^}]*)\}`)
	matcher     = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")`)
	identifier  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	number      = regexp.MustCompile(`\b\d+(\.\d+)?\b`)
	labelValues = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$`)
)

// checkQuery returns what in expr is not exported: metric names, label names (of matchers
// and grouping clauses), and the values of = and != matchers.
func checkQuery(expr string, ex exported) []string {
	var problems []string
	var metrics []string
	// Grafana's label_values(metric, label): as the metric grouped by the label.
	if m := labelValues.FindStringSubmatch(expr); m != nil {
		expr = fmt.Sprintf("count by (%s) (%s)", m[2], m[1])
	}
	// Label matchers, with the metric they select.
	for _, s := range selector.FindAllStringSubmatch(expr, -1) {
		if s[1] != "" {
			metrics = append(metrics, s[1])
		}
		for _, m := range matcher.FindAllStringSubmatch(s[2], -1) {
			name, op, value := m[1], m[2], strings.Trim(m[3], `"`)
			if slices.Contains(targetLabels, name) {
				continue
			}
			values, ok := ex[s[1]][name]
			if !ok {
				problems = append(problems, fmt.Sprintf("label %s of %s", name, s[1]))
				continue
			}
			if (op == "=" || op == "!=") && !values[value] {
				problems = append(problems, fmt.Sprintf("value %s=%q of %s (exported: %v)", name, value, s[1], slices.Sorted(mapKeys(values))))
			}
		}
	}
	rest := selector.ReplaceAllString(expr, "$1")
	rest = rangeSel.ReplaceAllString(rest, "")
	for _, g := range grouping.FindAllStringSubmatch(rest, -1) {
		for _, l := range strings.Split(g[2], ",") {
			l = strings.TrimSpace(l)
			if l == "" || slices.Contains(targetLabels, l) {
				continue
			}
			found := false
			for _, m := range metrics {
				if _, ok := ex[m][l]; ok {
					found = true
				}
			}
			if !found && !(l == "le" && slices.ContainsFunc(metrics, func(m string) bool { return strings.HasSuffix(m, "_bucket") })) {
				problems = append(problems, fmt.Sprintf("grouping label %s (of %v)", l, metrics))
			}
		}
	}
	rest = grouping.ReplaceAllString(rest, "$1")
	rest = stringLit.ReplaceAllString(rest, "")
	rest = number.ReplaceAllString(rest, "")
	for _, id := range identifier.FindAllString(rest, -1) {
		if !promQLWords[id] {
			metrics = append(metrics, id)
		}
	}
	for _, m := range metrics {
		if _, ok := ex[m]; !ok {
			problems = append(problems, "metric "+m)
		}
	}
	if len(metrics) == 0 {
		problems = append(problems, "no metric")
	}
	return problems
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// dashboardQueries returns every PromQL expression of the dashboard: panel targets and
// template variable queries.
func dashboardQueries(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "grafana", "portcullis.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
		Templating struct {
			List []struct {
				Name  string          `json:"name"`
				Type  string          `json:"type"`
				Query json.RawMessage `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, p := range d.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			out[p.Title+"/"+tg.RefID] = tg.Expr
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			t.Fatalf("variable %s: %v", v.Name, err)
		}
		out["variable "+v.Name] = q.Query
	}
	return out
}

// TestDashboardQueriesExportedMetrics scrapes /metrics of portcullis running the shipped
// configuration, after requests that succeed and fail, and checks that every metric, label
// and label value the dashboard's queries name is one portcullis exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	p := startPod(t, decodeAll(t, manifests(t)))
	p.get(t, "/v2/")
	if code, _ := p.get(t, "/v2/unknown.example/app/manifests/v1"); code != http.StatusNotFound {
		t.Fatalf("a manifest of an upstream not configured: %d, want 404", code)
	}
	code, text := p.get(t, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", code)
	}
	ex := parseMetrics(text)
	queries := dashboardQueries(t)
	if len(queries) < 10 {
		t.Fatalf("%d queries in the dashboard", len(queries))
	}
	used := map[string]bool{}
	for where, q := range queries {
		if problems := checkQuery(q, ex); len(problems) > 0 {
			t.Errorf("%s: %s: not exported: %s", where, q, strings.Join(problems, "; "))
		}
		for _, id := range identifier.FindAllString(q, -1) {
			used[id] = true
		}
	}
	// Every portcullis metric is on the dashboard.
	for name := range ex {
		base := strings.TrimSuffix(name, "_bucket")
		base = strings.TrimSuffix(strings.TrimSuffix(base, "_sum"), "_count")
		if strings.HasPrefix(name, "portcullis_") && !used[name] && !used[base+"_bucket"] {
			t.Errorf("metric %s is exported but not on the dashboard", name)
		}
	}

	// The check fails on what is not exported.
	for q, want := range map[string]string{
		`sum(rate(portcullis_request_total[5m]))`:                             "metric portcullis_request_total",
		`sum by (outcome) (rate(portcullis_decisions_total{result="x"}[5m]))`: "label result",
		`sum(rate(portcullis_decisions_total{outcome="deny"}[5m]))`:           `value outcome="deny"`,
		`sum by (upstream) (rate(portcullis_requests_total[5m]))`:             "grouping label upstream",
		`label_values(portcullis_requests_total, upstream)`:                   "grouping label upstream",
	} {
		if problems := checkQuery(q, ex); !slices.ContainsFunc(problems, func(p string) bool { return strings.HasPrefix(p, want) }) {
			t.Errorf("%s: problems %v, want %q", q, problems, want)
		}
	}
}
