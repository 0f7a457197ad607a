package options

import (
	"encoding/json"
	"io/fs"
	"reflect"
	"testing"
)

// checkPipeline runs everything downstream of parsing and checks invariants that must
// hold for any input: canonical keys, JSON-encodable Map, and argv that parses back to
// the same values.
func checkPipeline(t *testing.T, r *Registry, vals Values) {
	t.Helper()
	for k := range vals {
		if o := r.lookup(k); o == nil || o.Name != k {
			t.Fatalf("parsed key %q is not canonical", k)
		}
	}
	c, issues := r.Merge(vals, vals)
	if len(issues) > 0 {
		t.Fatalf("re-merging parsed values: %q", issues.Messages())
	}
	_ = c.ResolvePaths("/configs", "/output")
	_ = r.Validate(c, ValidateOptions{StrictEpochs: true, CheckFile: func(string) error { return fs.ErrNotExist }})
	if _, err := json.Marshal(c.Map()); err != nil {
		t.Fatalf("Map not JSON-encodable: %v", err)
	}
	back, issues := r.ParseArgs(c.Args())
	if len(issues) > 0 {
		t.Fatalf("argv %q does not parse back: %q", c.Args(), issues.Messages())
	}
	for k, v := range back {
		if got, _ := c.Get(k); !reflect.DeepEqual(got, v) {
			t.Fatalf("argv round trip %s: %#v became %#v", k, got, v)
		}
	}
}

func FuzzParseForm(f *testing.F) {
	f.Add("--learning_rate", "1e-4", "")
	f.Add("train_batch_size", "2", "3")
	f.Add("--report_to", "wandb,none", "tensorboard")
	f.Add("--use_ema", "on", "")
	f.Add("--validation_method", "external_script", "")
	f.Add("--webhook_config", `[{"webhook_type":"raw","callback_url":"https://x/cb","ssl_no_verify":true}]`, "")
	f.Add("__disabled_fields__", "--seed,--model_family", "")
	f.Add("--max_train_steps", "", "2e3")
	f.Add("--validation_resolution", "48x32,32", "")
	f.Add("--learning_rat", "1", "")
	f.Add("--data_backend_config", "config/../../x.json", "")
	f.Add("--output_dir", "../..", "")
	r := Default()
	f.Fuzz(func(t *testing.T, key, v1, v2 string) {
		form := map[string][]string{key: {v1, v2}, "--model_family": {"dit"}, "--seed": {v1}, "--validation_negative_prompt": {v2}}
		sub, _ := r.ParseForm(form)
		checkPipeline(t, r, sub.Values)
	})
}

func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"--learning_rate": 0.0001, "--seed": 42, "--use_ema": false, "--checkpoint_epoch_interval": null}`))
	f.Add([]byte(`{"--report_to": ["wandb", "none"], "--webhook_config": [{"webhook_type": "raw", "callback_url": "http://h/cb"}]}`))
	f.Add([]byte(`{"--train_batch_size": "2", "data_backend_config": "a/b.json", "--resolution": 1e400}`))
	f.Add([]byte(`{"--max_train_steps": 1.5, "--validation_resolution": 1024, "--lr_warmup_steps": "x"}`))
	f.Add([]byte(`{"--seed": 99999999999999999999999, "--output_dir": "", "--model_family": {"a": 1}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"_metadata": {"x": [1, 2]}, "configs_dir": 3}`))
	r := Default()
	f.Fuzz(func(t *testing.T, data []byte) {
		sub, _ := r.ParseJSON(data)
		checkPipeline(t, r, sub.Values)
	})
}
