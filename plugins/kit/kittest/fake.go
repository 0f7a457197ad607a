// Package kittest provides a fake trainer Runner for tests of the daemon and of the kit:
// it "trains" by sleeping per step, emits the same events a real trainer does, obeys
// commands, and can be told to crash, hang, fail or ignore SIGTERM. Tests re-execute their
// own binary with Env set and call kit.Main(FromEnv()) to get a real trainer process.
package kittest

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/plugins/kit"
)

// Environment variables that configure the fake (all optional).
const (
	EnvSteps      = "FAKE_TRAINER_STEPS"       // total steps (default 20)
	EnvStepMS     = "FAKE_TRAINER_STEP_MS"     // milliseconds per step (default 20)
	EnvFailAt     = "FAKE_TRAINER_FAIL_AT"     // step at which Run returns an error
	EnvCrashAt    = "FAKE_TRAINER_CRASH_AT"    // step at which the process kills itself (SIGKILL)
	EnvIgnoreTerm = "FAKE_TRAINER_IGNORE_TERM" // "1": ignore SIGTERM
	EnvInitMS     = "FAKE_TRAINER_INIT_MS"     // simulated start-up before the first step
	EnvHangAt     = "FAKE_TRAINER_HANG_AT"     // step at which the loop hangs, alive and silent
	EnvChildren   = "FAKE_TRAINER_CHILDREN"    // number of `sleep` children to leave in the process group
	// EnvStderr is written to the process's stderr, one line per "|"-separated part, when
	// the job starts (crash reports quote the end of a trainer's stderr).
	EnvStderr = "FAKE_TRAINER_STDERR"
	// EnvPanicAt is the step at which a goroutine panics: the process dies (exit status 2)
	// with the panic on stderr and no exit record, as a crash outside the run loop does.
	EnvPanicAt = "FAKE_TRAINER_PANIC_AT"
	// EnvBurst is a number of extra training.progress events emitted before the first
	// step, as fast as possible or at EnvEventRate per second; each carries its emit time
	// (data.emit_unix_ns) and index (data.burst). A notification titled "emit stats"
	// follows with the slowest Emit call (data.max_emit_us, data.p99_emit_us).
	EnvBurst     = "FAKE_TRAINER_BURST"
	EnvEventRate = "FAKE_TRAINER_EVENT_RATE" // events per second of the burst (0: unpaced)
	// EnvFamilies are model families the fake reports in Info besides the built-in ones
	// (options.DefaultFamilies): "name:flavour,flavour;name", the first flavour being the
	// default.
	EnvFamilies = "FAKE_TRAINER_FAMILIES"
	// EnvMessage is emitted once as the title and message of a notification and written
	// verbatim to trainer.log (injection and secret tests).
	EnvMessage = "FAKE_TRAINER_MESSAGE"
	// EnvCheckpointEvery saves a checkpoint folder (checkpoint-<step> with its guard file)
	// under the job's --output_dir every that many steps and emits training.checkpoint;
	// with --resume_from_checkpoint latest a run continues after the newest complete one
	// it finds there and says so in a lifecycle.stage event (data.resumed_from_step), as a
	// retried job resumes (docs/architecture.md §8).
	EnvCheckpointEvery = "FAKE_TRAINER_CHECKPOINT_EVERY"
)

// Fake is a configurable fake Runner.
type Fake struct {
	Steps, StepMS, FailAt, CrashAt, InitMS, HangAt, Children int
	Burst, EventRate, PanicAt                                int
	Message, Stderr                                          string
	// CheckpointEvery saves a checkpoint every that many steps (0: never).
	CheckpointEvery int
	// Families are reported by Info after the built-in ones.
	Families []plugins.Family
}

// FromEnv builds a Fake from the environment.
func FromEnv() *Fake {
	f := &Fake{Steps: 20, StepMS: 20, FailAt: -1, CrashAt: -1, HangAt: -1, PanicAt: -1}
	geti := func(k string, dst *int) {
		if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
			*dst = v
		}
	}
	geti(EnvSteps, &f.Steps)
	geti(EnvStepMS, &f.StepMS)
	geti(EnvFailAt, &f.FailAt)
	geti(EnvCrashAt, &f.CrashAt)
	geti(EnvInitMS, &f.InitMS)
	geti(EnvHangAt, &f.HangAt)
	geti(EnvChildren, &f.Children)
	geti(EnvBurst, &f.Burst)
	geti(EnvEventRate, &f.EventRate)
	geti(EnvPanicAt, &f.PanicAt)
	geti(EnvCheckpointEvery, &f.CheckpointEvery)
	f.Message = os.Getenv(EnvMessage)
	f.Stderr = os.Getenv(EnvStderr)
	f.Families = ParseFamilies(os.Getenv(EnvFamilies))
	if os.Getenv(EnvIgnoreTerm) == "1" {
		signalIgnoreTerm()
	}
	return f
}

