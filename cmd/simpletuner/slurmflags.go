package main

import (
	"flag"

	"simpletuner/supervisor/daemon"
)

// addSlurmFlags adds the server's --slurm-* flags (issue 16). They override the
// SIMPLETUNER_SLURM_* variables; a repeatable flag given at least once replaces its
// variable's list rather than adding to it.
func addSlurmFlags(fs *flag.FlagSet, cfg *daemon.Config) {
	s := &cfg.Slurm
	fs.StringVar(&s.Partition, "slurm-partition", s.Partition, "submit target=slurm jobs to this Slurm partition (env SIMPLETUNER_SLURM_PARTITION); Slurm is configured when this or --slurm-worker-url is set")
	fs.StringVar(&s.Account, "slurm-account", s.Account, "Slurm account of the jobs (env SIMPLETUNER_SLURM_ACCOUNT)")
	fs.Func("slurm-sbatch-arg", "extra sbatch `ARG`, e.g. --time=24:00:00 (repeatable; env SIMPLETUNER_SLURM_SBATCH_ARGS, space-separated)", replacingList(&s.SbatchArgs))
	fs.StringVar(&s.WorkerURL, "slurm-worker-url", s.WorkerURL, "this server's `URL` as a Slurm job's worker reaches it, e.g. http://login1:8001 (env SIMPLETUNER_SLURM_WORKER_URL)")
	fs.StringVar(&s.WorkerCommand, "slurm-worker-command", s.WorkerCommand, "the simpletuner binary on the cluster's nodes (env SIMPLETUNER_SLURM_WORKER_COMMAND; default: this binary's path)")
	fs.DurationVar(&s.Poll, "slurm-poll", s.Poll, "how often squeue is asked about the jobs, one call for all (env SIMPLETUNER_SLURM_POLL; 0: 5s)")
	fs.Func("slurm-env", "`KEY=VALUE` exported into every Slurm job, which starts from the node's login environment (repeatable; env SIMPLETUNER_SLURM_ENV, comma-separated)", replacingList(&s.Env))
}

// replacingList is a repeatable flag's setter: the first use empties the list (filled
// from the environment), every use appends.
func replacingList(list *[]string) func(string) error {
	used := false
	return func(v string) error {
		if !used {
			*list, used = nil, true
		}
		*list = append(*list, v)
		return nil
	}
}
