package runner

import (
	"fmt"
	"strings"

	"simpletuner/internal/sysmem"
	"simpletuner/plugins"
	"simpletuner/trainerproc/data"
	"simpletuner/trainerproc/engine"
	"simpletuner/trainerproc/family"
	"simpletuner/trainerproc/family/footprint"
	"simpletuner/trainerproc/optim"
	"simpletuner/trainerproc/validation"
)

// capacity is the memory a job can have on this trainer's backend.
type capacity struct {
	// device is the memory tensors live in and what it is called in messages ("GPU 0
	// (NVIDIA H100 80GB HBM3)"); zero when the backend keeps tensors in host memory.
	device     int64
	deviceName string
	// host is host memory (the optimizer state lives there on every backend).
	host sysmem.Host
}

// readCapacity asks the backend for its device memory (engine.MemoryReporter) and the
// kernel for host memory, the cgroup's limit included (sysmem.Host.Capacity).
func readCapacity(be engine.Backend, mem sysmem.FS) (capacity, error) {
	var c capacity
	if r, ok := be.(engine.MemoryReporter); ok {
		c.device, c.deviceName = r.DeviceMemory()
	}
	h, err := mem.ReadHost(0)
	if err != nil {
		return c, fmt.Errorf("read host memory: %w", err)
	}
	c.host = h
	return c, nil
}

// need is the largest estimate of a job with what decided it.
type need struct {
	mem    family.Memory
	option string // the option to lower
	lower  string // how to say so: "lower --resolution"
	what   string // `training on dataset "x" (resolution 1024 pixel_area) at 1024x1024, batch 1`
	// fit, when set, returns whether the job would fit with this square edge instead (to
	// say how far to lower it); nil when the need does not scale with the edge.
	fit func(edge int) bool
	// edge is the configured edge fit starts from.
	edge int
}

// memoryIssue estimates the job's peak memory (the plan's TrainingMemory for the largest
// batch of every image dataset, its SamplingMemory for every validation image)
// and returns an error issue when it exceeds what the machine has, naming both and what to
// lower; nil when the job fits.
func memoryIssue(s *Settings, p family.Plan, dcfg *data.Config, be engine.Backend, mem sysmem.FS) (*plugins.Issue, error) {
	capa, err := readCapacity(be, mem)
	if err != nil {
		return nil, err
	}
	ws, _ := be.(engine.Workspacer)
	slots, err := optim.StateSlots(s.Optimizer, s.OptimizerOverrides)
	if err != nil {
		slots = 2 // the optimizer is refused elsewhere; size as AdamW meanwhile
	}
	var adapters *family.AdapterConfig
	if s.ModelType == "lora" {
		ac := s.Adapters
		adapters = &ac
	}
	fits := func(m family.Memory) bool {
		if capa.device > 0 {
			return m.Device() <= capa.device && m.Host() <= capa.host.Capacity()
		}
		return m.Total() <= capa.host.Capacity()
	}
	size := func(m family.Memory) int64 {
		if capa.device > 0 {
			return m.Device()
		}
		return m.Total()
	}
	var worst *need
	consider := func(n need) {
		if worst == nil || size(n.mem) > size(worst.mem) {
			worst = &n
		}
	}
	train := func(bp data.BatchPlan, w, h int) (family.Memory, error) {
		return p.TrainingMemory(family.TrainShape{Batch: bp.Batch, Width: w, Height: h, Cond: bp.Cond,
			Adapters: adapters, OptimizerSlots: slots, Accumulation: s.Accum}, ws)
	}
	plans := data.BatchPlans(dcfg, s.BatchSize, p.Align())
	for _, bp := range plans {
		m, err := train(bp, bp.W, bp.H)
		if err != nil {
			return nil, err
		}
		opt, lower := "--data_backend_config", fmt.Sprintf("lower the resolution of dataset %q in the dataloader (--data_backend_config)", bp.DatasetID)
		if bp.FromOptions {
			opt, lower = "--resolution", "lower --resolution"
		}
		bp := bp
		consider(need{mem: m, option: opt, lower: lower, edge: max(bp.W, bp.H),
			what: fmt.Sprintf("training on dataset %q (resolution %g %s) at %dx%d, batch %d", bp.DatasetID, bp.Resolution, bp.ResolutionType, bp.W, bp.H, bp.Batch),
			fit: func(edge int) bool {
				w, h := scaleEdge(bp.W, bp.H, edge, p.Align())
				m, err := train(bp, w, h)
				return err == nil && fits(m)
			}})
	}
	if s.HasValidation() && s.ValidationMethod != "external-script" {
		bsz := 1
		if s.ValidationGuidance > 1 {
			bsz = 2 // both guidance branches run as one batch
		}
		var res []validation.Resolution
		opt := "--validation_resolution"
		if s.ValidationResolution != "" {
			res, _ = validation.ParseResolutions(s.ValidationResolution, p.Align())
		} else {
			opt = "--resolution" // validation samples at the training size
			for _, bp := range plans {
				res = append(res, validation.Resolution{W: bp.W, H: bp.H})
			}
		}
		trainable, err := p.TrainableParams(adapters)
		if err != nil {
			return nil, err
		}
		sample := func(w, h int) (family.Memory, error) {
			m, err := p.SamplingMemory(family.SampleShape{Width: w, Height: h, Batch: bsz, Adapters: adapters}, ws)
			// Validation runs inside the job: the optimizer state is held meanwhile.
			m.Optimizer = trainable * int64(slots) * 4
			return m, err
		}
		for _, r := range res {
			m, err := sample(r.W, r.H)
			if err != nil {
				return nil, err
			}
			r := r
			consider(need{mem: m, option: opt, lower: "lower " + opt, edge: max(r.W, r.H),
				what: fmt.Sprintf("validation images at %dx%d (batch %d with guidance)", r.W, r.H, bsz),
				fit: func(edge int) bool {
					w, h := scaleEdge(r.W, r.H, edge, p.Align())
					m, err := sample(w, h)
					return err == nil && fits(m)
				}})
		}
	}
	// The encoders run before the model is built and are freed first: each encode phase
	// is a need of its own, not part of training's.
	for _, n := range encodeNeeds(s, p, dcfg, plans, engine.New(be), capa.device > 0, fits) {
		consider(n)
	}
	if worst == nil || fits(worst.mem) {
		return nil, nil
	}
	return &plugins.Issue{Option: worst.option, Severity: "error", Message: describeNeed(*worst, capa, p, s)}, nil
}