// ParseFamilies reads EnvFamilies' format: "name:flavour,flavour;name".
func ParseFamilies(v string) []plugins.Family {
	var out []plugins.Family
	for _, part := range strings.Split(v, ";") {
		name, flavours, _ := strings.Cut(strings.TrimSpace(part), ":")
		if name == "" {
			continue
		}
		fam := plugins.Family{Name: name}
		if flavours != "" {
			fam.Flavours = strings.Split(flavours, ",")
			fam.DefaultFlavour = fam.Flavours[0]
		}
		out = append(out, fam)
	}
	return out
}

// Info implements kit.Runner: the built-in families (what the real trainers report) and
// f.Families.
func (f *Fake) Info(context.Context) (plugins.Info, error) {
	var fams []plugins.Family
	for _, b := range options.DefaultFamilies() {
		fams = append(fams, plugins.Family{Name: b.Name, Flavours: b.Flavours, DefaultFlavour: b.DefaultFlavour,
			MinResolution: b.MinResolution, DefaultResolution: b.DefaultResolution})
	}
	return plugins.Info{Version: "fake", Backend: "cpu", Devices: []string{"fake cpu"}, Families: append(fams, f.Families...)}, nil
}

// Validate implements kit.Runner: it rejects a config whose --learning_rate is negative.
func (f *Fake) Validate(_ context.Context, cfg json.RawMessage) ([]plugins.Issue, error) {
	var m map[string]any
	if err := json.Unmarshal(cfg, &m); err != nil {
		return nil, fmt.Errorf("%w: %w", plugins.ErrInvalidConfig, err)
	}
	if lr, ok := m["--learning_rate"].(float64); ok && lr < 0 {
		return []plugins.Issue{{Option: "--learning_rate", Severity: "error", Message: "learning rate must be positive"}}, nil
	}
	return nil, nil
}

