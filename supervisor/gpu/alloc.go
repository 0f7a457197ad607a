package gpu

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DefaultLocalJobMaxConcurrent is SimpleTuner's default for local_job_max_concurrent.
const DefaultLocalJobMaxConcurrent = 1

// Request is what a job asks of the local allocator (docs/compatibility.md §11).
type Request struct {
	// NumProcesses is --num_processes: the number of GPUs wanted. Values below 1 mean 1.
	NumProcesses int
	// Preferred is --accelerate_visible_devices: GPU indexes ("0") or UUIDs ("GPU-…"),
	// see ParseDeviceList. It is ignored when AnyGPU is set, and dropped when it names
	// fewer devices than NumProcesses (SimpleTuner drops such incomplete lists too).
	Preferred []string
	// AnyGPU (--any-gpu) takes the lowest-index free GPUs whatever Preferred says.
	AnyGPU bool
	// NoWait (--no-wait) turns "queue" into "reject": the caller wants to start now or
	// not at all.
	NoWait bool
}

// Limits are the local concurrency limits of GET /api/queue/stats and
// POST /api/queue/concurrency (docs/compatibility.md §11).
type Limits struct {
	// MaxJobs is local_job_max_concurrent, counting CPU jobs too; 0 or less means
	// DefaultLocalJobMaxConcurrent.
	MaxJobs int
	// MaxGPUs is local_gpu_max_concurrent, the GPUs held by all local jobs together;
	// 0 or less means unlimited (the API's null).
	MaxGPUs int
}

// maxJobs applies the default.
func (l Limits) maxJobs() int {
	if l.MaxJobs <= 0 {
		return DefaultLocalJobMaxConcurrent
	}
	return l.MaxJobs
}

// Outcome is the kind of an allocation decision.
type Outcome int

// Outcomes of Decide.
const (
	// Start: run now on Decision.UUIDs.
	Start Outcome = iota + 1
	// StartCPU: run now on the CPU trainer, because the host has no GPUs at all.
	StartCPU
	// Queue: cannot start now; Decision.Reason is SimpleTuner's text. Something that
	// can change (a job ending, a limit raised, a GPU healthy again) may let it start.
	Queue
	// Reject: can never start on this host as asked (or NoWait was set and it would
	// have queued); refuse it at submission.
	Reject
)

