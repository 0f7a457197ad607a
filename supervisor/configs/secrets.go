package configs

import (
	"strings"

	"simpletuner/options"
	"simpletuner/supervisor/webhooks"
)

// webhookKey is the option whose value holds webhook secrets.
const webhookKey = "--webhook_config"

// KeepWebhookSecrets puts back, into cfg (options by their canonical names: a config
// about to be saved, or a submitted training form), the webhook secrets that views hide
// (webhooks.Shown), taking them from stored, the config cfg replaces or is merged over
// (any spelling): a client that loads an environment and sends it back unchanged keeps
// its webhooks working. A placeholder with no stored secret behind it is an error issue.
func KeepWebhookSecrets(reg *options.Registry, cfg, stored map[string]any) options.Issues {
	v, ok := cfg[webhookKey]
	if !ok || v == nil {
		return nil
	}
	var old any
	for k, sv := range stored {
		if c, err := reg.Canonical(k); err == nil && c == webhookKey {
			old = sv
		}
	}
	kept, err := webhooks.KeepSecrets(v, old)
	if err != nil {
		return options.Issues{webhookIssue(err)}
	}
	cfg[webhookKey] = kept
	return nil
}

// webhookIssue turns a webhooks error into a --webhook_config error issue.
func webhookIssue(err error) options.Issue {
	return options.Issue{Option: webhookKey, Severity: options.SevError, Err: options.ErrInvalidValue,
		Message: strings.TrimPrefix(err.Error(), webhooks.ErrInvalidConfig.Error()+": ")}
}
