package plugins

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	trainerpb "simpletuner/plugins/proto"
)

// grpcClient is the daemon's view of a trainer: every call crosses the plugin socket and
// every error comes back as one of the contract's sentinels.
type grpcClient struct {
	c trainerpb.TrainerClient
}

var _ Trainer = (*grpcClient)(nil)

func (c *grpcClient) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &trainerpb.InfoRequest{})
	if err != nil {
		return Info{}, fromStatus(err)
	}
	info := Info{Version: r.GetVersion(), Backend: r.GetBackend(), Devices: r.GetDevices(), ProtocolVersion: int(r.GetProtocolVersion())}
	for _, f := range r.GetFamilies() {
		info.Families = append(info.Families, Family{Name: f.GetName(), Flavours: f.GetFlavours(), DefaultFlavour: f.GetDefaultFlavour(),
			MinResolution: int(f.GetMinResolution()), DefaultResolution: int(f.GetDefaultResolution())})
	}
	return info, nil
}

func (c *grpcClient) Validate(ctx context.Context, config json.RawMessage) ([]Issue, error) {
	r, err := c.c.Validate(ctx, &trainerpb.ValidateRequest{ConfigJson: config})
	if err != nil {
		return nil, fromStatus(err)
	}
	var out []Issue
	for _, i := range r.GetIssues() {
		out = append(out, Issue{Option: i.GetOption(), Severity: i.GetSeverity(), Message: i.GetMessage(), Origin: i.GetOrigin()})
	}
	return out, nil
}

func (c *grpcClient) Start(ctx context.Context, req StartRequest) (int, error) {
	r, err := c.c.Start(ctx, &trainerpb.StartRequest{JobId: req.JobID, ConfigJson: req.Config, JobDir: req.JobDir, Nonce: req.Nonce})
	if err != nil {
		return 0, fromStatus(err)
	}
	return int(r.GetPid()), nil
}

func fromProtoEvent(e *trainerpb.Event) Event {
	return Event{Seq: e.GetSeq(), Type: e.GetType(), Severity: e.GetSeverity(), Time: time.Unix(0, e.GetTimestampUnixNano()).UTC(),
		Title: e.GetTitle(), Message: e.GetMessage(), Data: e.GetDataJson()}
}

// Events reads the trainer's events in batches (EventBatches), or one by one from a
// trainer that predates batches.
func (c *grpcClient) Events(ctx context.Context, sinceSeq uint64, fn func([]Event) error) error {
	stream, err := c.c.EventBatches(ctx, &trainerpb.EventsRequest{SinceSeq: sinceSeq})
	if err != nil {
		return fromStatus(err)
	}
	var evs []Event
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if status.Code(err) == codes.Unimplemented {
			return c.eventsOneByOne(ctx, sinceSeq, fn)
		}
		if err != nil {
			return fromStatus(err)
		}
		evs = evs[:0]
		for _, e := range b.GetEvents() {
			evs = append(evs, fromProtoEvent(e))
		}
		if len(evs) == 0 {
			continue
		}
		if err := fn(evs); err != nil {
			return err
		}
	}
}

func (c *grpcClient) eventsOneByOne(ctx context.Context, sinceSeq uint64, fn func([]Event) error) error {
	stream, err := c.c.Events(ctx, &trainerpb.EventsRequest{SinceSeq: sinceSeq})
	if err != nil {
		return fromStatus(err)
	}
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fromStatus(err)
		}
		if err := fn([]Event{fromProtoEvent(e)}); err != nil {
			return err
		}
	}
}

func (c *grpcClient) Command(ctx context.Context, cmd Command) error {
	kinds := map[Command]trainerpb.CommandRequest_Kind{
		CommandCheckpoint: trainerpb.CommandRequest_CHECKPOINT, CommandValidation: trainerpb.CommandRequest_VALIDATION,
		CommandStop: trainerpb.CommandRequest_STOP, CommandCancel: trainerpb.CommandRequest_CANCEL,
	}
	k, ok := kinds[cmd]
	if !ok {
		return ErrUnsupported
	}
	_, err := c.c.Command(ctx, &trainerpb.CommandRequest{Kind: k})
	return fromStatus(err)
}

func (c *grpcClient) Status(ctx context.Context) (Status, error) {
	r, err := c.c.Status(ctx, &trainerpb.StatusRequest{})
	if err != nil {
		return Status{}, fromStatus(err)
	}
	p := r.GetProgress()
	return Status{JobID: r.GetJobId(), State: r.GetState(), PID: int(r.GetPid()), Nonce: r.GetNonce(), LastSeq: r.GetLastSeq(), Error: r.GetError(),
		Progress: Progress{Step: p.GetStep(), TotalSteps: p.GetTotalSteps(), Epoch: p.GetEpoch(), TotalEpochs: p.GetTotalEpochs(), Loss: p.GetLoss(), LearningRate: p.GetLearningRate()}}, nil
}
