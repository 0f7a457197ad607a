package daemon

import (
	"fmt"
	"strings"
	"time"

	"simpletuner/supervisor/slurm"
)

// slurmFromEnv reads the Slurm executor's settings from SIMPLETUNER_SLURM_PARTITION,
// _ACCOUNT, _SBATCH_ARGS (whitespace-separated), _WORKER_URL, _WORKER_COMMAND, _POLL (a
// duration) and _ENV (comma-separated KEY=VALUE); the --slurm-* flags override them.
// Slurm is configured when a partition or a worker URL is set (slurm.Config.Configured).
func slurmFromEnv(getenv func(string) string) (slurm.Config, error) {
	c := slurm.Config{
		Partition:     getenv("SIMPLETUNER_SLURM_PARTITION"),
		Account:       getenv("SIMPLETUNER_SLURM_ACCOUNT"),
		WorkerURL:     getenv("SIMPLETUNER_SLURM_WORKER_URL"),
		WorkerCommand: getenv("SIMPLETUNER_SLURM_WORKER_COMMAND"),
	}
	if args := strings.Fields(getenv("SIMPLETUNER_SLURM_SBATCH_ARGS")); len(args) > 0 {
		c.SbatchArgs = args
	}
	if v := getenv("SIMPLETUNER_SLURM_POLL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return c, fmt.Errorf("SIMPLETUNER_SLURM_POLL=%q: want a positive duration such as 5s", v)
		}
		c.Poll = d
	}
	for _, kv := range strings.Split(getenv("SIMPLETUNER_SLURM_ENV"), ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			c.Env = append(c.Env, kv)
		}
	}
	return c, nil
}
