package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"simpletuner/plugins/kit/kittest"
)

// validateForm posts fields to /api/training/validate and decodes the JSON answer.
func validateForm(t *testing.T, c *http.Client, base string, fields [][2]string) validationAnswer {
	t.Helper()
	code, body := form(t, c, base+"/api/training/validate", fields, "application/json")
	var v validationAnswer
	if code != 200 || json.Unmarshal([]byte(body), &v) != nil {
		t.Fatalf("validate: %d %s", code, body)
	}
	return v
}

// TestDaemonValidatesTheFamiliesItsTrainerReports: the daemon asks its trainer for its
// model families at start-up, so a family only the trainer reports validates (and
// starts), and an unknown one is refused with the trainer's list.
func TestDaemonValidatesTheFamiliesItsTrainerReports(t *testing.T) {
	home := t.TempDir()
	args := append(fakeTrainerArgs(2, 5), "--trainer-env", kittest.EnvFamilies+"=pixart_sigma:900M-1024-v0.6,600M-512")
	d := start(t, home, args...)
	c := adminClient(t, d)
	fields := withField(withField(fastPathFields(t, home), "--model_family", "pixart_sigma"), "--model_flavour", "600M-512")
	validate := func(fields [][2]string) validationAnswer { t.Helper(); return validateForm(t, c, d.base, fields) }
	if v := validate(fields); !v.Valid {
		t.Fatalf("pixart_sigma, which the trainer reports, is refused: %+v", v.Errors)
	}
	for _, tc := range []struct{ field, value, want string }{
		{"--model_family", "sdxl", "Unknown model family: sdxl (known: dit, pixart_sigma)"},
		{"--model_flavour", "900M-512", "900M-512"},
	} {
		v := validate(withField(fields, tc.field, tc.value))
		if v.Valid || len(v.Errors) == 0 || v.Errors[0].Option != tc.field || !strings.Contains(v.Errors[0].Message, tc.want) {
			t.Fatalf("%s=%s: valid=%v %+v, want an error %q", tc.field, tc.value, v.Valid, v.Errors, tc.want)
		}
	}
	code, body := form(t, c, d.base+"/api/training/start", fields, "application/json")
	if code != 200 {
		t.Fatalf("start pixart_sigma: %d %s", code, body)
	}
	var started struct {
		JobID string `json:"job_id"`
	}
	if json.Unmarshal([]byte(body), &started) != nil || started.JobID == "" {
		t.Fatalf("start answer %s", body)
	}
	waitJob(t, c, d.base, started.JobID, time.Minute, "completed")
}

// TestDaemonFallsBackWhenItsTrainerCannotBeAsked: with no trainer to ask the daemon still
// starts, says why in its log, and validates with the built-in family list.
func TestDaemonFallsBackWhenItsTrainerCannotBeAsked(t *testing.T) {
	home := t.TempDir()
	missing := filepath.Join(home, "no-such-trainer")
	d := start(t, home, "--trainer", missing)
	c := adminClient(t, d)
	if log := d.stderr.String(); !strings.Contains(log, "could not ask the trainer which model families it trains") || !strings.Contains(log, missing) {
		t.Fatalf("no warning naming the trainer in the log:\n%s", log)
	}
	fields := fastPathFields(t, home)
	if v := validateForm(t, c, d.base, fields); !v.Valid {
		t.Fatalf("dit with the fallback list: %+v", v.Errors)
	}
	v := validateForm(t, c, d.base, withField(fields, "--model_family", "pixart_sigma"))
	if v.Valid || len(v.Errors) == 0 || v.Errors[0].Message != "Unknown model family: pixart_sigma (known: dit)" {
		t.Fatalf("pixart_sigma with the fallback list: valid=%v %+v", v.Valid, v.Errors)
	}
}

// TestTrainAsksItsTrainerForFamilies: simpletuner train validates an environment against
// the families its trainer reports, so a family only that trainer trains runs, and a
// trainer that cannot be asked leaves the built-in list, with a warning on stderr.
func TestTrainAsksItsTrainerForFamilies(t *testing.T) {
	home := t.TempDir()
	cdir := writeEnv(t, home, "demo")
	env := homeEnv(home, cdir)
	args := []string{"train", "--env", "demo", "--trainer", os.Args[0], "--trainer-env", asTrainer + "=1",
		"--trainer-env", kittest.EnvFamilies + "=pixart_sigma:900M-1024-v0.6", "--trainer-env", kittest.EnvSteps + "=2",
		"--trainer-env", kittest.EnvStepMS + "=1", "--model_family=pixart_sigma", "--model_flavour=900M-1024-v0.6"}
	var out, errb bytes.Buffer
	if code := run(args, &out, &errb, env); code != 0 || !strings.Contains(out.String(), "completed") {
		t.Fatalf("pixart_sigma from its trainer: exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	out.Reset()
	missing := filepath.Join(home, "no-such-trainer")
	args[4] = missing
	if code := run(args, &out, &errb, env); code != 1 || !strings.Contains(errb.String(), "could not ask the trainer") ||
		!strings.Contains(errb.String(), "Unknown model family: pixart_sigma (known: dit)") {
		t.Fatalf("without a trainer: exit %d\nstderr: %s", code, errb.String())
	}
}