// burst emits f.Burst progress events, paced at f.EventRate per second when set, and
// reports how long the slowest Emit call took.
func (f *Fake) burst(job *kit.Job) {
	lat := make([]time.Duration, 0, f.Burst)
	start := time.Now()
	for i := 1; i <= f.Burst; i++ {
		if f.EventRate > 0 {
			if d := time.Until(start.Add(time.Duration(i-1) * time.Second / time.Duration(f.EventRate))); d > 0 {
				time.Sleep(d)
			}
		}
		t := time.Now()
		job.Emit(plugins.EventTrainingProgress, "info", "", "", map[string]any{"step": 0, "total_steps": f.Steps, "burst": i, "emit_unix_ns": t.UnixNano()})
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	job.Emit(plugins.EventNotification, "info", "emit stats", fmt.Sprintf("%d events in %v", f.Burst, time.Since(start)), map[string]any{
		"events": f.Burst, "seconds": time.Since(start).Seconds(),
		"max_emit_us": lat[len(lat)-1].Microseconds(), "p99_emit_us": lat[len(lat)*99/100].Microseconds()})
}

// Run implements kit.Runner.
func (f *Fake) Run(ctx context.Context, job *kit.Job) error {
	job.Emit(plugins.EventLifecycleStage, "info", "Loading", "", map[string]any{"stage": "init", "status": "running"})
	time.Sleep(time.Duration(f.InitMS) * time.Millisecond)
	var kids []int
	for range f.Children {
		// Like dataloader workers: children in the trainer's process group that do not
		// exit by themselves.
		c := exec.Command("/bin/sleep", "600") // the trainer has no PATH in its scrubbed environment
		if err := c.Start(); err == nil {
			kids = append(kids, c.Process.Pid)
		}
	}
	if f.Stderr != "" {
		// File descriptor 2 itself, where the Go runtime and C libraries write (the plugin
		// server points os.Stderr at its stdio stream instead).
		fd2 := os.NewFile(2, "stderr")
		for _, line := range strings.Split(f.Stderr, "|") {
			fmt.Fprintln(fd2, line)
		}
	}
	job.SetRunning()
	job.Emit(plugins.EventTrainingStatus, "info", "Training started", "", map[string]any{"status": "running",
		"cuda_visible_devices": os.Getenv("CUDA_VISIBLE_DEVICES"), "cuda_device_order": os.Getenv("CUDA_DEVICE_ORDER"), "pid": os.Getpid(), "children": kids})
	if f.Message != "" {
		job.Emit(plugins.EventNotification, "info", f.Message, f.Message, map[string]any{"note": f.Message})
		if lf, err := os.OpenFile(filepath.Join(job.Dir, plugins.LogFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			fmt.Fprintln(lf, f.Message)
			lf.Close()
		}
	}
	if f.Burst > 0 {
		f.burst(job)
	}
	outDir, resume := outputSettings(job.Config)
	first := 1
	if resume == "latest" && outDir != "" {
		if last := latestCheckpoint(outDir); last > 0 {
			first = last + 1
			job.Emit(plugins.EventLifecycleStage, "info", "Resumed", plugins.CheckpointName(last, false), map[string]any{"stage": "resume", "status": "completed", "resumed_from_step": last})
		}
	}
	for step := first; step <= f.Steps; step++ {
		time.Sleep(time.Duration(f.StepMS) * time.Millisecond)
		if step == f.CrashAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
		if step == f.PanicAt {
			go panic(fmt.Sprintf("simulated panic at step %d", step))
			select {} // the panicking goroutine takes the process down
		}
		if step == f.HangAt {
			select {} // a deadlocked trainer: alive, silent
		}
		if step == f.FailAt {
			return errors.New("simulated failure")
		}
		p := plugins.Progress{Step: int64(step), TotalSteps: int64(f.Steps), Epoch: 1, TotalEpochs: 1, Loss: 1 / float64(step), LearningRate: 1e-4}
		job.SetProgress(p)
		job.Log.Info("fake step done", "step", step)
		job.Emit(plugins.EventTrainingProgress, "info", "", "", p)
		if f.CheckpointEvery > 0 && step%f.CheckpointEvery == 0 && outDir != "" {
			if err := saveCheckpoint(outDir, step); err != nil {
				return err
			}
			job.Emit(plugins.EventTrainingCheckpoint, "info", "Checkpoint saved", "", plugins.CheckpointData{Step: int64(step), Path: plugins.CheckpointName(step, false)})
		}
		for {
			select {
			case c := <-job.Commands():
				switch c {
				case plugins.CommandCheckpoint:
					job.Emit(plugins.EventTrainingCheckpoint, "info", "Checkpoint saved", "", plugins.CheckpointData{Step: int64(step), Path: plugins.CheckpointName(step, false)})
				case plugins.CommandValidation:
					job.Emit(plugins.EventTrainingValidation, "info", "Validation ran", "", map[string]any{"step": step,
						"validation_type": "validation", "images": []map[string]string{validationImage(step)}})
				case plugins.CommandStop:
					job.Emit(plugins.EventTrainingCheckpoint, "info", "Checkpoint saved", "", plugins.CheckpointData{Step: int64(step), Path: plugins.CheckpointName(step, false)})
					return kit.ErrStopped
				case plugins.CommandCancel:
					return kit.ErrCancelled
				}
				continue
			case <-ctx.Done():
				return ctx.Err()
			default:
			}
			break
		}
	}
	return nil
}

// outputSettings reads --output_dir and --resume_from_checkpoint from a job's config.
func outputSettings(cfg json.RawMessage) (outDir, resume string) {
	var m map[string]any
	_ = json.Unmarshal(cfg, &m)
	outDir, _ = m["--output_dir"].(string)
	resume, _ = m["--resume_from_checkpoint"].(string)
	return outDir, resume
}

// latestCheckpoint is the step of the newest complete checkpoint (guard file present)
// under dir, 0 when there is none.
func latestCheckpoint(dir string) int {
	ents, _ := os.ReadDir(dir)
	last := 0
	for _, e := range ents {
		step, _, ok := plugins.ParseCheckpointName(e.Name())
		if !ok || step <= last {
			continue
		}
		if _, err := os.Stat(filepath.Join(dir, e.Name(), plugins.CheckpointGuardFile)); err == nil {
			last = step
		}
	}
	return last
}

// saveCheckpoint writes checkpoint-<step> under dir: the training state, then the guard
// file that marks it complete.
func saveCheckpoint(dir string, step int) error {
	cp := filepath.Join(dir, plugins.CheckpointName(step, false))
	if err := os.MkdirAll(cp, 0o755); err != nil {
		return fmt.Errorf("fake trainer: checkpoint: %w", err)
	}
	state := fmt.Sprintf(`{"global_step": %d, "epoch": 1, "learning_rate": 0.0001}`, step)
	if err := os.WriteFile(filepath.Join(cp, plugins.CheckpointStateFile), []byte(state), 0o644); err != nil {
		return fmt.Errorf("fake trainer: checkpoint: %w", err)
	}
	if err := os.WriteFile(filepath.Join(cp, plugins.CheckpointGuardFile), nil, 0o644); err != nil {
		return fmt.Errorf("fake trainer: checkpoint: %w", err)
	}
	return nil
}

// validationImage is a 32×32 PNG whose colour follows the step, as a data-URI asset: what a
// real trainer's validation event carries (docs/compatibility.md §7), so clients that show
// validation images (the status page) have one to show.
func validationImage(step int) map[string]string {
	img := image.NewRGBA(image.Rect(0, 0, 32, 32))
	for y := range 32 {
		for x := range 32 {
			img.Set(x, y, color.RGBA{R: uint8(step * 37), G: uint8(x * 8), B: uint8(y * 8), A: 255})
		}
	}
	var b bytes.Buffer
	_ = png.Encode(&b, img) // writing to memory cannot fail
	return map[string]string{"src": "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes()), "mime_type": "image/png"}
}
