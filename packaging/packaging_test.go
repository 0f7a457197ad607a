package packaging

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// unit is a parsed systemd unit file: section -> key -> values in order.
type unit map[string]map[string][]string

// parseUnit reads the systemd unit syntax the file uses: [Section] headers,
// Key=Value lines, '#' and ';' comments, backslash continuations.
func parseUnit(text string) (unit, error) {
	u := unit{}
	section := ""
	lines := strings.Split(text, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		for strings.HasSuffix(line, `\`) && i+1 < len(lines) {
			i++
			line = strings.TrimSpace(strings.TrimSuffix(line, `\`)) + " " + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			if !strings.HasSuffix(line, "]") {
				return nil, fmt.Errorf("line %d: bad section header %q", i+1, line)
			}
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: no '=' in %q", i+1, line)
			}
			if section == "" {
				return nil, fmt.Errorf("line %d: %q before any section", i+1, line)
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			u[section][k] = append(u[section][k], v)
		}
	}
	return u, nil
}

// one returns the single value of key, failing when it is missing or set
// more than once (systemd would silently take the last one).
func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	vs := u[section][key]
	if len(vs) != 1 {
		t.Errorf("[%s] %s set %d times (%q), want once", section, key, len(vs), vs)
		return ""
	}
	return vs[0]
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadUnit(t *testing.T) unit {
	t.Helper()
	u, err := parseUnit(readFile(t, "simpletuner.service"))
	if err != nil {
		t.Fatalf("simpletuner.service: %v", err)
	}
	return u
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("# c\n[Service]\nA=1\n; c\nA = 2\nB=x \\\n  y\n[Install]\nWantedBy=m\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := u["Service"]["A"]; len(got) != 2 || got[0] != "1" || got[1] != "2" {
		t.Errorf("A = %q", got)
	}
	if got := u["Service"]["B"]; len(got) != 1 || got[0] != "x y" {
		t.Errorf("B = %q", got)
	}
	if got := u["Install"]["WantedBy"]; len(got) != 1 || got[0] != "m" {
		t.Errorf("WantedBy = %q", got)
	}
	for _, bad := range []string{"A=1\n", "[Service\n", "[Service]\nnoequals\n"} {
		if _, err := parseUnit(bad); err == nil {
			t.Errorf("parseUnit(%q) accepted", bad)
		}
	}
}

func TestUnitSettings(t *testing.T) {
	u := loadUnit(t)
	for key, want := range map[string]string{
		"Type":               "notify",
		"NotifyAccess":       "main",
		"KillMode":           "process",
		"KillSignal":         "SIGTERM",
		"TimeoutStopSec":     "20",
		"Restart":            "on-failure",
		"RestartSec":         "2",
		"User":               "simpletuner",
		"Group":              "simpletuner",
		"StateDirectory":     "simpletuner",
		"StateDirectoryMode": "0700",
		"WorkingDirectory":   "/var/lib/simpletuner",
		"UMask":              "0077",
		"LimitNOFILE":        "65536",
		"OOMPolicy":          "continue",
		"NoNewPrivileges":    "yes",
	} {
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("%s=%q, want %q", key, got, want)
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q", got)
	}

	exec := strings.Fields(u.one(t, "Service", "ExecStart"))
	if len(exec) < 2 || exec[0] != "/usr/bin/simpletuner" || exec[1] != "server" {
		t.Errorf("ExecStart=%q, want /usr/bin/simpletuner server ...", exec)
	}

	env := map[string]string{}
	for _, e := range u["Service"]["Environment"] {
		for _, kv := range strings.Fields(e) {
			k, v, _ := strings.Cut(strings.Trim(kv, `"`), "=")
			env[k] = v
		}
	}
	for k, want := range map[string]string{
		"SIMPLETUNER_HOME": "/var/lib/simpletuner",
		"SIMPLETUNER_HOST": "127.0.0.1",
		"SIMPLETUNER_PORT": "8001",
	} {
		if env[k] != want {
			t.Errorf("Environment %s=%q, want %q", k, env[k], want)
		}
	}

	groups := strings.Fields(u.one(t, "Service", "SupplementaryGroups"))
	for _, g := range []string{"video", "render"} {
		if !contains(groups, g) {
			t.Errorf("SupplementaryGroups=%q lacks %s (GPU device nodes)", groups, g)
		}
	}
}

