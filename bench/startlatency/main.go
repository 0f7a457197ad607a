// Command startlatency measures the time from POST /api/training/start to the trainer's
// first event on the real daemon, with a trainer that does no initialisation of its own
// (the plugin kit around a no-op loop, so what is measured is the daemon and the plugin
// protocol, not model loading), and the share of it spent in the go-plugin handshake
// (launch → handshake → dispense → Status), measured in the same run.
//
//	go run ./bench/startlatency -daemon bin/simpletuner [-n 20]
//
// Goal (issue: job supervision): median < 150 ms.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"time"

	"simpletuner/bench/internal/benchkit"
	"simpletuner/plugins"
	"simpletuner/plugins/kit"
	"simpletuner/plugins/kit/kittest"
)

const asTrainer = "STARTLATENCY_RUN_TRAINER"

func main() {
	if os.Getenv(asTrainer) == "1" {
		kit.Main(kittest.FromEnv())
		return
	}
	daemonBin := flag.String("daemon", "bin/simpletuner", "path of the simpletuner binary")
	n := flag.Int("n", 20, "jobs to start")
	flag.Parse()
	if err := run(*daemonBin, *n); err != nil {
		fmt.Fprintln(os.Stderr, "startlatency:", err)
		os.Exit(1)
	}
}

func run(daemonBin string, n int) error {
	home, err := os.MkdirTemp("", "st-startlat-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(home)
	self, _ := os.Executable()

	// The handshake alone, in this process, as the daemon's launcher does it.
	var handshake []time.Duration
	for range n {
		t0 := time.Now()
		c, err := plugins.Launch(plugins.LaunchConfig{Path: self, Env: []string{asTrainer + "=1"}, SocketDir: home})
		if err != nil {
			return fmt.Errorf("launch: %w", err)
		}
		if _, err := c.Status(bgctx()); err != nil {
			return err
		}
		handshake = append(handshake, time.Since(t0))
		c.Shutdown()
	}

	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	d, err := benchkit.StartDaemon(daemonBin, home, port,
		"--trainer", self, "--trainer-env", asTrainer+"=1", "--trainer-env", kittest.EnvSteps+"=1", "--trainer-env", kittest.EnvStepMS+"=1")
	if err != nil {
		return err
	}
	defer d.Stop()
	base := d.Base
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	post(c, base+"/api/auth/setup/first-admin", `{"email":"b@example.com","username":"bench","password":"bench-password"}`)
	post(c, base+"/api/queue/concurrency", `{"local_job_max_concurrent":10}`)

	data := filepath.Join(home, "datasets", "bench")
	os.MkdirAll(data, 0o755)
	os.MkdirAll(filepath.Join(home, "config"), 0o755)
	dl := fmt.Sprintf(`[{"id":"img","type":"local","dataset_type":"image","instance_data_dir":%q,"caption_strategy":"filename","resolution":32,"resolution_type":"pixel"},{"id":"txt","type":"local","dataset_type":"text_embeds","default":true,"cache_dir":%q}]`, data, filepath.Join(home, "cache", "text"))
	os.WriteFile(filepath.Join(home, "config", "dl.json"), []byte(dl), 0o644)

	var total []time.Duration
	for i := range n {
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		for k, v := range map[string]string{"--model_family": "dit", "--model_type": "full", "--model_flavour": "tiny", "--output_dir": filepath.Join(home, "out", fmt.Sprint(i)),
			"--data_backend_config": "config/dl.json", "--max_train_steps": "1", "--num_train_epochs": "0"} {
			mw.WriteField(k, v)
		}
		mw.Close()
		req, _ := http.NewRequest("POST", base+"/api/training/start", &buf)
		req.Header.Set("Content-Type", mw.FormDataContentType())
		req.Header.Set("Accept", "application/json")
		t0 := time.Now()
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		var st struct {
			JobID string `json:"job_id"`
		}
		json.NewDecoder(res.Body).Decode(&st)
		res.Body.Close()
		if st.JobID == "" {
			return fmt.Errorf("start refused")
		}
		first, err := firstEvent(c, base, st.JobID)
		if err != nil {
			return err
		}
		total = append(total, first.Sub(t0))
	}
	slices.Sort(total)
	slices.Sort(handshake)
	med, hs := total[len(total)/2], handshake[len(handshake)/2]
	fmt.Printf("POST /api/training/start → first trainer event, %d jobs (trainer init excluded: the trainer does none)\n", n)
	fmt.Printf("%-34s %9s %9s %9s\n", "", "min ms", "median ms", "p90 ms")
	fmt.Printf("%-34s %9.1f %9.1f %9.1f\n", "start → first event (daemon)", ms(total[0]), ms(med), ms(total[len(total)*9/10]))
	fmt.Printf("%-34s %9.1f %9.1f %9.1f\n", "go-plugin launch+handshake+Status", ms(handshake[0]), ms(hs), ms(handshake[len(handshake)*9/10]))
	fmt.Printf("handshake share of the median: %.0f%%\n", 100*float64(hs)/float64(med))
	verdict := "PASS"
	if med >= 150*time.Millisecond {
		verdict = "FAIL"
	}
	fmt.Printf("goal: median < 150 ms  %s\n", verdict)
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func post(c *http.Client, url, body string) {
	res, err := c.Post(url, "application/json", bytes.NewReader([]byte(body)))
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// firstEvent polls the job's events until one is stored and returns its timestamp (the
// trainer's clock, which is this machine's).
func firstEvent(c *http.Client, base, id string) (time.Time, error) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		res, err := c.Get(base + "/api/jobs/" + id + "/events")
		if err != nil {
			return time.Time{}, err
		}
		var out struct {
			Events []struct {
				Timestamp time.Time `json:"timestamp"`
			} `json:"events"`
		}
		json.NewDecoder(res.Body).Decode(&out)
		res.Body.Close()
		if len(out.Events) > 0 {
			return out.Events[0].Timestamp, nil
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("job %s: no event in 20 s", id)
}

func bgctx() context.Context { return context.Background() }
