package plugins

import (
	"context"
	"encoding/json"

	trainerpb "simpletuner/plugins/proto"
)

// grpcServer serves a Trainer implementation over gRPC, inside the trainer process.
type grpcServer struct {
	trainerpb.UnimplementedTrainerServer
	impl Trainer
}

func (s *grpcServer) Info(ctx context.Context, _ *trainerpb.InfoRequest) (*trainerpb.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	out := &trainerpb.InfoResponse{Version: info.Version, Backend: info.Backend, Devices: info.Devices, ProtocolVersion: int32(info.ProtocolVersion)}
	for _, f := range info.Families {
		out.Families = append(out.Families, &trainerpb.ModelFamily{Name: f.Name, Flavours: f.Flavours, DefaultFlavour: f.DefaultFlavour,
			MinResolution: int32(f.MinResolution), DefaultResolution: int32(f.DefaultResolution)})
	}
	return out, nil
}

func (s *grpcServer) Validate(ctx context.Context, req *trainerpb.ValidateRequest) (*trainerpb.ValidateResponse, error) {
	issues, err := s.impl.Validate(ctx, json.RawMessage(req.GetConfigJson()))
	if err != nil {
		return nil, toStatus(err)
	}
	out := &trainerpb.ValidateResponse{}
	for _, i := range issues {
		out.Issues = append(out.Issues, &trainerpb.Issue{Option: i.Option, Severity: i.Severity, Message: i.Message, Origin: i.Origin})
	}
	return out, nil
}

func (s *grpcServer) Start(ctx context.Context, req *trainerpb.StartRequest) (*trainerpb.StartResponse, error) {
	pid, err := s.impl.Start(ctx, StartRequest{JobID: req.GetJobId(), Config: req.GetConfigJson(), JobDir: req.GetJobDir(), Nonce: req.GetNonce()})
	if err != nil {
		return nil, toStatus(err)
	}
	return &trainerpb.StartResponse{Pid: int32(pid)}, nil
}

// maxBatchEvents bounds the events of one EventBatch message.
const maxBatchEvents = 512

func toProtoEvent(e Event) *trainerpb.Event {
	return &trainerpb.Event{Seq: e.Seq, Type: e.Type, Severity: e.Severity, TimestampUnixNano: e.Time.UnixNano(),
		Title: e.Title, Message: e.Message, DataJson: e.Data}
}

// Events serves daemons built before EventBatches: one message per event.
func (s *grpcServer) Events(req *trainerpb.EventsRequest, stream trainerpb.Trainer_EventsServer) error {
	err := s.impl.Events(stream.Context(), req.GetSinceSeq(), func(evs []Event) error {
		for _, e := range evs {
			if err := stream.Send(toProtoEvent(e)); err != nil {
				return err
			}
		}
		return nil
	})
	return toStatus(err)
}

// EventBatches sends what the trainer has ready together, up to maxBatchEvents a
// message: at thousands of events a second, the per-message cost of gRPC is what a
// stream of single events spends most of its time on.
func (s *grpcServer) EventBatches(req *trainerpb.EventsRequest, stream trainerpb.Trainer_EventBatchesServer) error {
	msg := &trainerpb.EventBatch{}
	err := s.impl.Events(stream.Context(), req.GetSinceSeq(), func(evs []Event) error {
		for len(evs) > 0 {
			n := min(len(evs), maxBatchEvents)
			msg.Events = msg.Events[:0]
			for _, e := range evs[:n] {
				msg.Events = append(msg.Events, toProtoEvent(e))
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
			evs = evs[n:]
		}
		return nil
	})
	return toStatus(err)
}

func (s *grpcServer) Command(ctx context.Context, req *trainerpb.CommandRequest) (*trainerpb.CommandResponse, error) {
	var c Command
	switch req.GetKind() {
	case trainerpb.CommandRequest_CHECKPOINT:
		c = CommandCheckpoint
	case trainerpb.CommandRequest_VALIDATION:
		c = CommandValidation
	case trainerpb.CommandRequest_STOP:
		c = CommandStop
	case trainerpb.CommandRequest_CANCEL:
		c = CommandCancel
	default:
		return nil, toStatus(ErrUnsupported)
	}
	if err := s.impl.Command(ctx, c); err != nil {
		return nil, toStatus(err)
	}
	return &trainerpb.CommandResponse{Accepted: true}, nil
}

func (s *grpcServer) Status(ctx context.Context, _ *trainerpb.StatusRequest) (*trainerpb.StatusResponse, error) {
	st, err := s.impl.Status(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	p := st.Progress
	return &trainerpb.StatusResponse{JobId: st.JobID, State: st.State, Pid: int32(st.PID), Nonce: st.Nonce, LastSeq: st.LastSeq, Error: st.Error,
		Progress: &trainerpb.Progress{Step: p.Step, TotalSteps: p.TotalSteps, Epoch: p.Epoch, TotalEpochs: p.TotalEpochs, Loss: p.Loss, LearningRate: p.LearningRate}}, nil
}