// TestUnitKeepsTrainersAndGPUs rejects settings that would kill trainers on
// restart, take away their sockets, or hide the GPUs from them.
func TestUnitKeepsTrainersAndGPUs(t *testing.T) {
	u := loadUnit(t)
	s := u["Service"]
	for _, key := range []string{
		"PrivateTmp",             // plugin sockets must outlive the daemon
		"DynamicUser",            // implies PrivateTmp and RemoveIPC
		"PrivateDevices",         // hides /dev/nvidia*
		"DeviceAllow",            // any entry turns on a device allow-list
		"DevicePolicy",           // same
		"ProtectClock",           // adds a DeviceAllow entry for the RTC
		"MemoryDenyWriteExecute", // CUDA JIT needs W+X pages
		"RemoveIPC",              // CUDA IPC handles between processes
	} {
		for _, v := range s[key] {
			if isTrue(v) || key == "DeviceAllow" || key == "DevicePolicy" {
				t.Errorf("%s=%s: breaks trainers or GPU access", key, v)
			}
		}
	}
	if v := s["ProtectSystem"]; len(v) == 1 && v[0] == "strict" {
		t.Error("ProtectSystem=strict makes output and dataset volumes read-only")
	}
	if v := s["ProtectHome"]; len(v) == 1 && (isTrue(v[0]) || v[0] == "tmpfs") {
		t.Errorf("ProtectHome=%s hides datasets under /home", v[0])
	}
}

func isTrue(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "true", "on":
		return true
	}
	return false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// verifyUnit runs systemd-analyze verify on unit text written to a temp
// dir, with ExecStart= pointed at an existing binary (verify insists that
// it exists) and everything else unchanged. It returns verify's output;
// systemd-analyze exits 0 on many problems it only prints, so any output
// is a finding.
func verifyUnit(t *testing.T, analyze, text string) string {
	t.Helper()
	stand, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to stand in for the daemon binary")
	}
	rewritten := regexp.MustCompile(`(?m)^ExecStart=/usr/bin/simpletuner `).ReplaceAllString(text, "ExecStart="+stand+" ")
	if rewritten == text {
		t.Fatal("ExecStart=/usr/bin/simpletuner not found to rewrite")
	}
	path := filepath.Join(t.TempDir(), "simpletuner.service")
	if err := os.WriteFile(path, []byte(rewritten), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, "verify", "--man=no", path)
	out, err := cmd.CombinedOutput()
	msg := strings.TrimSpace(string(out))
	if err != nil {
		msg = strings.TrimSpace(fmt.Sprintf("%s\n(exit: %v)", msg, err))
	}
	return msg
}

func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	text := readFile(t, "simpletuner.service")
	if out := verifyUnit(t, analyze, text); out != "" {
		t.Errorf("systemd-analyze verify:\n%s", out)
	}
	// The check must be able to fail: a misspelt value and an unknown key
	// are only warnings to systemd-analyze (exit status 0), but they print.
	broken := regexp.MustCompile(`(?m)^KillMode=process$`).ReplaceAllString(text, "KillMode=proces\nKilMode=process")
	if broken == text {
		t.Fatal("no KillMode=process line to break")
	}
	if out := verifyUnit(t, analyze, broken); !strings.Contains(out, "kill mode") || !strings.Contains(out, "KilMode") {
		t.Errorf("systemd-analyze verify did not report a broken unit; output:\n%s", out)
	}
}

