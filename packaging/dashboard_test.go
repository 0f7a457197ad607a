package packaging

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"simpletuner/plugins"
	"simpletuner/store"
	"simpletuner/supervisor/gpu"
	"simpletuner/supervisor/jobs"
	"simpletuner/supervisor/metrics"
)

// oneRunningJob is a job list with one running job that has reported progress.
type oneRunningJob struct{}

func (oneRunningJob) List() ([]*store.Job, error) {
	return []*store.Job{{ID: "j1", Status: jobs.StatusRunning, Progress: json.RawMessage(`{"step":2,"loss":0.5}`)}}, nil
}

// nopSink stands for the daemon's event sink under metrics.Sink.
type nopSink struct{}

func (nopSink) Append(string, []plugins.Event) error { return nil }
func (nopSink) JobStatus(*store.Job)                 {}

// exportedSeries returns the names of every simpletuner_ series the daemon's metrics
// export (a histogram as its _bucket, _sum and _count series), by driving a real
// metrics.Metrics until every family has a sample.
func exportedSeries(t *testing.T) (series, families []string) {
	t.Helper()
	m, err := metrics.New(metrics.Config{Jobs: oneRunningJob{}, GPUs: gpu.NewAllocator(gpu.NewFake(gpu.FakeH100(1)...), gpu.Limits{})})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ev := func(seq uint64, typ string, ago time.Duration, data string) plugins.Event {
		return plugins.Event{Seq: seq, Type: typ, Time: now.Add(-ago), Data: json.RawMessage(data)}
	}
	sink := m.Sink(nopSink{})
	sink.Append("j1", []plugins.Event{ev(1, plugins.EventTrainingProgress, 2*time.Second, `{"step":1}`),
		ev(2, plugins.EventTrainingCheckpoint, 2*time.Second, `{"step":1}`), ev(3, plugins.EventTrainingProgress, time.Second, `{"step":2}`)})
	started := now
	sink.JobStatus(&store.Job{ID: "j1", Status: jobs.StatusStarting, Attempts: 1, CreatedAt: now.Add(-time.Minute), StartedAt: &started})
	m.ObserveRequest("/api/jobs", "GET", 200, time.Millisecond)
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, metrics.Namespace+"_") {
			continue
		}
		families = append(families, name)
		if f.GetType() == dto.MetricType_HISTOGRAM {
			series = append(series, name+"_bucket", name+"_sum", name+"_count")
		} else {
			series = append(series, name)
		}
	}
	return series, families
}

// dashboardQueries returns every PromQL expression of the dashboard: the panels'
// targets and the template variables' queries.
func dashboardQueries(t *testing.T, v any, path string, out map[string]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			p := path + "/" + k
			if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
				out[p] = s
				continue
			}
			dashboardQueries(t, e, p, out)
		}
	case []any:
		for i, e := range x {
			dashboardQueries(t, e, fmt.Sprintf("%s/%d", path, i), out)
		}
	}
}

// TestGrafanaDashboard: packaging/grafana-dashboard.json is valid JSON of a dashboard,
// every query names only series the daemon exports, every series the daemon exports is
// on it, and (where promtool is installed) every query parses as PromQL.
func TestGrafanaDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json is not valid JSON: %v", err)
	}
	for _, k := range []string{"uid", "title", "panels", "templating", "schemaVersion"} {
		if dash[k] == nil {
			t.Errorf("the dashboard has no %q", k)
		}
	}
	queries := map[string]string{}
	dashboardQueries(t, dash, "", queries)
	if len(queries) < 10 {
		t.Fatalf("only %d queries found: %v", len(queries), queries)
	}
	series, families := exportedSeries(t)
	name := regexp.MustCompile(`\b` + metrics.Namespace + `_[a-zA-Z0-9_:]*`)
	used := map[string]bool{}
	for path, q := range queries {
		names := name.FindAllString(q, -1)
		if len(names) == 0 {
			t.Errorf("%s: %q names no simpletuner series", path, q)
		}
		for _, n := range names {
			if !slices.Contains(series, n) {
				t.Errorf("%s: %q names %s, which the daemon does not export (it exports %v)", path, q, n, series)
			}
			used[n] = true
		}
	}
	for _, f := range families {
		if !used[f] && !used[f+"_bucket"] && !used[f+"_count"] {
			t.Errorf("the dashboard does not show %s", f)
		}
	}
	t.Run("promtool", func(t *testing.T) { promtoolRules(t, queries) })
}

// promtoolRules checks that every query parses as PromQL: promtool check rules on a
// rule file with one recording rule per query (Grafana's variables replaced by values).
func promtoolRules(t *testing.T, queries map[string]string) {
	if _, err := exec.LookPath("promtool"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not found under CI: make metrics-deps installs Debian's prometheus package")
		}
		t.Skip("promtool not found: install Debian's prometheus package (make metrics-deps) to parse the queries")
	}
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	i := 0
	for _, q := range queries {
		if strings.HasPrefix(q, "label_values(") {
			// A Grafana function, not PromQL: its argument is.
			q = strings.TrimSuffix(strings.TrimPrefix(q, "label_values("), ", instance)")
		}
		q = strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(q)
		enc, _ := json.Marshal(q)
		fmt.Fprintf(&b, "      - record: dashboard:query_%d\n        expr: %s\n", i, enc)
		i++
	}
	path := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("promtool", "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, b.String())
	}
}
