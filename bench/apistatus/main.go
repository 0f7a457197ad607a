// Command apistatus measures GET /api/training/status with an API key on the real daemon
// against a bare net/http handler serving the same body, in the same run, with the same
// load generator: requests per second, latency percentiles, and the daemon's idle RSS.
//
//	go run ./bench/apistatus -daemon bin/simpletuner [-conns 8] [-duration 5s]
//
// Goals (issue: the daemon's foundation): ratio ≥ 0.5, p99 < 5 ms at 8 connections,
// idle RSS < 60 MB.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"simpletuner/bench/internal/benchkit"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve-bare" {
		serveBare(os.Args[2])
		return
	}
	daemonBin := flag.String("daemon", "bin/simpletuner", "path of the simpletuner binary")
	conns := flag.Int("conns", 8, "concurrent keep-alive connections")
	dur := flag.Duration("duration", 5*time.Second, "load duration per target")
	flag.Parse()
	if err := run(*daemonBin, *conns, *dur); err != nil {
		fmt.Fprintln(os.Stderr, "apistatus:", err)
		os.Exit(1)
	}
}

// statusBody is what the bare handler serves: the daemon's idle answer, byte for byte.
const statusBody = `{"status":"idle","config":{},"job_id":null,"job_info":null,"progress":null,"startup_progress":{}}` + "\n"

// serveBare is the baseline: net/http and nothing else.
func serveBare(addr string) {
	http.HandleFunc("/api/training/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, statusBody)
	})
	if err := http.ListenAndServe(addr, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitHTTP(url string, proc *exec.Cmd) error {
	for range 300 {
		if res, err := http.Get(url); err == nil {
			res.Body.Close()
			return nil
		}
		if proc.ProcessState != nil {
			return fmt.Errorf("process exited")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered", url)
}

func run(daemonBin string, conns int, dur time.Duration) error {
	home, err := os.MkdirTemp("", "st-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)

	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	d, err := benchkit.StartDaemon(daemonBin, home, port)
	if err != nil {
		return err
	}
	defer d.Stop()
	base := d.Base
	key, err := setup(base)
	if err != nil {
		return err
	}

	baddr, err := freeAddr()
	if err != nil {
		return err
	}
	self, _ := os.Executable()
	b := exec.Command(self, "serve-bare", baddr)
	b.Stderr = os.Stderr
	if err := b.Start(); err != nil {
		return err
	}
	defer func() { b.Process.Kill(); b.Wait() }()
	if err := waitHTTP("http://"+baddr+"/api/training/status", b); err != nil {
		return err
	}

	time.Sleep(2 * time.Second)
	idleBefore := benchkit.RSSMB(d.Cmd.Process.Pid)

	// Warm both up, then measure them alternately twice and keep each one's best run, so
	// a noisy moment does not decide the ratio.
	hdr := map[string]string{"X-API-Key": key}
	load("http://"+baddr+"/api/training/status", nil, conns, time.Second)
	load(base+"/api/training/status", hdr, conns, time.Second)
	var bare, ours result
	for range 2 {
		bare = best(bare, load("http://"+baddr+"/api/training/status", nil, conns, dur))
		ours = best(ours, load(base+"/api/training/status", hdr, conns, dur))
	}
	if ours.errors > 0 || bare.errors > 0 {
		return fmt.Errorf("request errors: daemon %d, bare %d (first: %s)", ours.errors, bare.errors, ours.firstErr+bare.firstErr)
	}
	time.Sleep(3 * time.Second)
	idleAfter := benchkit.RSSMB(d.Cmd.Process.Pid)

	ratio := ours.rps / bare.rps
	fmt.Printf("GET /api/training/status, %d keep-alive connections, %v per run (best of 2)\n", conns, dur)
	fmt.Printf("%-28s %10s %9s %9s %9s\n", "target", "req/s", "p50 ms", "p99 ms", "max ms")
	for _, r := range []struct {
		name string
		res  result
	}{{"bare net/http", bare}, {"simpletuner + X-API-Key", ours}} {
		fmt.Printf("%-28s %10.0f %9.3f %9.3f %9.3f\n", r.name, r.res.rps, ms(r.res.p50), ms(r.res.p99), ms(r.res.max))
	}
	fmt.Printf("ratio (simpletuner / bare): %.2f   goal ≥ 0.50  %s\n", ratio, verdict(ratio >= 0.5))
	fmt.Printf("simpletuner p99: %.3f ms      goal < 5 ms   %s\n", ms(ours.p99), verdict(ours.p99 < 5*time.Millisecond))
	fmt.Printf("daemon idle RSS: %.1f MB before load, %.1f MB after   goal < 60 MB  %s\n", idleBefore, idleAfter, verdict(max(idleBefore, idleAfter) < 60))
	return nil
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// setup creates the first admin (from loopback) and an API key.
func setup(base string) (string, error) {
	post := func(path, body string, cookie *http.Cookie) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != 200 {
			return nil, nil, fmt.Errorf("POST %s: %d %s", path, res.StatusCode, b)
		}
		return res, b, nil
	}
	res, _, err := post("/api/auth/setup/first-admin", `{"email":"bench@example.com","username":"bench","password":"bench-password"}`, nil)
	if err != nil {
		return "", err
	}
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "simpletuner_session" {
			cookie = c
		}
	}
	_, body, err := post("/api/auth/api-keys", `{"name":"bench"}`, cookie)
	if err != nil {
		return "", err
	}
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(body, &k); err != nil || k.Key == "" {
		return "", fmt.Errorf("no key in %s", body)
	}
	return k.Key, nil
}

type result struct {
	rps           float64
	p50, p99, max time.Duration
	errors        int
	firstErr      string
}

func best(a, b result) result {
	if b.rps > a.rps {
		return b
	}
	return a
}

// load runs conns closed-loop clients, each on its own keep-alive connection, for dur.
func load(url string, hdr map[string]string, conns int, dur time.Duration) result {
	tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	var res result
	var wg sync.WaitGroup
	deadline := time.Now().Add(dur)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 1<<16)
			req, _ := http.NewRequest("GET", url, nil)
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			buf := bytes.Buffer{}
			errs, first := 0, ""
			for time.Now().Before(deadline) {
				t0 := time.Now()
				r, err := client.Do(req)
				if err == nil {
					buf.Reset()
					_, err = buf.ReadFrom(r.Body)
					r.Body.Close()
					if err == nil && r.StatusCode != 200 {
						err = fmt.Errorf("status %d: %s", r.StatusCode, buf.String())
					}
				}
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			res.errors += errs
			if res.firstErr == "" {
				res.firstErr = first
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if len(lat) == 0 {
		return res
	}
	slices.Sort(lat)
	res.rps = float64(len(lat)) / elapsed.Seconds()
	res.p50 = lat[len(lat)/2]
	res.p99 = lat[len(lat)*99/100]
	res.max = lat[len(lat)-1]
	return res
}