// String returns "start", "cpu", "queue" or "reject".
func (o Outcome) String() string {
	switch o {
	case Start:
		return "start"
	case StartCPU:
		return "cpu"
	case Queue:
		return "queue"
	case Reject:
		return "reject"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// Decision is the allocator's answer.
type Decision struct {
	Outcome Outcome
	// UUIDs are the GPUs to use, in the order the trainer sees them (Start only).
	UUIDs []string
	// Indexes are the same GPUs' indexes, for the API's allocated_gpus (Start only).
	Indexes []int
	// Reason explains Queue and Reject in words a person can act on.
	Reason string
}

// Decide is the local GPU allocation decision (docs/compatibility.md §11), as a pure function.
//
// gpus is the inventory; held maps each running local job to the GPU UUIDs it holds
// (an empty list for a job on the CPU trainer: it still counts against MaxJobs).
// The rules, in order:
//
//  1. NumProcesses < 1 counts as 1.
//  2. A host with no GPUs runs a one-process job with no device preference (or with
//     AnyGPU) on the CPU trainer, subject to MaxJobs; asking it for more than one GPU,
//     or for specific devices, is rejected (it would otherwise queue forever).
//  3. Asking for more GPUs than the host has, or preferring a device it does not have,
//     is rejected.
//  4. Running jobs ≥ MaxJobs → queue "Maximum concurrent local jobs (N) reached".
//  5. MaxGPUs set and in-use + n > MaxGPUs → queue "Would exceed GPU limit (x > y)".
//  6. Fewer free healthy GPUs than n → queue "Insufficient GPUs available (a available,
//     n required)". Unhealthy GPUs are never free.
//  7. With a (complete) preference: the first n preferred GPUs that are free, else queue
//     "Preferred GPUs [..] not fully available (only [..] available, need n)".
//  8. Otherwise the n lowest-index free GPUs.
//
// NoWait turns every queue outcome into a reject with the same reason.
func Decide(req Request, gpus []GPU, held map[string][]string, lim Limits) Decision {
	d := decide(req, gpus, held, lim)
	if d.Outcome == Queue && req.NoWait {
		d.Outcome = Reject
	}
	return d
}

func decide(req Request, gpus []GPU, held map[string][]string, lim Limits) Decision {
	n := max(req.NumProcesses, 1)
	var preferred []string
	if !req.AnyGPU {
		preferred = dedupe(req.Preferred)
	}

	if len(gpus) == 0 {
		switch {
		case n > 1:
			return reject("num_processes=%d needs %d GPUs but this host has none; set num_processes=1 to train on the CPU", n, n)
		case len(preferred) > 0:
			return reject("accelerate_visible_devices asks for GPU %s but this host has none; remove it (or pass any_gpu) to train on the CPU", strings.Join(preferred, ","))
		case len(held) >= lim.maxJobs():
			return queue("Maximum concurrent local jobs (%d) reached", lim.maxJobs())
		}
		return Decision{Outcome: StartCPU}
	}
	if n > len(gpus) {
		return reject("num_processes=%d needs %d GPUs but this host has only %d", n, n, len(gpus))
	}
	if len(preferred) < n {
		preferred = nil // an incomplete preference list is dropped, as SimpleTuner does
	}
	pref := make([]*GPU, 0, len(preferred))
	for _, id := range preferred {
		g := lookup(gpus, id)
		if g == nil {
			return reject("accelerate_visible_devices names GPU %q, which this host does not have (it has %s)", id, describeIDs(gpus))
		}
		if !slices.Contains(pref, g) {
			pref = append(pref, g)
		}
	}
	if len(preferred) > 0 && len(pref) < n {
		// Distinct spellings of the same device ("0" and its UUID) collapsed.
		return reject("accelerate_visible_devices names %d distinct GPUs but num_processes=%d", len(pref), n)
	}

	if len(held) >= lim.maxJobs() {
		return queue("Maximum concurrent local jobs (%d) reached", lim.maxJobs())
	}
	inUse := heldSet(held)
	if lim.MaxGPUs > 0 && len(inUse)+n > lim.MaxGPUs {
		return queue("Would exceed GPU limit (%d > %d)", len(inUse)+n, lim.MaxGPUs)
	}
	free := func(g *GPU) bool { return g.Healthy && g.UUID != "" && !inUse[g.UUID] }
	var available []*GPU
	for i := range gpus {
		if free(&gpus[i]) {
			available = append(available, &gpus[i])
		}
	}
	if len(available) < n {
		return queue("Insufficient GPUs available (%d available, %d required)", len(available), n)
	}

	var pick []*GPU
	if len(pref) > 0 {
		for _, g := range pref {
			if free(g) && len(pick) < n {
				pick = append(pick, g)
			}
		}
		if len(pick) < n {
			return queue("Preferred GPUs %s not fully available (only %s available, need %d)", indexList(pref), indexList(pick), n)
		}
	} else {
		slices.SortStableFunc(available, func(a, b *GPU) int { return a.Index - b.Index })
		pick = available[:n]
	}
	d := Decision{Outcome: Start}
	for _, g := range pick {
		d.UUIDs = append(d.UUIDs, g.UUID)
		d.Indexes = append(d.Indexes, g.Index)
	}
	return d
}

func reject(format string, args ...any) Decision {
	return Decision{Outcome: Reject, Reason: fmt.Sprintf(format, args...)}
}

func queue(format string, args ...any) Decision {
	return Decision{Outcome: Queue, Reason: fmt.Sprintf(format, args...)}
}

// lookup finds a GPU by index ("3") or UUID ("GPU-…", compared case-insensitively).
func lookup(gpus []GPU, id string) *GPU {
	if i, err := strconv.Atoi(id); err == nil {
		for k := range gpus {
			if gpus[k].Index == i {
				return &gpus[k]
			}
		}
		return nil
	}
	for k := range gpus {
		if gpus[k].UUID != "" && strings.EqualFold(gpus[k].UUID, id) {
			return &gpus[k]
		}
	}
	return nil
}

// heldSet is the union of the UUIDs all jobs hold.
func heldSet(held map[string][]string) map[string]bool {
	s := make(map[string]bool)
	for _, uuids := range held {
		for _, u := range uuids {
			s[u] = true
		}
	}
	return s
}

// indexList formats GPUs the way SimpleTuner's messages print a Python list: "[0, 1]".
func indexList(gpus []*GPU) string {
	parts := make([]string, len(gpus))
	for i, g := range gpus {
		parts[i] = strconv.Itoa(g.Index)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// describeIDs lists the indexes a host has, for a rejection message.
func describeIDs(gpus []GPU) string {
	parts := make([]string, len(gpus))
	for i, g := range gpus {
		parts[i] = strconv.Itoa(g.Index)
	}
	return "GPUs " + strings.Join(parts, ", ")
}

// dedupe drops repeated ids, keeping the first occurrence's place.
func dedupe(ids []string) []string {
	var out []string
	for _, id := range ids {
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

// ParseDeviceList parses accelerate_visible_devices as SimpleTuner accepts it in a
// string: comma-separated GPU indexes or UUIDs, with spaces and empty items ignored
// ("0, 1", "GPU-5b3…,GPU-9c1…"). An item that is neither a non-negative integer nor a
// GPU/MIG UUID is an ErrInvalid error.
func ParseDeviceList(s string) ([]string, error) {
	var ids []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if i, err := strconv.Atoi(item); err == nil && i >= 0 {
			ids = append(ids, strconv.Itoa(i))
			continue
		}
		if hasUUIDPrefix(item) {
			ids = append(ids, item)
			continue
		}
		return nil, invalidf("accelerate_visible_devices: %q is neither a GPU index nor a GPU UUID", item)
	}
	return ids, nil
}

// hasUUIDPrefix reports whether s looks like an NVML device UUID.
func hasUUIDPrefix(s string) bool {
	u := strings.ToUpper(s)
	return (strings.HasPrefix(u, "GPU-") || strings.HasPrefix(u, "MIG-")) && len(s) > 4
}
