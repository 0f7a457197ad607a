package daemon

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"simpletuner/supervisor/slurm"
)

func TestSlurmFromEnvironment(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want slurm.Config
		err  string
	}{
		{name: "nothing", env: map[string]string{}, want: slurm.Config{}},
		{name: "everything", env: map[string]string{
			"SIMPLETUNER_SLURM_PARTITION": "gpu", "SIMPLETUNER_SLURM_ACCOUNT": "lab",
			"SIMPLETUNER_SLURM_SBATCH_ARGS": " --time=1:00:00  --qos=high ", "SIMPLETUNER_SLURM_WORKER_URL": "http://login1:8001",
			"SIMPLETUNER_SLURM_WORKER_COMMAND": "/opt/st/simpletuner", "SIMPLETUNER_SLURM_POLL": "2s",
			"SIMPLETUNER_SLURM_ENV": "HF_HOME=/shared/hf, OMP_NUM_THREADS=8"},
			want: slurm.Config{Partition: "gpu", Account: "lab", SbatchArgs: []string{"--time=1:00:00", "--qos=high"},
				WorkerURL: "http://login1:8001", WorkerCommand: "/opt/st/simpletuner", Poll: 2 * time.Second,
				Env: []string{"HF_HOME=/shared/hf", "OMP_NUM_THREADS=8"}}},
		{name: "bad poll", env: map[string]string{"SIMPLETUNER_SLURM_POLL": "often"}, err: `SIMPLETUNER_SLURM_POLL="often"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SIMPLETUNER_HOME"] = "/srv/st"
			c, err := Defaults(func(k string) string { return tc.env[k] })
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(c.Slurm, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", c.Slurm, err, tc.want)
			}
		})
	}
}

func TestValidateSlurm(t *testing.T) {
	c, err := Defaults(func(k string) string {
		return map[string]string{"SIMPLETUNER_HOME": "/srv/st", "SIMPLETUNER_SLURM_PARTITION": "gpu"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "--slurm-partition needs --slurm-worker-url") {
		t.Fatalf("Validate = %v", err)
	}
	c.Slurm.WorkerURL = "http://login1:8001"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}
