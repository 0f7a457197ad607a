package main

import (
	"fmt"
	"io"
	"text/tabwriter"

	"simpletuner/client"
)

// workersGroup lists the workers subcommands: the administration of remote workers
// (/api/admin/workers, permission admin.workers).
func workersGroup() cmdGroup {
	return cmdGroup{name: "workers", cmds: []subCommand{
		{"list", "[flags]", "list the registered workers"},
		{"create", "NAME [flags]", "register a worker and print its token and connection command (shown once)"},
		{"drain", "ID", "let a worker finish its job and take no other"},
		{"delete", "ID [flags]", "remove a worker (--force: even while it runs a job)"},
		{"token", "ID", "give a worker a new token (the old one stops working) and print it (shown once)"},
	}}
}

func workersCmd(args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	return workersGroup().run(args, stdout, stderr, getenv, runWorkers)
}

// runWorkers runs one workers subcommand.
func runWorkers(x *groupCall) error {
	fs, c, ctx, stdout := x.fs, x.c, x.ctx, x.stdout
	switch x.name {
	case "list":
		asJSON := fs.Bool("json", false, "print the server's answer as it came")
		status := fs.String("status", "", "only workers in this `STATUS` (connecting, idle, busy, offline, draining)")
		if _, err := x.arg(""); err != nil {
			return err
		}
		list, raw, err := c.Workers(ctx, *status)
		if err != nil {
			return err
		}
		if *asJSON {
			_, err = fmt.Fprintln(stdout, string(raw))
			return err
		}
		return printWorkers(stdout, list)
	case "create":
		ephemeral := fs.Bool("ephemeral", false, "the worker runs one job and is removed (default: persistent)")
		labels := labelFlag{}
		fs.Var(labels, "label", "a label `KEY=VALUE` jobs select the worker by (e.g. gpu_type=a100-80gb); repeatable")
		name, err := x.arg("worker name")
		if err != nil {
			return err
		}
		tok, err := c.CreateWorker(ctx, name, *ephemeral, labels)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Worker %q created: %s\n", name, tok.WorkerID)
		printToken(stdout, tok)
	case "drain":
		id, err := x.arg("worker id")
		if err != nil {
			return err
		}
		if err := c.DrainWorker(ctx, id); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Worker %s is draining: it finishes its current job and takes no other.\n", id)
	case "delete":
		force := fs.Bool("force", false, "remove the worker even while it runs a job")
		id, err := x.arg("worker id")
		if err != nil {
			return err
		}
		if err := c.DeleteWorker(ctx, id, *force); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Worker %s deleted.\n", id)
	case "token":
		id, err := x.arg("worker id")
		if err != nil {
			return err
		}
		tok, err := c.RotateWorkerToken(ctx, id)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Worker %s has a new token; the old one no longer works.\n", tok.WorkerID)
		printToken(stdout, tok)
	}
	return nil
}

// printToken prints a worker's token and connection command, saying they are shown only
// this once: the server keeps a hash of the token, never the token.
func printToken(w io.Writer, tok *client.WorkerToken) {
	fmt.Fprintf(w, "Token: %s\n", tok.Token)
	fmt.Fprintf(w, "Connect the worker with:\n  %s\n", tok.ConnectionCommand)
	fmt.Fprintln(w, "The token is shown only once: store it now (the server cannot show it again; 'simpletuner workers token ID' makes a new one).")
}

// printWorkers prints the workers as a table; "-" stands for what a worker has not told.
func printWorkers(w io.Writer, list []client.Worker) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSTATUS\tGPU\tGPUS\tJOB\tLAST HEARTBEAT")
	orDash := func(s *string) string {
		if s == nil || *s == "" {
			return "-"
		}
		return *s
	}
	for _, wk := range list {
		gpuName, gpuCount := wk.GPU()
		if gpuName == "" {
			gpuName = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", wk.Name, wk.WorkerID, wk.Status, gpuName, gpuCount, orDash(wk.CurrentJobID), orDash(wk.LastHeartbeat))
	}
	return tw.Flush()
}
