package training

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"simpletuner/options"
	"simpletuner/plugins"
	"simpletuner/supervisor/gpu"
)

// TestAskTrainer: the trainer's errors become the bundle's (not repeated when the daemon
// has the same), its registry warnings are dropped (the daemon made them), its own
// warnings (origin "trainer") pass on, a trainer that cannot
// be asked is a warning, one not consulted adds nothing; the trainer gets the resolved
// configuration and the devices the job asks for.
func TestAskTrainer(t *testing.T) {
	reg := options.Default()
	sub, issues := reg.ParseMap(map[string]any{"--model_family": "dit", "--num_processes": 2, "--accelerate_visible_devices": "1,0"})
	if issues.HasErrors() {
		t.Fatal(issues)
	}
	cfg, _ := reg.Merge(nil, sub.Values)
	have := options.Issues{{Option: "--x", Severity: options.SevWarning, Message: "seen"}}
	var gotReq gpu.Request
	var gotCfg map[string]any
	s := &Service{log: slog.New(slog.DiscardHandler)}
	s.SetTrainerCheck(func(_ context.Context, raw json.RawMessage, req gpu.Request) ([]plugins.Issue, bool, error) {
		gotReq = req
		_ = json.Unmarshal(raw, &gotCfg)
		return []plugins.Issue{
			{Option: "--resolution", Severity: "error", Message: "this job needs about 515 GiB"},
			{Option: "--x", Severity: "error", Message: "seen"},
			{Option: "--lora_rank", Severity: "warning", Message: "only applies when --model_type is lora"},
			{Option: "--pretrained_vae_model_name_or_path", Severity: "warning", Message: "model family dit cannot load that component", Origin: plugins.IssueOriginTrainer},
		}, true, nil
	})
	out := s.askTrainer(cfg, have)
	if len(out) != 2 || out[0].Severity != options.SevError || out[0].Option != "--resolution" ||
		out[1].Severity != options.SevWarning || out[1].Option != "--pretrained_vae_model_name_or_path" {
		t.Fatalf("issues %+v", out)
	}
	if gotReq.NumProcesses != 2 || strings.Join(gotReq.Preferred, ",") != "1,0" || gotCfg["--model_family"] != "dit" {
		t.Errorf("trainer asked with %+v and %v", gotReq, gotCfg)
	}
	have = append(have, out...)
	if again := s.askTrainer(cfg, have); len(again) != 0 {
		t.Errorf("a repeated error was added again: %+v", again)
	}

	s.SetTrainerCheck(func(context.Context, json.RawMessage, gpu.Request) ([]plugins.Issue, bool, error) {
		return nil, false, errors.New("handshake timed out")
	})
	if out := s.askTrainer(cfg, nil); len(out) != 1 || out[0].Severity != options.SevWarning || !strings.Contains(out[0].Message, "handshake timed out") {
		t.Errorf("unreachable trainer: %+v", out)
	}
	s.SetTrainerCheck(func(context.Context, json.RawMessage, gpu.Request) ([]plugins.Issue, bool, error) {
		return []plugins.Issue{{Severity: "error", Message: "ignored"}}, false, nil
	})
	if out := s.askTrainer(cfg, nil); len(out) != 0 {
		t.Errorf("a trainer not consulted added %+v", out)
	}
}