// stripComments drops '#' comments (to the end of the line) from nginx or
// Caddy config text. Neither file has '#' inside a value.
func stripComments(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// block returns the text between the braces that follow header (matched
// with a regexp), or fails.
func block(t *testing.T, text, header string) string {
	t.Helper()
	loc := regexp.MustCompile(header + `\s*\{`).FindStringIndex(text)
	if loc == nil {
		t.Fatalf("no block %q", header)
	}
	depth := 0
	for i := loc[1] - 1; i < len(text); i++ {
		switch text[i] {
		case '{':
			depth++
		case '}':
			depth--
			if depth == 0 {
				return text[loc[1]:i]
			}
		}
	}
	t.Fatalf("block %q not closed", header)
	return ""
}

// directive reports whether body has the nginx directive (words separated
// by any whitespace, ending in ';').
func directive(body, words string) bool {
	pattern := `(?m)^\s*` + strings.Join(strings.Fields(regexp.QuoteMeta(words)), `\s+`) + `\s*;`
	return regexp.MustCompile(pattern).MatchString(body)
}

func TestNginx(t *testing.T) {
	raw := readFile(t, "nginx.conf")
	if !strings.Contains(raw, "--trusted-proxy 127.0.0.1") {
		t.Error("nginx.conf does not tell the reader about --trusted-proxy 127.0.0.1")
	}
	conf := stripComments(raw)
	if !directive(block(t, conf, `upstream\s+simpletuner`), "server 127.0.0.1:8001") {
		t.Error("upstream does not point at 127.0.0.1:8001")
	}
	server := block(t, conf, `(?m)^server`)
	for _, d := range []string{"client_max_body_size 10G", "proxy_request_buffering off"} {
		if !directive(server, d) {
			t.Errorf("server block lacks %q", d)
		}
	}
	hours := regexp.MustCompile(`(?m)^\s*proxy_read_timeout\s+(\d+)h\s*;`)
	for _, loc := range []string{"/", "= /api/events", "= /api/training/events/stream"} {
		body := block(t, server, `location\s+`+regexp.QuoteMeta(loc))
		// proxy_set_header does not inherit into a location that sets its
		// own, so each one needs the full set.
		for _, d := range []string{
			"proxy_pass http://simpletuner",
			"proxy_http_version 1.1",
			"proxy_set_header Host $host",
			"proxy_set_header X-Forwarded-For $remote_addr",
			"proxy_set_header X-Forwarded-Proto $scheme",
		} {
			if !directive(body, d) {
				t.Errorf("location %s lacks %q", loc, d)
			}
		}
		if loc == "/" {
			continue
		}
		for _, d := range []string{"proxy_buffering off", "proxy_cache off", "gzip off"} {
			if !directive(body, d) {
				t.Errorf("stream location %s lacks %q", loc, d)
			}
		}
		if !hours.MatchString(body) {
			t.Errorf("stream location %s has no proxy_read_timeout in hours", loc)
		}
	}
	ws := block(t, server, `location\s+= /api/training/events/stream`)
	if !directive(ws, "proxy_set_header Upgrade $http_upgrade") || !directive(ws, "proxy_set_header Connection $simpletuner_connection") {
		t.Error("the stream location does not pass the WebSocket upgrade")
	}
	m := block(t, conf, `map\s+\$http_upgrade\s+\$simpletuner_connection`)
	if !directive(m, "default upgrade") {
		t.Error("map does not turn an Upgrade header into Connection: upgrade")
	}
}

// TestNginxSyntax runs nginx -t on the snippet inside a minimal main config
// whose paths all point into a temp dir. Skipped without nginx on PATH.
func TestNginxSyntax(t *testing.T) {
	nginx, err := exec.LookPath("nginx")
	if err != nil {
		t.Skip("nginx not installed")
	}
	snippet, err := filepath.Abs("nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	main := fmt.Sprintf(`pid %[1]s/nginx.pid;
error_log stderr;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s; proxy_temp_path %[1]s; fastcgi_temp_path %[1]s;
    uwsgi_temp_path %[1]s; scgi_temp_path %[1]s;
    include %[2]s;
}
`, dir, snippet)
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, nginx, "-t", "-q", "-p", dir+"/", "-c", conf).CombinedOutput()
	if err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("[warn]")) {
		t.Errorf("nginx -t warns:\n%s", out)
	}
}

func TestCaddyfile(t *testing.T) {
	conf := stripComments(readFile(t, "Caddyfile"))
	site := block(t, conf, `simpletuner\.example\.org`)
	proxy := block(t, site, `reverse_proxy\s+127\.0\.0\.1:8001`)
	if !regexp.MustCompile(`(?m)^\s*flush_interval\s+-1\s*$`).MatchString(proxy) {
		t.Error("reverse_proxy lacks flush_interval -1 (SSE would be buffered)")
	}
	body := block(t, site, `request_body`)
	if !regexp.MustCompile(`(?m)^\s*max_size\s+10GB\s*$`).MatchString(body) {
		t.Error("request_body lacks max_size 10GB")
	}
}

// TestCaddyfileAdapts runs caddy adapt --validate. Skipped without caddy.
func TestCaddyfileAdapts(t *testing.T) {
	caddy, err := exec.LookPath("caddy")
	if err != nil {
		t.Skip("caddy not installed")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddy, "adapt", "--adapter", "caddyfile", "--config", "Caddyfile", "--validate")
	// Caddy keeps state under $HOME / XDG dirs; keep it in the temp dir.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v\n%s", err, stderr.String())
	}
	for _, want := range []string{`"flush_interval":-1`, `"max_size":10000000000`, `"dial":"127.0.0.1:8001"`} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("adapted JSON lacks %s:\n%s", want, out)
		}
	}
	if bytes.Contains(stderr.Bytes(), []byte(`"level":"warn"`)) {
		t.Errorf("caddy adapt warns:\n%s", stderr.String())
	}
}

func TestDockerfile(t *testing.T) {
	df := stripComments(readFile(t, "Dockerfile"))
	for _, re := range []string{
		`(?m)^FROM golang:1\.26-bookworm AS build$`,
		`(?m)^RUN make build\b`,
		`(?m)^FROM debian:bookworm-slim$`,
		`(?m)^RUN apt-get update[^\n]*\\\n[^\n]*ca-certificates`,
		`(?m)^COPY --from=build /src/bin/simpletuner /src/bin/simpletuner-trainer /usr/bin/$`,
		`(?m)^ENV SIMPLETUNER_HOME=/var/lib/simpletuner$`,
		`(?m)^VOLUME /var/lib/simpletuner$`,
		`(?m)^EXPOSE 8001$`,
		`(?m)^ENTRYPOINT \["/usr/bin/simpletuner","server"\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(df) {
			t.Errorf("Dockerfile lacks %s", re)
		}
	}
	users := regexp.MustCompile(`(?m)^USER (\S+)$`).FindAllStringSubmatch(df, -1)
	if len(users) == 0 {
		t.Fatal("Dockerfile never leaves root (no USER)")
	}
	if last := users[len(users)-1][1]; last == "root" || strings.HasPrefix(last, "0") {
		t.Errorf("final USER %s is root", last)
	}
	// The final stage must be the runtime image, not the builder.
	if i, j := strings.LastIndex(df, "\nFROM "), strings.Index(df, "ENTRYPOINT"); i > j {
		t.Error("ENTRYPOINT is not in the final stage")
	}
}

func TestReadme(t *testing.T) {
	readme := readFile(t, "README.md")
	for _, want := range []string{
		"useradd --system",
		"systemctl enable --now simpletuner",
		"KillMode=process",
		"--trusted-proxy 127.0.0.1",
		"flush_interval -1",
		"proxy_buffering off",
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README.md does not mention %q", want)
		}
	}
}
