package webhooks

import (
	"strings"
	"testing"

	"simpletuner/options"
)

// TestRegistryAndDispatcherReadWebhooksAlike: the options registry's check of
// --webhook_config (what validate and a saved webhook config answer) and Parse (what the
// dispatcher sends to) accept and refuse the same lists, with the same words. They were
// two readers: the registry accepted credentials in the URL and the placeholder views
// show for a stored secret, which every start then refused, and refused "RAW" and "WARN",
// which the dispatcher reads.
func TestRegistryAndDispatcherReadWebhooksAlike(t *testing.T) {
	reg := options.Default()
	for _, raw := range []string{
		`[{"webhook_type":"raw","callback_url":"https://h.example/cb"}]`,
		`{"webhook_type":"RAW","callback_url":"https://h.example/cb","log_level":"WARN"}`,
		`[{"webhook_type":"raw","callback_url":"https://user:pw@h.example/cb"}]`,
		`[{"webhook_type":"raw","callback_url":"https://h.example/<set>"}]`,
		`[{"webhook_type":"raw","callback_url":"https://h.example/cb","auth_token":"<set>"}]`,
		`[{"webhook_type":"raw","callback_url":7}]`,
		`[{"webhook_type":"discord","webhook_url":"https://discord.example/api/webhooks/1/t","message_prefix":3}]`,
		`[{"webhook_type":"raw","webhook_url":"http://h.example/cb"},{"webhook_type":"slack"}]`,
		`[{"webhook_type":"raw","callback_url":"ftp://h.example/cb"}]`,
		`[{"webhook_type":"raw","callback_url":"https://h.example/cb","ssl_no_verify":"yes"}]`,
		`[3]`,
		`[{`,
	} {
		c := reg.Defaults()
		if err := c.Set("--webhook_config", raw, options.FromSubmitted); err != nil {
			t.Fatalf("%s: set: %v", raw, err)
		}
		var registry []string
		for _, is := range reg.Validate(c, options.ValidateOptions{Permissions: []string{"*"}}).For("--webhook_config").Errors() {
			registry = append(registry, strings.TrimPrefix(is.Message, "invalid value for --webhook_config: "))
		}
		var dispatcher []string
		if _, err := Parse(raw); err != nil {
			dispatcher = []string{strings.TrimPrefix(err.Error(), ErrInvalidConfig.Error()+": ")}
		}
		if strings.Join(registry, "\n") != strings.Join(dispatcher, "\n") {
			t.Errorf("%s\nregistry   %q\ndispatcher %q", raw, registry, dispatcher)
		}
	}
}