// scaleEdge scales a w×h bucket so its longer edge is edge, aligned to align.
func scaleEdge(w, h, edge, align int) (int, int) {
	long := max(w, h)
	sw := max(align, w*edge/long/align*align)
	sh := max(align, h*edge/long/align*align)
	return sw, sh
}

// describeNeed is the refusal: what the job needs and why, what the machine has, what to
// lower and how far.
func describeNeed(n need, c capacity, p family.Plan, s *Settings) string {
	var b strings.Builder
	total := n.mem.Total()
	if c.device > 0 {
		total = n.mem.Device()
	}
	fmt.Fprintf(&b, "this job needs about %s of memory for %s on %s (%s), ", footprint.FormatBytes(total), n.what, p.Name(), n.mem)
	switch {
	case c.device > 0 && n.mem.Device() > c.device:
		fmt.Fprintf(&b, "but %s has %s", c.deviceName, footprint.FormatBytes(c.device))
	case c.device > 0:
		fmt.Fprintf(&b, "and %s of it in host memory, but the machine has %s", footprint.FormatBytes(n.mem.Host()), c.host)
	default:
		fmt.Fprintf(&b, "but the machine has %s", c.host)
	}
	fmt.Fprintf(&b, "; %s", n.lower)
	if n.fit == nil { // nothing to scale down (the text encoder's batch)
		b.WriteString(".")
		return b.String()
	}
	// How far to lower: the largest edge that fits, found by halving then stepping.
	best := 0
	for e := n.edge; e >= p.Align(); e /= 2 {
		if n.fit(e) {
			best = e
			break
		}
	}
	if best > 0 {
		for e := best + p.Align(); e < n.edge && e <= 2*best; e += p.Align() {
			if !n.fit(e) {
				break
			}
			best = e
		}
	}
	if best > 0 {
		fmt.Fprintf(&b, " (up to about %d px on the longer edge fits; the model's own sample size is %d px)", best, p.SampleSize())
	} else {
		fmt.Fprintf(&b, " (even %d px does not fit)", p.Align())
	}
	if strings.HasPrefix(n.what, "training") {
		if s.BatchSize > 1 {
			b.WriteString(", --train_batch_size")
		}
		if s.ModelType != "lora" && n.mem.Gradients+n.mem.Optimizer > total/4 {
			b.WriteString(", or train adapters (--model_type=lora)")
		}
	}
	b.WriteString(".")
	if n.mem.Workspace > total/2 {
		b.WriteString(" Most of it is attention scratch (the scores of one head: tokens² values), which grows with the fourth power of the edge.")
	}
	if strings.HasPrefix(n.what, "training") {
		cp, _ := p.(family.CheckpointingPlan)
		switch supported := cp != nil && cp.SupportsGradientCheckpointing(); {
		case s.GradientCheckpointing && !supported:
			fmt.Fprintf(&b, " --gradient_checkpointing is not implemented by %s and does not lower it.", p.Name())
		case !s.GradientCheckpointing && supported:
			b.WriteString(" --gradient_checkpointing would lower it (the blocks' activations are recomputed in the backward pass).")
		}
	}
	return b.String()
}
