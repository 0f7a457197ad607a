package daemon

import (
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaultsFromEnvironment(t *testing.T) {
	c, err := Defaults(env(map[string]string{"SIMPLETUNER_HOME": "/srv/st"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "0.0.0.0" || c.Port != 8001 || c.ConfigDir != "config" || c.StateDir != "/srv/st/state" ||
		c.DatasetsDir != "/srv/st/datasets" || c.OutputRoot != "/srv/st/output" || c.CacheDir != "/srv/st/cache" || c.ShutdownTimeout != 10*time.Second {
		t.Fatalf("defaults: %+v", c)
	}
	c, err = Defaults(env(map[string]string{"SIMPLETUNER_HOME": "/h", "SIMPLETUNER_HOST": "127.0.0.1", "SIMPLETUNER_PORT": "9000",
		"SIMPLETUNER_CONFIG_DIR": "/etc/st", "SIMPLETUNER_STATE_DIR": "/var/lib/st"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Host != "127.0.0.1" || c.Port != 9000 || c.ConfigDir != "/etc/st" || c.StateDir != "/var/lib/st" || c.DatasetsDir != "/h/datasets" {
		t.Fatalf("env overrides: %+v", c)
	}
	for _, bad := range []string{"x", "0", "70000", "-1"} {
		if _, err := Defaults(env(map[string]string{"SIMPLETUNER_HOME": "/h", "SIMPLETUNER_PORT": bad})); err == nil || !strings.Contains(err.Error(), "SIMPLETUNER_PORT") {
			t.Errorf("SIMPLETUNER_PORT=%s: %v", bad, err)
		}
	}
}

func TestParseTrustedProxies(t *testing.T) {
	got, err := ParseTrustedProxies("127.0.0.1, 10.0.0.0/8,::1,")
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	if _, err := ParseTrustedProxies("localhost"); err == nil {
		t.Fatal("host name accepted")
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []Config{{Port: 70000}, {Port: 1, SSLKey: "k"}, {Port: 1, SSLKey: "/nonexistent/k", SSLCert: "/nonexistent/c"},
		{Port: 1, AllowFileRoots: []string{"shared"}}, {Port: 1, AllowDataRoots: []string{"/srv/data", "data"}},
		{Port: 1, MetricsToken: "short"}, {Port: 1, MetricsToken: "sixteen chars but spaced"}, {Port: 1, MetricsToken: "0123456789abcdef\n"}} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (&Config{Port: 8001, AllowFileRoots: []string{"/srv/cfg"}, AllowDataRoots: []string{"/srv/data"}, MetricsToken: "0123456789abcdef"}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSelfSignedCertificate(t *testing.T) {
	now := time.Now()
	certPEM, keyPEM, err := selfSigned(now)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(keyPEM), "PRIVATE KEY") {
		t.Fatal("no key")
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("localhost"); err != nil {
		t.Fatal(err)
	}
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if cert.NotAfter.Sub(now) < 364*24*time.Hour {
		t.Fatalf("expires %v", cert.NotAfter)
	}
}

// TestConfigsOptionsRoots: files are read from the configs dir and --allow-file-root;
// dataloader data lies under the datasets root, caches under the cache or output root,
// either under --allow-data-root too.
func TestConfigsOptionsRoots(t *testing.T) {
	c := Config{ConfigDir: "/h/config", DatasetsDir: "/h/datasets", CacheDir: "/h/cache", OutputRoot: "/h/output",
		AllowFileRoots: []string{"/srv/cfg"}, AllowDataRoots: []string{"/srv/data"}}
	o := ConfigsOptions(&c, nil, nil)
	if o.Dir != "/h/config" || !slices.Equal(o.FileRoots, []string{"/srv/cfg"}) {
		t.Errorf("files: %+v", o)
	}
	if got := o.Folders.Data.Dirs(); !slices.Equal(got, []string{"/h/datasets", "/srv/data"}) {
		t.Errorf("data roots %v", got)
	}
	if got := o.Folders.Cache.Dirs(); !slices.Equal(got, []string{"/h/cache", "/h/output", "/srv/data"}) {
		t.Errorf("cache roots %v", got)
	}
}

func TestParseAllowedHosts(t *testing.T) {
	got, err := ParseAllowedHosts(" gpu-box , train.lab.example,192.0.2.10,[fd00::5],fd00::6")
	if err != nil || len(got) != 5 || got[0] != "gpu-box" || got[3] != "[fd00::5]" {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"gpu-box:8001", "http://gpu-box", "*.example", "user@host", "a b"} {
		if _, err := ParseAllowedHosts(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestTrainerEnv: a trainer inherits the daemon's Hugging Face cache and Hub settings (so
// it reuses the shared model cache) but not its credentials, plus --trainer-env.
func TestTrainerEnv(t *testing.T) {
	c := &Config{TrainerEnv: []string{"HF_TOKEN=given"}}
	got := TrainerEnv(c, env(map[string]string{"PATH": "/bin", "HF_HOME": "/models/hf", "HF_HUB_CACHE": "/models/hf/hub",
		"HF_ENDPOINT": "http://mirror", "HF_HUB_OFFLINE": "1", "HF_TOKEN": "secret", "HUGGING_FACE_HUB_TOKEN": "secret2",
		"AWS_SECRET_ACCESS_KEY": "k"}))
	want := []string{"PATH=/bin", "HF_HOME=/models/hf", "HF_HUB_CACHE=/models/hf/hub", "HF_ENDPOINT=http://mirror",
		"HF_HUB_OFFLINE=1", "HF_TOKEN=given"}
	if !slices.Equal(got, want) {
		t.Fatalf("trainer env %q, want %q", got, want)
	}
}
