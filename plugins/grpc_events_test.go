package plugins

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	trainerpb "simpletuner/plugins/proto"
)

// eventSource is a Trainer whose Events hands out n events in batches of batch.
type eventSource struct {
	Trainer
	n, batch int
}

func (s eventSource) Events(_ context.Context, since uint64, fn func([]Event) error) error {
	var evs []Event
	for i := since + 1; i <= uint64(s.n); i++ {
		evs = append(evs, Event{Seq: i, Type: "training.progress", Severity: "info", Time: time.Unix(0, int64(i)).UTC(), Data: json.RawMessage(`{"step":1}`)})
		if len(evs) == s.batch {
			if err := fn(evs); err != nil {
				return err
			}
			evs = nil
		}
	}
	if len(evs) > 0 {
		return fn(evs)
	}
	return nil
}

// legacyServer is a trainer built before EventBatches: it serves Events only.
type legacyServer struct {
	trainerpb.UnimplementedTrainerServer
	s *grpcServer
}

func (l legacyServer) Events(req *trainerpb.EventsRequest, st trainerpb.Trainer_EventsServer) error {
	return l.s.Events(req, st)
}

func serveOnLoopback(t *testing.T, register func(*grpc.Server)) *grpcClient {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &grpcClient{c: trainerpb.NewTrainerClient(conn)}
}

func readAllEvents(t *testing.T, c *grpcClient, since uint64) (seqs []uint64, calls int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.Events(ctx, since, func(evs []Event) error {
		calls++
		for _, e := range evs {
			seqs = append(seqs, e.Seq)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return seqs, calls
}

func checkSeqs(t *testing.T, seqs []uint64, from, to uint64) {
	t.Helper()
	if len(seqs) != int(to-from) {
		t.Fatalf("%d events, want %d", len(seqs), to-from)
	}
	for i, s := range seqs {
		if s != from+1+uint64(i) {
			t.Fatalf("event %d has seq %d, want %d", i, s, from+1+uint64(i))
		}
	}
}

// TestEventBatchesInOrder: batches larger than a message are split, nothing is lost or
// reordered, and the daemon side sees far fewer calls than events.
func TestEventBatchesInOrder(t *testing.T) {
	c := serveOnLoopback(t, func(s *grpc.Server) {
		trainerpb.RegisterTrainerServer(s, &grpcServer{impl: eventSource{n: 5000, batch: 1300}})
	})
	seqs, calls := readAllEvents(t, c, 10)
	checkSeqs(t, seqs, 10, 5000)
	if calls > 20 {
		t.Fatalf("%d calls for 4990 events: not batched", calls)
	}
}

// TestEventsFromATrainerWithoutBatches: a trainer that predates EventBatches answers
// Unimplemented, and the client reads the same events one by one.
func TestEventsFromATrainerWithoutBatches(t *testing.T) {
	c := serveOnLoopback(t, func(s *grpc.Server) {
		trainerpb.RegisterTrainerServer(s, legacyServer{s: &grpcServer{impl: eventSource{n: 300, batch: 7}}})
	})
	seqs, calls := readAllEvents(t, c, 0)
	checkSeqs(t, seqs, 0, 300)
	if calls != 300 {
		t.Fatalf("%d calls, want one per event", calls)
	}
}
