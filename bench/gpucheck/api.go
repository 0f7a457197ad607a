//go:build cuda

package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"time"

	"simpletuner/bench/internal/benchkit"
)

// runAPI starts the daemon on a scratch home, prints its NVML inventory (API line per GPU),
// then starts a short training job pinned to the first GPU by UUID through the HTTP API and
// checks that it completed on the CUDA trainer.
func runAPI(args []string) error {
	fs := flag.NewFlagSet("api", flag.ContinueOnError)
	daemon := fs.String("daemon", "simpletuner", "daemon binary (the trainers are found next to it)")
	work := fs.String("work", os.TempDir(), "scratch directory")
	timeout := fs.Duration("timeout", 3*time.Minute, "how long the pinned job may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	home := filepath.Join(*work, "api-home")
	_ = os.RemoveAll(home)
	if err := os.MkdirAll(filepath.Join(home, "config"), 0o755); err != nil {
		return err
	}
	port, err := benchkit.FreePort()
	if err != nil {
		return err
	}
	d, err := benchkit.StartDaemon(*daemon, home, port,
		"--state-dir", filepath.Join(home, "state"), "--datasets-dir", filepath.Join(home, "datasets"))
	if err != nil {
		return err
	}
	defer d.Stop()
	base := d.Base
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if _, err := post(c, base+"/api/auth/setup/first-admin", "application/json",
		bytes.NewBufferString(`{"email":"gpu@example.com","username":"gpucheck","password":"gpucheck-password"}`)); err != nil {
		return err
	}
	var st struct {
		GPUInventory struct {
			Backend string `json:"backend"`
			Count   int    `json:"count"`
			Reason  string `json:"reason"`
		} `json:"gpu_inventory"`
		GPUAllocation struct {
			Devices []struct {
				Index    int     `json:"index"`
				UUID     string  `json:"uuid"`
				Name     string  `json:"name"`
				MemoryGB float64 `json:"memory_gb"`
				Healthy  bool    `json:"healthy"`
			} `json:"devices"`
		} `json:"gpu_allocation"`
	}
	if err := getJSON(c, base+"/api/system/status?include_allocation=true", &st); err != nil {
		return err
	}
	fmt.Printf("# inventory: backend %q, %d GPUs %s\n", st.GPUInventory.Backend, st.GPUInventory.Count, st.GPUInventory.Reason)
	for _, g := range st.GPUAllocation.Devices {
		fmt.Printf("API\tgpu\t%d\t%s\t%s\t%.1f GiB\thealthy=%v\n", g.Index, g.Name, g.UUID, g.MemoryGB, g.Healthy)
	}
	if len(st.GPUAllocation.Devices) == 0 {
		return fmt.Errorf("the daemon's NVML inventory is empty (%s)", st.GPUInventory.Reason)
	}
	uuid := st.GPUAllocation.Devices[0].UUID

	dataDir := filepath.Join(home, "datasets", "shapes")
	if err := writeDataset(dataDir, 4, 16); err != nil {
		return err
	}
	cfg := trainConfig(dataDir, filepath.Join(home, "out"), 20, "bf16")
	cfg["--accelerate_visible_devices"] = uuid
	cfg["--num_processes"] = 1
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range cfg {
		if err := mw.WriteField(k, fmt.Sprint(v)); err != nil {
			return err
		}
	}
	mw.Close()
	body, err := post(c, base+"/api/training/start", mw.FormDataContentType(), &buf)
	if err != nil {
		return err
	}
	var started struct {
		JobID string `json:"job_id"`
	}
	if err := json.Unmarshal(body, &started); err != nil || started.JobID == "" {
		return fmt.Errorf("start refused: %s", body)
	}
	deadline := time.Now().Add(*timeout)
	for time.Now().Before(deadline) {
		var job map[string]any
		if err := getJSON(c, base+"/api/jobs/"+started.JobID, &job); err != nil {
			return err
		}
		status := fmt.Sprint(job["status"])
		if status == "completed" || status == "failed" || status == "cancelled" {
			var evs struct {
				Events []struct {
					Type string         `json:"type"`
					Data map[string]any `json:"data"`
				} `json:"events"`
			}
			_ = getJSON(c, base+"/api/jobs/"+started.JobID+"/events", &evs)
			backend := ""
			for _, e := range evs.Events {
				if b, ok := e.Data["backend"].(string); ok {
					backend = b
				}
			}
			ok := status == "completed" && strings.HasPrefix(backend, "cuda")
			res := "PASS"
			if !ok {
				res = "FAIL"
			}
			fmt.Printf("API\tjob\t%s\t%s\tpinned %s\t%s\t%s\n", started.JobID, status, uuid, backend, res)
			if !ok {
				raw, _ := json.Marshal(job)
				return fmt.Errorf("pinned job %s ended %s on %q: %s", started.JobID, status, backend, raw)
			}
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return fmt.Errorf("pinned job %s did not finish in %s", started.JobID, *timeout)
}

func post(c *http.Client, url, ctype string, body *bytes.Buffer) ([]byte, error) {
	req, err := http.NewRequest("POST", url, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(res.Body)
	if res.StatusCode >= 300 {
		return out.Bytes(), fmt.Errorf("POST %s: %s: %s", url, res.Status, out.String())
	}
	return out.Bytes(), nil
}

func getJSON(c *http.Client, url string, v any) error {
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Accept", "application/json")
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode >= 300 {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}
