package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium returns Debian's chromium (or another Chromium on PATH). Without one the test
// is skipped with how to get it, except under CI=true, where .ci/run installs it and a
// missing browser is a failure.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("no chromium on PATH under CI=true: .ci/run installs Debian's chromium (apt-get install chromium)")
	}
	t.Skip("no chromium on PATH: install Debian's chromium (apt-get install chromium) to drive the status page")
	return ""
}

// fakeNVML compiles the C stand-in for libnvidia-ml (supervisor/gpu/testdata/fakenvml.c:
// two H100s) and returns the daemon environment that makes its dlopen of
// libnvidia-ml.so.1 find it, so the page has GPUs to show and a job holding one, and the
// daemon flags that make the fake trainer its GPU trainer too (a plugins directory whose
// simpletuner-trainer-cuda is this test binary). Without a C compiler the daemon sees no
// GPUs and the test says so.
func fakeNVML(t *testing.T) (env, args []string) {
	t.Helper()
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "cc"
	}
	if _, err := exec.LookPath(cc); err != nil {
		t.Logf("no C compiler (%s): the daemon runs without GPUs", cc)
		return nil, nil
	}
	dir := t.TempDir()
	cmd := exec.Command(cc, "-shared", "-fPIC", "-O1", "-o", filepath.Join(dir, "libnvidia-ml.so.1"), filepath.Join("..", "..", "supervisor", "gpu", "testdata", "fakenvml.c"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd, err, b)
	}
	plugins := t.TempDir()
	if err := os.Symlink(os.Args[0], filepath.Join(plugins, "simpletuner-trainer-cuda")); err != nil {
		t.Fatal(err)
	}
	return []string{"LD_LIBRARY_PATH=" + dir}, []string{"--plugins-dir", plugins}
}

// screenshotDir is $OUT_DIR when set (so a CI run keeps them), else a test directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("OUT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

// TestStatusPageInChromium drives the status page (issue 17) in headless Chromium
// against the real daemon and the fake trainer: the page first shows only the login form
// (no data of the running job in the document), logs in through the form, shows the job's
// progress bar and loss curve moving on the event stream, shows the validation image the
// Validate button asked for, and shows the job stopped after Stop. Screenshots of the
// three states are saved and their paths printed.
func TestStatusPageInChromium(t *testing.T) {
	browser := chromium(t)
	home := t.TempDir()
	writeEnv(t, home, "demo")
	env, args := fakeNVML(t)
	d := startEnv(t, home, env, append(args, fakeTrainerArgs(2500, 40)...)...)
	c := adminClient(t, d)
	jobID := submitRunning(t, c, d.base, "demo")

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(browser), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1100), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancelTab := chromedp.NewContext(actx)
	defer cancelTab()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	shots := screenshotDir(t)
	do := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, a); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return v
	}
	// until waits for a JavaScript condition on the page.
	until := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second))); err != nil {
			t.Fatalf("waiting for %s (%s): %v\npage: %s", what, expr, err, eval(`document.body.innerText`))
		}
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		p := filepath.Join(shots, "ui-"+name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot %s: %s", name, p)
	}

	// Not logged in: the login form and nothing else.
	do("open the page", chromedp.Navigate(d.base+"/"))
	until("the login form", `!document.getElementById('login').hidden && !document.getElementById('login-form').hidden`)
	if doc := eval(`document.documentElement.outerHTML`); strings.Contains(doc, jobID) || strings.Contains(doc, "demo") || strings.Contains(doc, "a@example.com") {
		t.Fatalf("the page shows data before login:\n%s", doc)
	}
	if eval(`String(document.getElementById('app').hidden)`) != "true" || eval(`document.getElementById('whoami').textContent`) != "" {
		t.Fatal("the dashboard is visible before login")
	}
	// First paint, printed (no assertion): the first load starts the browser's renderer
	// too, so the second (a reload, nothing cached: the daemon answers no-cache and the
	// assets revalidate) is the page's own time.
	timing := `(() => {
		const n = performance.getEntriesByType('navigation')[0];
		const p = performance.getEntriesByType('paint').find((e) => e.name === 'first-contentful-paint') ||
			performance.getEntriesByType('paint')[0];
		return 'first paint ' + (p ? p.startTime.toFixed(1) + ' ms' : 'n/a') +
			', HTML received ' + n.responseEnd.toFixed(1) + ' ms, DOMContentLoaded ' + n.domContentLoadedEventEnd.toFixed(1) + ' ms, load ' + n.loadEventEnd.toFixed(1) + ' ms';
	})()`
	cold := eval(timing)
	do("reload", chromedp.Reload())
	until("the login form again", `!document.getElementById('login').hidden && !document.getElementById('login-form').hidden`)
	// A paint entry may come a frame after the form shows; a browser that records none
	// prints n/a.
	_, _ = chromedp.Run(ctx, chromedp.Poll[bool](`performance.getEntriesByType('paint').length > 0`, chromedp.WithPollingTimeout(2*time.Second)))
	fmt.Printf("status page timing on loopback: first load (browser starting): %s; reload: %s\n", cold, eval(timing))
	shot("login")

	// A wrong password is refused with the daemon's message.
	do("type the user", chromedp.SendKeys("#login-user", "admin"))
	do("type a wrong password", chromedp.SendKeys("#login-password", "not-the-password"))
	do("submit", chromedp.Click("#login-submit"))
	until("the refusal", `document.getElementById('login-error').textContent.length > 0`)
	if eval(`String(document.getElementById('app').hidden)`) != "true" {
		t.Fatal("a wrong password opened the dashboard")
	}
	eval(`(document.getElementById('login-password').value = '', '')`)
	do("type the password", chromedp.SendKeys("#login-password", "your-secure-password"))
	do("log in", chromedp.Click("#login-submit"))
	until("the job", fmt.Sprintf(`!document.getElementById('job').hidden && document.getElementById('job-id').textContent.startsWith(%q)`, jobID))
	until("the job running", `document.getElementById('job-status').textContent === 'running'`)

	// The progress bar and the loss curve move with the event stream.
	until("progress", `document.getElementById('job-progress').value > 0`)
	until("a loss curve", `document.getElementById('loss-line').getAttribute('points').split(' ').length > 2`)
	// The curve starts at the job's first step: the stored history is read on selection, and
	// the stream's events that came before it do not hide it.
	until("the curve from step 1", `document.getElementById('loss').dataset.from === '1'`)
	bar1, line1 := eval(`String(document.getElementById('job-progress').value)`), eval(`document.getElementById('loss-line').getAttribute('points')`)
	step1 := eval(`document.getElementById('job-step').textContent`)
	until("the progress bar to move", fmt.Sprintf(`String(document.getElementById('job-progress').value) !== %q`, bar1))
	until("the loss curve to move", fmt.Sprintf(`document.getElementById('loss-line').getAttribute('points') !== %q`, line1))
	t.Logf("progress moved from %s (%s) to %s", bar1, step1, eval(`document.getElementById('job-step').textContent`))

	if env != nil {
		until("the GPU the job holds", fmt.Sprintf(`Array.from(document.querySelectorAll('#gpus tbody tr')).some((r) => r.cells[4].textContent === %q)`, jobID+" (admin)"))
	}
	// Buttons: an administrator may do everything to a running job.
	for _, b := range []string{"stop", "cancel", "checkpoint", "validate"} {
		if eval(fmt.Sprintf(`String(document.getElementById('btn-%s').hidden || document.getElementById('btn-%s').disabled)`, b, b)) != "false" {
			t.Fatalf("button %s is hidden or disabled for the administrator's running job", b)
		}
	}

	// Validate: the trainer's validation image appears.
	do("validate", chromedp.Click("#btn-validate"))
	until("a validation image", `(() => { const i = document.querySelector('#images img'); return !!i && i.complete && i.naturalWidth > 0 && i.src.startsWith('data:image/png;base64,'); })()`)
	// The log tail shows the trainer's log.
	until("the log tail", `document.getElementById('log').textContent.includes('fake step done')`)
	shot("running")

	// Stop: the job ends stopped and the buttons that need a running job are disabled.
	do("stop", chromedp.Click("#btn-stop"))
	until("the job stopped", `document.getElementById('job-status').textContent === 'stopped'`)
	until("the buttons disabled", `document.getElementById('btn-stop').disabled && document.getElementById('btn-validate').disabled && document.getElementById('btn-checkpoint').disabled`)
	shot("stopped")
	if j := jobState(t, c, d.base, jobID); j["status"] != "stopped" {
		t.Fatalf("the API says the job is %v", j["status"])
	}

	// A lead sees every job (job.view.all) but may not steer another's (no job.cancel.all):
	// the page shows the job without its buttons.
	if code, r := call(t, c, "POST", d.base+"/api/users", map[string]any{"email": "l@example.com", "username": "lena", "password": "their-password", "level_names": []string{"lead"}}, nil); code != 201 && code != 200 {
		t.Fatalf("create lead: %d %v", code, r)
	}
	do("log out", chromedp.Click("#logout"))
	until("the login form after logout", `!document.getElementById('login-form').hidden && document.getElementById('app').hidden && document.getElementById('login-user').value === ''`)
	if doc := eval(`document.documentElement.outerHTML`); strings.Contains(doc, jobID) || strings.Contains(doc, "data:image") {
		t.Fatal("the page keeps the administrator's data after logout")
	}
	do("type the lead", chromedp.SendKeys("#login-user", "lena"))
	do("type her password", chromedp.SendKeys("#login-password", "their-password"))
	do("log in as the lead", chromedp.Click("#login-submit"))
	until("the job for the lead", fmt.Sprintf(`document.getElementById('whoami').textContent === 'lena' && !document.getElementById('job').hidden && document.getElementById('job-id').textContent.startsWith(%q)`, jobID))
	for _, b := range []string{"stop", "cancel", "checkpoint", "validate"} {
		if eval(fmt.Sprintf(`String(document.getElementById('btn-%s').hidden)`, b)) != "true" {
			t.Errorf("button %s is shown to a lead on the administrator's job", b)
		}
	}
}
